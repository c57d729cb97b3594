"""A job's life in the worker: failed with the error, retried, done; a skipped series
records why; a job runs once however often its message arrives."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from assistant.analysis import pipeline
from assistant.analysis.pipeline import Analysis, WarmUpFailed
from assistant.cli import build_worker, main
from assistant.db import Instance, Job, JobState, ResultObject
from assistant.intake.submit import retry_job
from tests.peers.dcmtk import storescu
from tests.peers.tools import wait_until
from tests.support.ct import dicom_files, shared_ct

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _job(node) -> Job:  # type: ignore[no-untyped-def]
    with node.db.sessions() as session:
        return session.scalars(select(Job)).one()


def test_a_failed_job_keeps_its_error_and_can_be_retried(start_node) -> None:
    node = start_node(quiet_seconds=0.5)
    assert storescu(node.scp.port, dicom_files(shared_ct("ge_head_tilted"))).returncode == 0
    wait_until(lambda: _has_job(node), timeout=20)
    job = _job(node)
    assert job.state is JobState.QUEUED
    with node.db.sessions() as session:
        path = node.settings.storage.data_dir / session.scalars(select(Instance.path)).first()
    original = path.read_bytes()
    path.write_bytes(original[: len(original) - 200_000])  # pixel data cut short

    worker = build_worker(node.settings, node.db)  # not started: run by hand
    worker.analysis.run(job.id)
    failed = _job(node)
    assert failed.state is JobState.FAILED and failed.reason and failed.attempts == 1

    path.write_bytes(original)
    queued: list[int] = []
    assert retry_job(node.db, job.id, queued.append)
    assert queued == [job.id] and _job(node).state is JobState.QUEUED
    worker.analysis.run(job.id)
    worker.analysis.run(job.id)  # a second message for the same job: nothing happens
    done = _job(node)
    assert done.state is JobState.DONE and done.attempts == 2 and done.summary
    assert not retry_job(node.db, job.id, queued.append)  # only failed jobs


def test_a_job_whose_instances_change_while_it_runs_sends_nothing(
    start_node,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What the model read is neither this job's inputs nor the next's: nothing is written
    or sent, and the series' reopening brings the job for its new inputs."""
    node = start_node(quiet_seconds=0.5)
    assert storescu(node.scp.port, dicom_files(shared_ct("ge_head_tilted"))).returncode == 0
    wait_until(lambda: _has_job(node), timeout=20)
    job = _job(node)
    worker = build_worker(node.settings, node.db)  # not started: run by hand
    predict = pipeline.predict_series

    def predict_while_a_sender_replaces(*args, **kwargs):  # type: ignore[no-untyped-def]
        found = predict(*args, **kwargs)
        with node.db.sessions() as session, session.begin():
            session.scalars(select(Instance)).first().version = 2  # type: ignore[union-attr]
        return found

    monkeypatch.setattr(pipeline, "predict_series", predict_while_a_sender_replaces)
    worker.analysis.run(job.id)
    skipped = _job(node)
    assert skipped.state is JobState.SKIPPED
    assert "changed while it ran" in skipped.reason
    with node.db.sessions() as session:
        assert session.scalars(select(ResultObject)).all() == []


def test_a_series_that_does_not_match_is_skipped_with_its_reason(
    start_node, tmp_path: Path
) -> None:
    node = start_node(quiet_seconds=0.5)
    few = dicom_files(shared_ct("ge_head_tilted"))[:5]
    assert storescu(node.scp.port, few).returncode == 0
    wait_until(lambda: _has_job(node), timeout=20)
    skipped = _job(node)
    assert skipped.state is JobState.SKIPPED
    assert "fewer than the 10 required" in skipped.reason


def _has_job(node) -> bool:  # type: ignore[no-untyped-def]
    with node.db.sessions() as session:
        return session.scalar(select(Job.id)) is not None


def test_warming_up_builds_everything_once_and_keeps_nothing(node, caplog) -> None:  # type: ignore[no-untyped-def]
    worker = build_worker(node.settings, node.db)
    with caplog.at_level("INFO", logger="assistant.analysis.pipeline"):
        worker.analysis.warm_up()
    assert any("warmed up" in record.getMessage() for record in caplog.records)
    with node.db.sessions() as session:
        assert session.scalar(select(Job.id)) is None
        assert session.scalar(select(ResultObject.id)) is None
    results = node.settings.storage.results_dir
    assert not results.exists() or not any(p.is_file() for p in results.rglob("*"))


