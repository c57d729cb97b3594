"""Models a site trusts, end to end through Orthanc: two live models routed by series
description, each result naming its model; a TorchScript export of the bundled model in
shadow beside it (the same probabilities, nothing of it sent); its promotion on the
dashboard; and the next study read by the promoted model, all without a restart."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom import Dataset, dcmread
from sqlalchemy import select

from assistant.access.users import add_user
from assistant.analysis.writers import result_series_number
from assistant.cli import main
from assistant.db import AuditEvent, Delivery, Job, JobState, ModelState, ResultKind, ResultObject
from assistant.intake.receiver import Receiver
from assistant.registry import Registry
from assistant.training.phantom_dicom import write_case
from assistant.training.phantoms import make_case
from tests.helpers import NODE_AE, csrf_token, login
from tests.peers.orthanc import Orthanc
from tests.peers.tools import wait_until
from tests.support.analysing_node import analysing_node, series_jobs
from tests.support.site import ADMIN
from web import create_app

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BUNDLED = ("radassist-hyperdense", "0.1.0")
EXPORTED = ("radassist-hyperdense", "0.1.0+torchscript")
SITE = ("site-head", "1.0.0")


@dataclasses.dataclass
class Node:
    receiver: Receiver
    orthanc: Orthanc
    config: Path

    def cli(self, *args: str) -> None:
        assert main([*args, "--config", str(self.config)]) == 0, args

    def push(self, folder: Path, seed: int, description: str) -> tuple[str, str, int]:
        """A positive synthetic head with this description, sent by Orthanc; its study
        and series UIDs and series number."""
        paths = write_case(
            make_case(seed, positive=True, max_slices=24, lesion_sizes=(18.0, 35.0)),
            folder,
            patient_id=f"MODELS-{seed}",
        )
        for path in paths:
            dataset = dcmread(path)
            dataset.SeriesDescription = description
            dataset.save_as(path)
        uploaded = [self.orthanc.upload(path) for path in paths]
        [study_id] = {item["ParentStudy"] for item in uploaded}
        answer = self.orthanc.post_json(
            "/modalities/radassist/store", {"Resources": [study_id], "Synchronous": True}
        )
        assert answer["FailedInstancesCount"] == 0
        first = dcmread(paths[0], stop_before_pixels=True)
        return str(first.StudyInstanceUID), str(first.SeriesInstanceUID), int(first.SeriesNumber)

    def finished_jobs(self, series_uid: str, count: int) -> list[Job] | None:
        """The series' jobs once `count` are done and their results all sent (or have
        none to send)."""
        with self.receiver.db.sessions() as session:
            jobs = series_jobs(session, series_uid)
            if len(jobs) != count or any(j.state is not JobState.DONE for j in jobs):
                return None
            pending = session.scalar(
                select(Delivery.id)
                .join(ResultObject, ResultObject.id == Delivery.result_pk)
                .where(ResultObject.job_pk.in_([j.id for j in jobs]))
                .where(Delivery.sent_at.is_(None))
                .limit(1)
            )
            session.expunge_all()
        return None if pending else jobs

    def orthanc_series(self, study_uid: str) -> dict[str, dict[str, str]]:
        """Every series of the study in Orthanc: its UID → its main tags."""
        found = self.orthanc.post_json(
            "/tools/find",
            {"Level": "Series", "Query": {"StudyInstanceUID": study_uid}, "Expand": True},
        )
        return {s["MainDicomTags"]["SeriesInstanceUID"]: s["MainDicomTags"] for s in found}

    def results(self, job: Job) -> dict[ResultKind, tuple[ResultObject, int]]:
        """A job's results with how many deliveries each has."""
        with self.receiver.db.sessions() as session:
            objects = list(
                session.scalars(select(ResultObject).where(ResultObject.job_pk == job.id))
            )
            counts = {
                o.id: len(session.scalars(select(Delivery).where(Delivery.result_pk == o.id)).all())
                for o in objects
            }
            session.expunge_all()
        return {o.kind: (o, counts[o.id]) for o in objects}


