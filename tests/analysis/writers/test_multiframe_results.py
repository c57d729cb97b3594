"""SR, KOS and SEG on multi-frame sources: the GE head with an inserted lesion, as one
Legacy Converted or Enhanced CT object (and as a series that mixes single-frame slices
with one). Every object passes dciodvfy, reads back with highdicom, and references the
frames the findings name."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import pytest
from pydicom import Dataset, dcmread

from assistant.analysis.imaging import SeriesGeometry, read_series
from assistant.analysis.writers.context import WriterContext, evidence_headers
from assistant.analysis.writers.kos import build_kos
from assistant.analysis.writers.seg import build_seg
from assistant.analysis.writers.sr import build_sr
from assistant.analysis.writers.uids import ResultIdentity
from assistant.findings import Findings, Lesion, ModelIdentity, SliceProbability
from tests.peers.dicom3tools import dciodvfy_errors
from tests.support.ct import insert_lesion, shared_ct
from tests.support.multiframe import enhanced_ct, legacy_converted, save

#: Slices (in stack order) the findings put lesions on; the key slices are 13 and 20.
LESION_SLICES = (12, 13, 14, 20)


@pytest.fixture(scope="module")
def lesion_series(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The GE head with blood in it, its slices in stack order."""
    folder = tmp_path_factory.mktemp("lesion") / "single"
    insert_lesion(shared_ct("ge_head_tilted"), folder)
    return [s.path for s in read_series(folder).slices]


def _findings(series: SeriesGeometry, slice_threshold: float | None = None) -> Findings:
    slices = series.slices
    labels = np.zeros((len(slices), 64, 64), dtype=np.uint8)
    labels[12:15, 20:30, 30:42] = 1
    labels[20, 40:44, 10:14] = 2

    def lesion(first: int, last: int, key: int, label: int, probability: float) -> Lesion:
        return Lesion(
            first,
            last,
            key,
            slices[key].sop_instance_uid,
            [(240.0, 160.0), (336.0, 160.0), (336.0, 240.0), (240.0, 240.0)],
            area_mm2=930.0,
            longest_diameter_mm=60.1,
            volume_ml=8.3,
            mean_hu=68.0,
            probability=probability,
            label=label,
            key_frame_number=slices[key].frame_number,
        )

    return Findings(
        series_instance_uid=series.series_instance_uid,
        study_probability=0.93,
        positive=True,
        threshold=0.5,
        slices=[
            SliceProbability(s.sop_instance_uid, 0.9 if n in LESION_SLICES else 0.1, s.frame_number)
            for n, s in enumerate(slices)
        ],
        flagged_instance_uids=list(
            dict.fromkeys(slices[n].sop_instance_uid for n in LESION_SLICES)
        ),
        lesions=[lesion(12, 14, 13, 1, 0.94), lesion(20, 20, 20, 2, 0.71)],
        model=ModelIdentity("test-model", "1.2.3"),
        lesion_labels=labels,
        slice_threshold=slice_threshold,
    )


def _write_all(series: SeriesGeometry, folder: Path) -> dict[str, Path]:
    """SR, KOS and SEG of the findings, as the pipeline builds them, saved and checked
    by dciodvfy."""
    headers = evidence_headers(series.slices)
    identity = ResultIdentity(series.series_instance_uid, "test-model", "1.2.3", "digest")
    context = WriterContext(identity, weights_sha256="ab" * 32)
    prediction = _findings(series)
    objects = {
        "sr": build_sr(prediction, headers, context),
        "kos": build_kos(prediction, headers, context),
        "seg": build_seg(prediction, headers, context),
    }
    paths = {}
    for kind, dataset in objects.items():
        assert dataset is not None, kind
        paths[kind] = save(dataset, folder / f"{kind}.dcm")
        assert dciodvfy_errors(paths[kind]) == [], kind
    return paths


def _as_legacy(files: list[Path]) -> Dataset:
    return legacy_converted(files)


def _as_enhanced(files: list[Path]) -> Dataset:
    return enhanced_ct(legacy_converted(files))


