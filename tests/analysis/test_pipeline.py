"""End to end with Orthanc as the PACS: a study pushed to the node comes back to the
same study in Orthanc as SR, KOS and SEG, exactly once, even across an outage."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from sqlalchemy import func, select

from assistant.analysis.worker import Worker
from assistant.cli import build_worker
from assistant.db import Delivery, DeliveryState, Job, JobState, ResultObject
from assistant.intake.receiver import Receiver
from assistant.settings import (
    BUNDLED_MODEL_DIR,
    DeliverySettings,
    Destination,
    ModelSettings,
    Settings,
)
from tests.helpers import NODE_AE
from tests.peers.dcmtk import storescu
from tests.peers.dicom3tools import dciodvfy_errors
from tests.peers.orthanc import Orthanc
from tests.peers.tools import require_tool, wait_until
from tests.support.ct import dicom_files, insert_lesion, shared_ct

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FAST_RETRIES = DeliverySettings(backoff_seconds=0.5, max_backoff_seconds=1.0, poll_seconds=0.2)


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    started: list[Worker] = []

    def start(node: Receiver, settings: Settings) -> Worker:
        worker = build_worker(settings, node.db)
        worker.start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture(scope="module")
def lesion_series(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("lesion") / "series"
    insert_lesion(shared_ct("ge_head_tilted"), folder, radius_mm=15)
    return folder


def _negative_model(tmp_path: Path) -> ModelSettings:
    """The bundled model with a threshold no probability reaches: every study negative."""
    folder = tmp_path / "negative-model"
    shutil.copytree(BUNDLED_MODEL_DIR, folder, ignore=shutil.ignore_patterns("training"))
    card = json.loads((folder / "model.json").read_text())
    card["threshold"] = 1.01
    (folder / "model.json").write_text(json.dumps(card))
    return ModelSettings(path=str(folder))


def _jobs(node: Receiver) -> list[Job]:
    with node.db.sessions() as session:
        return list(session.scalars(select(Job).order_by(Job.id)))


def _deliveries(node: Receiver) -> list[Delivery]:
    with node.db.sessions() as session:
        return list(session.scalars(select(Delivery).order_by(Delivery.id)))


def _results_in_orthanc(orthanc: Orthanc, study_id: str) -> dict[str, list[str]]:
    """Modality → instance ids of our result series in the Orthanc study."""
    found: dict[str, list[str]] = {}
    for series in orthanc.get(f"/studies/{study_id}/series"):
        modality = series["MainDicomTags"].get("Modality")
        if modality in ("SR", "KO", "SEG"):
            found.setdefault(modality, []).extend(series["Instances"])
    return found


def _push(orthanc: Orthanc, folder: Path) -> str:
    uploaded = [orthanc.upload(path) for path in dicom_files(folder)]
    [study_id] = {item["ParentStudy"] for item in uploaded}
    done = orthanc.post_json(
        "/modalities/radassist/store", {"Resources": [study_id], "Synchronous": True}
    )
    assert done["FailedInstancesCount"] == 0
    return study_id


def _node_and_orthanc(
    start_node: Callable[..., Receiver], start_orthanc: Callable[..., Orthanc], **sections: Any
) -> tuple[Receiver, Orthanc, Settings]:
    node = start_node(quiet_seconds=1.0)
    orthanc = start_orthanc({"radassist": (NODE_AE, "127.0.0.1", node.scp.port)})
    destination = Destination("pacs", host="127.0.0.1", port=orthanc.dicom_port, ae_title="ORTHANC")
    settings = dataclasses.replace(
        node.settings, destinations=(destination,), delivery=FAST_RETRIES, **sections
    )
    return node, orthanc, settings


def test_results_reach_the_pacs_once(
    start_node, start_orthanc, start_worker, lesion_series: Path, tmp_path: Path
) -> None:
    node, orthanc, settings = _node_and_orthanc(start_node, start_orthanc)
    start_worker(node, settings)
    study_id = _push(orthanc, lesion_series)

    found = wait_until(
        lambda: (r := _results_in_orthanc(orthanc, study_id)) and len(r) == 3 and r, timeout=90
    )
    assert {k: len(v) for k, v in found.items()} == {"SR": 1, "KO": 1, "SEG": 1}
    [job] = _jobs(node)
    assert job.state is JobState.DONE and job.positive and job.summary
    for modality, [instance] in found.items():
        path = tmp_path / f"{modality}.dcm"
        path.write_bytes(orthanc.request_bytes(f"/instances/{instance}/file"))
        assert dciodvfy_errors(path) == [], modality
        assert (
            dcmread(path).StudyInstanceUID
            == dcmread(dicom_files(lesion_series)[0]).StudyInstanceUID
        )

    # The same study pushed again: no new job, nothing sent twice.
    _push(orthanc, lesion_series)
    wait_until(lambda: node.completion.sweep() == [] and len(_jobs(node)) == 1, timeout=10)
    assert {k: len(v) for k, v in _results_in_orthanc(orthanc, study_id).items()} == {
        "SR": 1,
        "KO": 1,
        "SEG": 1,
    }
    deliveries = _deliveries(node)
    assert len(deliveries) == 3
    assert all(d.state is DeliveryState.SENT and d.attempts == 1 for d in deliveries)
    assert all(d.peer_status == 0 for d in deliveries)


def test_results_wait_for_the_pacs_and_arrive_once(
    start_node, start_orthanc, start_worker, lesion_series: Path
) -> None:
    node, orthanc, settings = _node_and_orthanc(start_node, start_orthanc)
    study_id = _push(orthanc, lesion_series)
    orthanc.stop()
    start_worker(node, settings)

    wait_until(lambda: (d := _deliveries(node)) and all(x.attempts >= 2 for x in d), timeout=90)
    assert all(d.state is DeliveryState.PENDING and d.last_error for d in _deliveries(node))
    orthanc.start()
    wait_until(lambda: all(d.state is DeliveryState.SENT for d in _deliveries(node)), timeout=30)
    assert {k: len(v) for k, v in _results_in_orthanc(orthanc, study_id).items()} == {
        "SR": 1,
        "KO": 1,
        "SEG": 1,
    }


def test_a_clean_study_gets_a_negative_report(
    start_node, start_orthanc, start_worker, tmp_path: Path
) -> None:
    node, orthanc, settings = _node_and_orthanc(
        start_node, start_orthanc, model=_negative_model(tmp_path)
    )
    start_worker(node, settings)
    study_id = _push(orthanc, shared_ct("ge_head_tilted"))

    found = wait_until(lambda: _results_in_orthanc(orthanc, study_id), timeout=90)
    assert list(found) == ["SR"]
    [job] = _jobs(node)
    assert job.positive is False and job.summary.startswith("Negative")
    sr = tmp_path / "sr.dcm"
    sr.write_bytes(orthanc.request_bytes(f"/instances/{found['SR'][0]}/file"))
    dump = subprocess.run([require_tool("dsrdump"), str(sr)], capture_output=True, text=True)
    assert 'SCT,"Absent")>' in dump.stdout


def test_a_late_instance_supersedes_the_report(start_node, start_worker) -> None:
    node = start_node(quiet_seconds=1.0)
    start_worker(node, dataclasses.replace(node.settings, delivery=FAST_RETRIES))
    files = dicom_files(shared_ct("ge_head_tilted"))
    assert storescu(node.scp.port, files[:-1]).returncode == 0
    wait_until(lambda: [j.state for j in _jobs(node)] == [JobState.DONE], timeout=90)
    assert storescu(node.scp.port, files[-1:]).returncode == 0
    wait_until(lambda: [j.state for j in _jobs(node)] == [JobState.DONE, JobState.DONE], timeout=90)
    with node.db.sessions() as session:
        reports = session.scalars(
            select(ResultObject).where(ResultObject.kind == "sr").order_by(ResultObject.id)
        ).all()
        assert session.scalar(select(func.count()).select_from(Job)) == 2
    old, new = (dcmread(node.settings.storage.data_dir / r.path) for r in reports)
    assert new.SOPInstanceUID != old.SOPInstanceUID
    predecessor = new.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0]
    assert predecessor.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == old.SOPInstanceUID


def test_results_reach_a_dicomweb_pacs_once_after_it_returns(
    start_node, start_orthanc, start_worker, lesion_series: Path
) -> None:
    """A DICOMweb destination: STOW-RS into Orthanc's DICOMweb plugin, on the same outbox;
    Orthanc's HTTP side down at first, then up: every object there once, found by QIDO."""
    from dicomweb_client.web import DICOMwebClient

    node = start_node(quiet_seconds=1.0)
    orthanc = start_orthanc({"radassist": (NODE_AE, "127.0.0.1", node.scp.port)}, dicomweb=True)
    destination = Destination("web", kind="dicomweb", url=orthanc.dicomweb_url)
    settings = dataclasses.replace(
        node.settings, destinations=(destination,), delivery=FAST_RETRIES
    )
    study_id = _push(orthanc, lesion_series)
    orthanc.stop()  # the PACS goes away before the results are ready
    start_worker(node, settings)
    wait_until(lambda: any(d.attempts >= 2 for d in _deliveries(node)), timeout=90)
    orthanc.start()
    wait_until(
        lambda: (d := _deliveries(node)) and all(x.state is DeliveryState.SENT for x in d),
        timeout=60,
    )
    study_uid = str(dcmread(dicom_files(lesion_series)[0]).StudyInstanceUID)
    found = DICOMwebClient(url=orthanc.dicomweb_url).search_for_instances(study_uid)
    modalities = sorted(
        item["00080060"]["Value"][0] for item in found if item["00080060"]["Value"][0] != "CT"
    )
    assert modalities == ["KO", "SEG", "SR"]
    assert {k: len(v) for k, v in _results_in_orthanc(orthanc, study_id).items()} == {
        "SR": 1,
        "KO": 1,
        "SEG": 1,
    }