def test_a_worker_whose_warm_up_fails_stops_with_the_reason(
    start_node, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model or writer that fails on a synthetic series would fail every job: the
    worker refuses to start, saying why, instead of taking jobs only to fail them."""
    node = start_node()
    worker = build_worker(node.settings, node.db)

    def broken(*_args: object, **_kwargs: object) -> None:
        raise ValueError("the SR writer is broken")

    monkeypatch.setattr(worker.analysis, "_build", broken)
    with pytest.raises(WarmUpFailed, match="the SR writer is broken"):
        worker.start()
    assert not worker._threads  # no job thread took anything


def test_radassist_worker_exits_1_when_the_warm_up_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RADASSIST_STORAGE__DATA_DIR", str(tmp_path))
    assert main(["db", "upgrade"]) == 0

    def broken(self: Analysis) -> None:
        raise WarmUpFailed("model x 1 or the writers fail on a synthetic series (boom)")

    monkeypatch.setattr(Analysis, "warm_up", broken)
    assert main(["worker"]) == 1
    assert "fail on a synthetic series (boom)" in capsys.readouterr().err


def test_a_series_sent_with_its_localizer_is_analysed_and_says_what_was_left_out(
    start_node, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """Before, one scout in the series skipped it whole ("different orientations")."""
    import json

    from pydicom import dcmread
    from pydicom.uid import generate_uid

    node = start_node(quiet_seconds=0.5)
    files = dicom_files(shared_ct("ge_head_tilted"))
    scout = dcmread(files[0])
    scout.SOPInstanceUID = scout.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    scout.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    scout.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
    scout.save_as(tmp_path / "scout.dcm")
    assert storescu(node.scp.port, [tmp_path / "scout.dcm", *files]).returncode == 0
    wait_until(lambda: _has_job(node), timeout=20)
    worker = build_worker(node.settings, node.db)  # not started: run by hand
    worker.analysis.run(_job(node).id)
    job = _job(node)
    assert job.state is JobState.DONE, job.reason
    note = "Read 28 of 29 images; left out localizer (scout): 1"
    assert note in job.summary.splitlines()
    assert json.loads(job.findings_json)["notes"] == [note]
    with node.db.sessions() as session:
        sr_path = session.scalar(select(ResultObject.path).where(ResultObject.kind == "sr"))
    sr = dcmread(node.settings.storage.data_dir / sr_path)
    texts = [i.TextValue for i in sr.ContentSequence[-1].ContentSequence if i.ValueType == "TEXT"]
    assert note in texts


def test_two_series_of_a_study_get_results_that_name_them(start_node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Thin and thick reconstructions in one study: two SR series, each with its own
    number and a description naming its source series; the API says which is which."""
    from pydicom import dcmread
    from pydicom.uid import generate_uid

    node = start_node(quiet_seconds=0.5)
    files = dicom_files(shared_ct("ge_head_tilted"))
    second_uid = generate_uid()
    for path in files:
        copy = dcmread(path)
        copy.SeriesInstanceUID = second_uid
        copy.SOPInstanceUID = copy.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        copy.SeriesNumber = 14
        copy.SeriesDescription = "HEAD 5MM"
        copy.save_as(tmp_path / path.name)
    assert storescu(node.scp.port, files).returncode == 0
    assert storescu(node.scp.port, sorted(tmp_path.glob("*"))).returncode == 0

    def two_jobs() -> bool:
        with node.db.sessions() as session:
            return len(session.scalars(select(Job)).all()) == 2

    wait_until(two_jobs, timeout=30)
    worker = build_worker(node.settings, node.db)  # not started: run by hand
    with node.db.sessions() as session:
        job_ids = session.scalars(select(Job.id).order_by(Job.id)).all()
    for job_id in job_ids:
        worker.analysis.run(job_id)
    with node.db.sessions() as session:
        paths = session.scalars(
            select(ResultObject.path).where(ResultObject.kind == "sr").order_by(ResultObject.id)
        ).all()
    reports = [dcmread(node.settings.storage.data_dir / p) for p in paths]
    source_number = int(dcmread(files[0]).SeriesNumber)
    assert sorted(int(r.SeriesNumber) for r in reports) == sorted(
        [int(f"99{source_number}1"), 99141]
    )
    descriptions = sorted(str(r.SeriesDescription) for r in reports)
    assert any("S14 HEAD 5MM" in d for d in descriptions)
    assert all(d.startswith("AI report") and len(d) <= 64 for d in descriptions)
    assert len(set(descriptions)) == 2