@pytest.mark.parametrize("convert", [_as_legacy, _as_enhanced], ids=["legacy", "enhanced"])
def test_results_on_one_multi_frame_object_reference_its_frames(
    lesion_series: list[Path], convert: Callable[[list[Path]], Dataset], tmp_path: Path
) -> None:
    source = convert(lesion_series)
    save(source, tmp_path / "series" / "multiframe.dcm")
    series = read_series(tmp_path / "series")
    uid = str(source.SOPInstanceUID)
    frame_of = [int(s.frame_number or 0) for s in series.slices]
    paths = _write_all(series, tmp_path)

    sr = hd.sr.srread(paths["sr"])
    groups = sr.content.get_planar_roi_measurement_groups()
    assert [g.tracking_identifier for g in groups] == ["Lesion 1", "Lesion 2"]
    for group, key in zip(groups, (13, 20), strict=True):
        reference = group.roi.ContentSequence[0].ReferencedSOPSequence[0]
        assert reference.ReferencedSOPInstanceUID == uid
        assert int(reference.ReferencedFrameNumber) == frame_of[key]
    evidence = [
        item.ReferencedSOPInstanceUID
        for study in sr.CurrentRequestedProcedureEvidenceSequence
        for series_item in study.ReferencedSeriesSequence
        for item in series_item.ReferencedSOPSequence
    ]
    assert evidence == [uid]  # the object once, not once a frame

    kos = dcmread(paths["kos"])
    references = [
        item.ReferencedSOPSequence[0] for item in kos.ContentSequence if item.ValueType == "IMAGE"
    ]
    assert [r.ReferencedSOPInstanceUID for r in references] == [uid]
    assert list(references[0].ReferencedFrameNumber) == sorted([frame_of[13], frame_of[20]])
    evidence_series = kos.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence
    assert [i.ReferencedSOPInstanceUID for i in evidence_series[0].ReferencedSOPSequence] == [uid]

    seg = hd.seg.segread(paths["seg"])
    assert [
        i.ReferencedSOPInstanceUID
        for i in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence
    ] == [uid]
    derived = [
        (source_image.ReferencedSOPInstanceUID, int(source_image.ReferencedFrameNumber))
        for item in seg.PerFrameFunctionalGroupsSequence
        for source_image in item.DerivationImageSequence[0].SourceImageSequence
    ]
    assert sorted(derived) == sorted((uid, frame_of[n]) for n in LESION_SLICES)
    positions = {
        number: tuple(float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient)
        for number, item in enumerate(source.PerFrameFunctionalGroupsSequence, start=1)
    }
    for item, (_, frame) in zip(seg.PerFrameFunctionalGroupsSequence, derived, strict=True):
        written = tuple(float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient)
        assert np.allclose(written, positions[frame], atol=1e-3)


def test_a_series_mixing_single_frame_slices_and_a_multi_frame_object(
    lesion_series: list[Path], tmp_path: Path
) -> None:
    """Slices 0-12 single-frame, 13-27 one object: the lesions' slices span both."""
    folder = tmp_path / "series"
    folder.mkdir()
    for path in lesion_series[:13]:
        (folder / path.name).write_bytes(path.read_bytes())
    source = legacy_converted(lesion_series[13:], instance_number=100)
    save(source, folder / "multiframe.dcm")
    series = read_series(folder)
    assert [s.frame_number is None for s in series.slices] == [True] * 13 + [False] * 15
    paths = _write_all(series, tmp_path)

    seg = hd.seg.segread(paths["seg"])
    referenced = {
        i.ReferencedSOPInstanceUID
        for i in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence
    }
    assert referenced == {series.slices[12].sop_instance_uid, str(source.SOPInstanceUID)}
    derived = {
        (s.ReferencedSOPInstanceUID, s.get("ReferencedFrameNumber"))
        for item in seg.PerFrameFunctionalGroupsSequence
        for s in item.DerivationImageSequence[0].SourceImageSequence
    }
    assert derived == {
        (series.slices[n].sop_instance_uid, series.slices[n].frame_number) for n in LESION_SLICES
    }
    kos = dcmread(paths["kos"])
    images = [i.ReferencedSOPSequence[0] for i in kos.ContentSequence if i.ValueType == "IMAGE"]
    assert [i.ReferencedSOPInstanceUID for i in images] == [
        series.slices[12].sop_instance_uid,
        str(source.SOPInstanceUID),
    ]
    assert "ReferencedFrameNumber" not in images[0]
    assert list(images[1].ReferencedFrameNumber) == [
        series.slices[13].frame_number,
        series.slices[20].frame_number,
    ]