def _algorithm(sr: Dataset) -> dict[str, set[str]]:
    """The SR's algorithm identifications (TID 4019, one per measurement group): the
    names, versions and parameters they give."""
    found: dict[str, set[str]] = {"name": set(), "version": set(), "parameters": set()}
    keys = {"111001": "name", "111003": "version", "111002": "parameters"}

    def walk(items: Any) -> None:
        for item in items:
            concept = item.get("ConceptNameCodeSequence")
            code = concept[0].CodeValue if concept else ""
            if code in keys and "TextValue" in item:
                found[keys[code]].add(str(item.TextValue))
            walk(item.get("ContentSequence", []))

    walk(sr.ContentSequence)
    return found


@pytest.fixture
def node(
    start_node: Callable[..., Receiver], start_orthanc: Callable[..., Orthanc], tmp_path: Path
) -> Iterator[Node]:
    # Orthanc knows the node, to send it studies.
    with analysing_node(
        start_node,
        start_orthanc,
        tmp_path,
        lambda receiver: {"radassist": (NODE_AE, "127.0.0.1", receiver.scp.port)},
    ) as (receiver, orthanc, config):
        yield Node(receiver, orthanc, config)


def test_two_models_routed_a_shadow_beside_and_promoted_without_a_restart(
    node: Node, tmp_path: Path
) -> None:
    # A second model, trained here on a tiny synthetic set, added live; routes by description.
    site_model = tmp_path / "site-model"
    node.cli(
        "train",
        "--dataset",
        "synthetic:12,mask=intracranial,size=64",
        "--epochs",
        "1",
        "--out",
        str(site_model),
        "--name",
        SITE[0],
        "--version",
        SITE[1],
    )
    node.cli("model", "add", str(site_model), "--state", "live")
    node.cli("route", "add", "heads", "--model", BUNDLED[0], "--series-description", "*HEAD*")
    node.cli("route", "add", "brains", "--model", SITE[0], "--series-description", "*BRAIN*")

    head_study, head_series, head_number = node.push(tmp_path / "a", 101, "HEAD ROUTINE")
    brain_study, brain_series, brain_number = node.push(tmp_path / "b", 102, "BRAIN THIN")
    [head_job] = wait_until(lambda: node.finished_jobs(head_series, 1), timeout=90)
    [brain_job] = wait_until(lambda: node.finished_jobs(brain_series, 1), timeout=90)
    assert (head_job.model_name, head_job.model_version) == BUNDLED
    assert (brain_job.model_name, brain_job.model_version) == SITE

    registry = Registry(node.receiver.db, node.receiver.settings.storage.data_dir)
    for job, study, number, slot in (
        (head_job, head_study, head_number, 0),
        (brain_job, brain_study, brain_number, 1),
    ):
        sr_row, deliveries = node.results(job)[ResultKind.SR]
        assert deliveries == 1
        in_orthanc = node.orthanc_series(study)[sr_row.series_instance_uid]
        assert int(in_orthanc["SeriesNumber"]) == result_series_number("sr", number, slot)
        assert job.model_name in in_orthanc["SeriesDescription"]
        sr = dcmread(node.receiver.settings.storage.data_dir / sr_row.path)
        algorithm = _algorithm(sr)
        entry = registry.get(f"{job.model_name}:{job.model_version}")
        assert algorithm["name"] == {job.model_name}
        assert algorithm["version"] == {job.model_version}
        assert f"weights sha256 {entry.weights_sha256}" in algorithm["parameters"]
        assert f"study threshold {entry.threshold:g}" in algorithm["parameters"]

    # The bundled model as TorchScript, in shadow (the default) beside the live one.
    exported = tmp_path / "exported"
    node.cli("model", "export", f"{BUNDLED[0]}:{BUNDLED[1]}", "--torchscript", str(exported))
    node.cli("model", "add", str(exported))
    assert registry.get(":".join(EXPORTED)).state is ModelState.SHADOW
    shadow_study, shadow_series, _ = node.push(tmp_path / "c", 103, "HEAD ROUTINE")
    live, shadow = wait_until(lambda: node.finished_jobs(shadow_series, 2), timeout=90)
    assert (live.model_version, live.shadow, shadow.model_version, shadow.shadow) == (
        BUNDLED[1],
        False,
        EXPORTED[1],
        True,
    )
    assert shadow.study_probability == pytest.approx(live.study_probability, abs=1e-5)
    assert shadow.positive == live.positive
    shadow_results = node.results(shadow)
    assert set(shadow_results) >= {ResultKind.SR, ResultKind.KOS}
    assert all(deliveries == 0 for _, deliveries in shadow_results.values())  # nothing sent
    live_sr = node.results(live)[ResultKind.SR][0]
    in_orthanc = node.orthanc_series(shadow_study)
    assert live_sr.series_instance_uid in in_orthanc
    assert not {r.series_instance_uid for r, _ in shadow_results.values()} & set(in_orthanc)

    # Promotion on the dashboard: admin only, CSRF, audited; the next job uses it.
    app = create_app(node.receiver.settings, node.receiver.db)
    add_user(node.receiver.db, *ADMIN, "admin")
    client = app.test_client()
    login(client, ADMIN)
    page = f"/models/{EXPORTED[0]}/{EXPORTED[1]}"
    answer = client.post(
        f"{page}/state",
        data={"state": "live", "reason": "same results", "csrf_token": csrf_token(client, page)},
    )
    assert answer.status_code in (302, 303)
    assert registry.get(":".join(EXPORTED)).state is ModelState.LIVE
    assert registry.get(":".join(BUNDLED)).state is ModelState.RETIRED
    with node.receiver.db.sessions() as session:
        audited = session.scalars(
            select(AuditEvent.target).where(
                AuditEvent.action == "model-state", AuditEvent.username == ADMIN[0]
            )
        ).all()
    assert ":".join(EXPORTED) in audited

    next_study, next_series, _ = node.push(tmp_path / "d", 104, "HEAD ROUTINE")
    [promoted] = wait_until(lambda: node.finished_jobs(next_series, 1), timeout=90)
    assert ((promoted.model_name, promoted.model_version), promoted.shadow) == (EXPORTED, False)
    sr_row, deliveries = node.results(promoted)[ResultKind.SR]
    assert deliveries == 1 and sr_row.series_instance_uid in node.orthanc_series(next_study)
    sr = dcmread(node.receiver.settings.storage.data_dir / sr_row.path)
    assert _algorithm(sr)["version"] == {EXPORTED[1]}
    assert "format torchscript" in _algorithm(sr)["parameters"]

    # The promoted version reads the first head study again on request: its SR supersedes
    # the earlier version's (Predecessor Documents); the other model's results stay theirs.
    node.cli("jobs", "run", head_series, "--model", ":".join(EXPORTED))
    first, again = wait_until(lambda: node.finished_jobs(head_series, 2), timeout=90)
    assert (first.model_version, again.model_version, again.shadow) == (
        BUNDLED[1],
        EXPORTED[1],
        False,
    )
    earlier_sr = node.results(first)[ResultKind.SR][0]
    new_sr_row, deliveries = node.results(again)[ResultKind.SR]
    assert deliveries == 1 and new_sr_row.series_instance_uid in node.orthanc_series(head_study)
    new_sr = dcmread(node.receiver.settings.storage.data_dir / new_sr_row.path)
    predecessors = [
        item.ReferencedSOPInstanceUID
        for study in new_sr.PredecessorDocumentsSequence
        for series in study.ReferencedSeriesSequence
        for item in series.ReferencedSOPSequence
    ]
    assert predecessors == [earlier_sr.sop_instance_uid]
    [brain_again] = node.finished_jobs(brain_series, 1) or []
    assert brain_again.id == brain_job.id  # untouched
