"""Patient names in every usual character set reach our SR, KOS and SEG intact: each
object passes dciodvfy, names its own Specific Character Set, and reads back with the
source's name. Before, `\\ISO 2022 IR 87` (an empty first value, the usual form at
Japanese sites) failed every job of the study in highdicom."""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from assistant.analysis.imaging import read_series
from assistant.analysis.writers.context import WriterContext, evidence_header
from assistant.analysis.writers.kos import build_kos
from assistant.analysis.writers.seg import build_seg
from assistant.analysis.writers.sr import build_sr
from assistant.analysis.writers.uids import ResultIdentity
from assistant.db import input_digest
from assistant.findings import Findings, Lesion, ModelIdentity, SliceProbability
from tests.peers.dicom3tools import dciodvfy_errors
from tests.support.charsets import CASES
from tests.support.ct import dicom_files, shared_ct


def _series(folder: Path, charset: str | list[str], name: str) -> Path:
    """The GE head's first 16 slices as a study in `charset`, the patient named `name`."""
    folder.mkdir()
    for path in dicom_files(shared_ct("ge_head_tilted"))[:16]:
        dataset = dcmread(path)
        dataset.SpecificCharacterSet = charset
        dataset.PatientName = name
        dataset.StudyDescription = name.split("=")[-1][:60]
        dataset.save_as(folder / path.name)
    return folder


def _findings(uids: list[str]) -> Findings:
    labels = np.zeros((len(uids), 64, 64), dtype=np.uint8)
    labels[6:9, 20:30, 30:42] = 1
    lesion = Lesion(
        6,
        8,
        7,
        uids[7],
        [(240.0, 160.0), (336.0, 160.0), (336.0, 240.0)],
        930.0,
        60.1,
        8.3,
        68.0,
        0.94,
        1,
    )
    slices = [SliceProbability(uid, 0.9 if 6 <= n <= 8 else 0.1) for n, uid in enumerate(uids)]
    return Findings(
        "x", 0.93, True, 0.5, slices, uids[6:9], ModelIdentity("m", "1"), [lesion], [], labels
    )


@pytest.mark.parametrize(("charset", "name"), CASES, ids=[str(c[0]) for c in CASES])
def test_names_in_every_character_set_reach_our_objects(
    tmp_path: Path, charset: str | list[str], name: str
) -> None:
    series = read_series(_series(tmp_path / "series", charset, name))
    uids = [s.sop_instance_uid for s in series.slices]
    headers: dict[str, Dataset] = {
        s.sop_instance_uid: evidence_header(dcmread(s.path, stop_before_pixels=True))
        for s in series.slices
    }
    context = WriterContext(
        ResultIdentity(series.series_instance_uid, "m", "1", input_digest(uids)), "ab" * 32
    )
    findings = _findings(uids)
    objects = {
        "sr": build_sr(findings, headers, context),
        "kos": build_kos(findings, headers, context),
        "seg": build_seg(findings, headers, context),
    }
    for kind, dataset in objects.items():
        assert dataset is not None
        path = tmp_path / f"{kind}.dcm"
        dataset.save_as(path, enforce_file_format=True)
        assert dciodvfy_errors(path) == [], kind
        again = dcmread(path)
        assert str(again.PatientName) == name, kind
        assert "SpecificCharacterSet" in again, kind
    assert str(hd.sr.srread(tmp_path / "sr.dcm").PatientName) == name