def test_the_kos_names_each_flagged_frame(lesion_series: list[Path], tmp_path: Path) -> None:
    """With the slice threshold in the record, a frame is flagged alone: the KOS names
    the flagged frames of the object, not all of them."""
    save(legacy_converted(lesion_series), tmp_path / "series" / "multiframe.dcm")
    series = read_series(tmp_path / "series")
    prediction = _findings(series, slice_threshold=0.5)
    assert prediction.flagged_slice_indices() == list(LESION_SLICES)
    context = WriterContext(
        ResultIdentity(series.series_instance_uid, "test-model", "1.2.3", "digest"),
        weights_sha256="ab" * 32,
    )
    kos = build_kos(prediction, evidence_headers(series.slices), context)
    assert kos is not None
    (reference,) = [
        item.ReferencedSOPSequence[0] for item in kos.ContentSequence if item.ValueType == "IMAGE"
    ]
    frames = [int(series.slices[n].frame_number or 0) for n in LESION_SLICES]
    assert [int(v) for v in reference.ReferencedFrameNumber] == sorted(frames)
    assert dciodvfy_errors(save(kos, tmp_path / "kos.dcm")) == []


@pytest.mark.integration
@pytest.mark.slow
def test_a_series_with_a_multi_frame_object_is_analysed_end_to_end(
    start_node: Callable[..., Any], tmp_path: Path
) -> None:
    """Sent to the node: 18 single-frame slices of the GE head and one object holding
    the 10 slices around the inserted lesion. The job reads 28 slices, finds the lesion
    on frames of the object, and its SR, KOS and SEG reference those frames."""
    import json

    from sqlalchemy import select

    from assistant.cli import build_worker
    from assistant.db import Job, JobState, ResultObject
    from tests.peers.dcmtk import storescu
    from tests.peers.tools import wait_until

    single = tmp_path / "single"
    insert_lesion(shared_ct("ge_head_tilted"), single, radius_mm=15)
    ordered = [s.path for s in read_series(single).slices]
    source = legacy_converted(ordered[9:19], instance_number=100)
    sent = [*ordered[:9], *ordered[19:], save(source, tmp_path / "multiframe.dcm")]
    node = start_node(quiet_seconds=0.5)
    # -R: propose the files' own SOP classes (storescu's default list lacks this one).
    assert storescu(node.scp.port, sent, extra=("-R",)).returncode == 0

    def job() -> Job | None:
        with node.db.sessions() as session:
            return session.scalars(select(Job)).one_or_none()

    wait_until(lambda: job() is not None, timeout=20)
    worker = build_worker(node.settings, node.db)  # not started: run by hand
    worker.analysis.run(job().id)  # type: ignore[union-attr]
    done = job()
    assert done is not None and done.state is JobState.DONE, done and done.reason
    assert done.positive, done.summary
    uid = str(source.SOPInstanceUID)
    record = json.loads(done.findings_json)
    assert len(record["slices"]) == 28
    frames = {s["frame_number"] for s in record["slices"] if s["sop_instance_uid"] == uid}
    assert frames == set(range(1, 11))
    key = record["lesions"][0]
    assert key["key_sop_instance_uid"] == uid and key["key_frame_number"] in frames

    with node.db.sessions() as session:
        results = {r.kind.value: r.path for r in session.scalars(select(ResultObject))}
    assert set(results) == {"sr", "kos", "seg"}
    paths = {kind: node.settings.storage.data_dir / path for kind, path in results.items()}
    for kind, path in paths.items():
        assert dciodvfy_errors(path) == [], kind
    roi = hd.sr.srread(paths["sr"]).content.get_planar_roi_measurement_groups()[0].roi
    reference = roi.ContentSequence[0].ReferencedSOPSequence[0]
    assert reference.ReferencedSOPInstanceUID == uid
    assert int(reference.ReferencedFrameNumber) == key["key_frame_number"]
    kos = dcmread(paths["kos"])
    images = [i.ReferencedSOPSequence[0] for i in kos.ContentSequence if i.ValueType == "IMAGE"]
    assert [i.ReferencedSOPInstanceUID for i in images].count(uid) == 1
    seg = hd.seg.segread(paths["seg"])
    derived = {  # the mask may reach single-frame slices beside the object
        (s.ReferencedSOPInstanceUID, s.get("ReferencedFrameNumber"))
        for item in seg.PerFrameFunctionalGroupsSequence
        for s in item.DerivationImageSequence[0].SourceImageSequence
    }
    on_frames = {int(f) for u, f in derived if u == uid}
    assert on_frames and on_frames <= frames
    assert all(f is None for u, f in derived if u != uid)
