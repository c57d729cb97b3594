"""The worker's pipeline for one job: read the series, predict with the job's model,
write SR/KOS/SEG, record them with their outbox rows, and send. A job of a model in
shadow writes and records the same results and sends nothing.

Every step is idempotent: the job is claimed with a conditional UPDATE, the objects'
UIDs come from (series, model, inputs), a result file that exists is kept, and result
and outbox rows are unique. Running a job twice therefore sends nothing twice.
"""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

from pydicom import Dataset, dcmread
from pydicom.filewriter import dcmwrite
from sqlalchemy import CursorResult, or_, select, update

from assistant.analysis.imaging import SeriesGeometry, UnreadableSeries, read_series
from assistant.analysis.imaging.synthetic import write_demo_series
from assistant.analysis.inference import predict_series
from assistant.analysis.model.folder import LoadedModel
from assistant.analysis.model.shelf import ModelShelf
from assistant.analysis.writers.context import WriterContext, evidence_headers
from assistant.analysis.writers.kos import build_kos
from assistant.analysis.writers.seg import build_seg
from assistant.analysis.writers.sr import build_sr
from assistant.analysis.writers.uids import ResultIdentity
from assistant.db import (
    Database,
    Instance,
    Job,
    JobState,
    ModelState,
    ResultKind,
    ResultObject,
    Series,
    Study,
    input_digest,
    utcnow,
)
from assistant.delivery.notice import NoticeSubject, build_notice, notice_bytes, read_notice
from assistant.delivery.outbox import Outbox
from assistant.findings import Findings
from assistant.registry import ModelEntry, RegistryError
from assistant.settings import Settings
from assistant.storage import InstanceStore

LOGGER = logging.getLogger(__name__)

#: A job running longer than this on another host is taken to have lost its worker.
JOB_TIMEOUT = timedelta(hours=1)


def _series_number(header: Dataset) -> int | None:
    """The source's Series Number, or None when absent or not a number."""
    try:
        value = header.get("SeriesNumber")
        return None if value in (None, "") else int(value)
    except (TypeError, ValueError):
        return None


class WarmUpFailed(RuntimeError):
    """The model or the writers fail on a synthetic series: the worker does not start."""


def this_worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _encode(dataset: Dataset) -> bytes:
    buffer = io.BytesIO()
    dcmwrite(buffer, dataset, enforce_file_format=True)
    return buffer.getvalue()


@dataclass(frozen=True)
class _Written:
    """A result file written for a job: a DICOM object, or the notice (its document in
    `notice`, for the outbox's rules)."""

    kind: ResultKind
    sop_class_uid: str
    sop_instance_uid: str
    series_uid: str
    study_uid: str
    path: str
    notice: dict[str, Any] | None = None


@dataclass(frozen=True)
class _JobInput:
    series_pk: int
    study_uid: str
    series_uid: str
    digest: str
    model_name: str
    model_version: str
    #: Run by a model in shadow: results kept, nothing sent.
    shadow: bool
    id: int = 0


class Analysis:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        models: ModelShelf,
        outbox: Outbox,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._settings = settings
        self._sessions = db.sessions
        self._models = models
        self._outbox = outbox
        self._write_lock = db.write_lock
        self._clock = clock
        self._results = InstanceStore(settings.storage.results_dir)
        self._worker = this_worker()

    # -- running a job -------------------------------------------------------------------

    def run(self, job_id: int) -> None:
        """Run one job if it is still queued; any outcome is recorded on the job."""
        job = self._claim(job_id)
        if job is None:
            return
        try:
            entry = self._models.entry(job.model_name, job.model_version)
        except RegistryError as exc:
            self._finish(job_id, JobState.SKIPPED, reason=str(exc))
            return
        except Exception as exc:  # the database, say: the job fails with the reason
            LOGGER.exception("job %d: the registry cannot be read", job_id)
            self._finish(job_id, JobState.FAILED, reason=f"{type(exc).__name__}: {exc}")
            return
        if job.shadow and entry.state is ModelState.RETIRED:
            # A live job runs with the version it was made for even when a newer one was
            # promoted meanwhile (its series would otherwise get no result at all); a
            # retired shadow model's comparison is over.
            self._finish(
                job_id,
                JobState.SKIPPED,
                reason=f"model {entry.ref} was retired before its shadow job ran",
            )
            return
        started = time.perf_counter()
        try:
            model = self._models.get(entry)
            series = read_series(
                self._settings.storage.instances_dir / job.study_uid / job.series_uid
            )
            prediction = predict_series(model, series)
            seconds = time.perf_counter() - started
            if self._inputs_changed(job):
                # An instance was replaced or added while the model read the files: what
                # it read is neither this job's inputs nor the next's. The series has
                # reopened, and the job for its new inputs follows.
                self._finish(
                    job_id,
                    JobState.SKIPPED,
                    reason="its instances changed while it ran; the series is analysed again",
                )
                return
            written = self._write(job, series, prediction, model, entry)
        except UnreadableSeries as exc:
            self._finish(job_id, JobState.SKIPPED, reason=f"the model cannot read it: {exc}")
            return
        except Exception as exc:
            LOGGER.exception("job %d failed", job_id)
            self._finish(job_id, JobState.FAILED, reason=f"{type(exc).__name__}: {exc}")
            return
        self._record(job, prediction, seconds, written)
        LOGGER.info(
            "job %d (%s%s) done in %.1f s: %s",
            job_id,
            entry.ref,
            ", shadow" if job.shadow else "",
            seconds,
            prediction.summary().splitlines()[0],
        )
        if not job.shadow:
            self._outbox.wake()  # its rows are in: the outbox's thread sends them now

    def _claim(self, job_id: int) -> _JobInput | None:
        with self._write_lock, self._sessions() as session, session.begin():
            # An UPDATE executes to a CursorResult (which has rowcount); Session.execute
            # is typed as returning the general Result.
            claimed = cast(
                CursorResult[Any],
                session.execute(
                    update(Job)
                    .where(Job.id == job_id, Job.state == JobState.QUEUED)
                    .values(
                        state=JobState.RUNNING,
                        started_at=self._clock(),
                        attempts=Job.attempts + 1,
                        worker=self._worker,
                        reason="",
                    )
                ),
            ).rowcount
            if claimed != 1:
                return None
            row = session.execute(
                select(
                    Job.series_pk,
                    Job.input_digest,
                    Job.model_name,
                    Job.model_version,
                    Job.shadow,
                    Series.series_instance_uid,
                    Study.study_instance_uid,
                )
                .join(Series, Series.id == Job.series_pk)
                .join(Study, Study.id == Series.study_pk)
                .where(Job.id == job_id)
            ).one()
        return _JobInput(
            row.series_pk,
            row.study_instance_uid,
            row.series_instance_uid,
            row.input_digest,
            row.model_name,
            row.model_version,
            row.shadow,
            job_id,
        )

    def _inputs_changed(self, job: _JobInput) -> bool:
        """Whether the series' instances (and their versions) are no longer the job's."""
        with self._sessions() as session:
            rows = session.execute(
                select(Instance.sop_instance_uid, Instance.version).where(
                    Instance.series_pk == job.series_pk
                )
            ).all()
        return input_digest((row.sop_instance_uid, row.version) for row in rows) != job.digest

    def _superseded(self, job: _JobInput, kind: ResultKind) -> ResultObject | None:
        """The latest result of `kind` for this series by this model (any of its versions)
        from other inputs or another version: what this analysis supersedes. Other models'
        results are theirs; a shadow analysis supersedes only shadow ones (a live one's
        predecessor is what was sent)."""
        with self._sessions() as session:
            result = session.scalar(
                select(ResultObject)
                .join(Job, Job.id == ResultObject.job_pk)
                .where(
                    Job.series_pk == job.series_pk,
                    Job.model_name == job.model_name,
                    Job.shadow == job.shadow,
                    Job.id != job.id,
                    or_(
                        Job.input_digest != job.digest,
                        Job.model_version != job.model_version,
                    ),
                    Job.state == JobState.DONE,
                    ResultObject.kind == kind,
                )
                .order_by(Job.finished_at.desc(), Job.id.desc())
                .limit(1)
            )
            if result is not None:
                session.expunge(result)
            return result

    def _previous_reports(self, job: _JobInput) -> list[Dataset]:
        """The SR this analysis supersedes (its Predecessor Documents), if any."""
        earlier = self._superseded(job, ResultKind.SR)
        path = earlier.path if earlier is not None else None
        if path is None:
            return []
        try:
            return [dcmread(self._settings.storage.data_dir / path, stop_before_pixels=True)]
        except (OSError, ValueError) as exc:
            LOGGER.warning("cannot read the earlier report %s (%s); not referenced", path, exc)
            return []

    def warm_up(self) -> list[str]:
        """Load every live and shadow model and run it and the writers once on a small
        synthetic series; returns the models warmed ("name:version").

        The first study would otherwise pay one-time costs (torch's kernel set-up,
        highdicom's tables of IODs): over a second on two cores. A live model that fails
        here would fail every job: WarmUpFailed stops the worker. A shadow model that
        fails is logged and its jobs fail with the reason; the live ones go on.
        """
        warmed = []
        with tempfile.TemporaryDirectory(prefix="radassist-warm-up-") as scratch:
            # One synthetic series (and its evidence headers) for every model.
            write_demo_series(Path(scratch), count=32)
            series = read_series(Path(scratch))
            headers = evidence_headers(series.slices)
            for entry in self._models.registry.active():
                started = time.perf_counter()
                try:
                    model = self._models.get(entry)
                    prediction = predict_series(model, series)
                    job = _JobInput(
                        0,
                        "",
                        series.series_instance_uid,
                        "warm-up",
                        entry.name,
                        entry.version,
                        entry.state is ModelState.SHADOW,
                    )
                    self._build(prediction, headers, self._context(job, headers, model, entry), [])
                except Exception as exc:  # whatever it is, every job would meet it too
                    LOGGER.exception("warming up model %s and the writers failed", entry.ref)
                    if entry.state is ModelState.SHADOW:
                        continue
                    raise WarmUpFailed(
                        f"model {entry.ref} or the writers fail on a synthetic series "
                        f"({type(exc).__name__}: {exc}); no job would succeed"
                    ) from exc
                warmed.append(entry.ref)
                LOGGER.info(
                    "model %s (%s) and writers warmed up in %.1f s",
                    entry.ref,
                    entry.state.value,
                    time.perf_counter() - started,
                )
        return warmed

    def _context(
        self,
        job: _JobInput,
        headers: Mapping[str, Dataset],
        model: LoadedModel,
        entry: ModelEntry,
    ) -> WriterContext:
        """Who writes the job's results, and of which source series (`headers`: the
        evidence headers, the first one naming the series)."""
        first = next(iter(headers.values()))
        card = model.card
        return WriterContext(
            identity=ResultIdentity(job.series_uid, card.name, card.version, job.digest),
            weights_sha256=card.weights_sha256,
            clinical_use=card.clinical_use,
            intended_use=card.intended_use,
            source_series_number=_series_number(first),
            source_series_description=str(first.get("SeriesDescription", "") or ""),
            model_slot=entry.slot,
            threshold=card.threshold,
            model_format=card.format,
        )

    def _build(
        self,
        prediction: Findings,
        headers: Mapping[str, Dataset],
        context: WriterContext,
        previous_reports: list[Dataset],
    ) -> list[tuple[ResultKind, Dataset]]:
        """The SR, and the KOS and SEG where there is something to show."""
        objects: list[tuple[ResultKind, Dataset | None]] = [
            (ResultKind.SR, build_sr(prediction, headers, context, previous_reports)),
            (ResultKind.KOS, build_kos(prediction, headers, context)),
            (ResultKind.SEG, build_seg(prediction, headers, context)),
        ]
        return [(kind, dataset) for kind, dataset in objects if dataset is not None]

    def _write(
        self,
        job: _JobInput,
        series: SeriesGeometry,
        prediction: Findings,
        model: LoadedModel,
        entry: ModelEntry,
    ) -> list[_Written]:
        """Write the DICOM objects, then (when the node has notification destinations and
        the model is not in shadow) the notice that goes with them."""
        headers = evidence_headers(series.slices)  # a multi-frame object once
        context = self._context(job, headers, model, entry)
        written = []
        previous = self._previous_reports(job)
        for kind, dataset in self._build(prediction, headers, context, previous):
            stored = self._results.write(
                str(dataset.StudyInstanceUID),
                str(dataset.SeriesInstanceUID),
                str(dataset.SOPInstanceUID),
                [_encode(dataset)],
            )
            written.append(
                _Written(
                    kind,
                    str(dataset.SOPClassUID),
                    str(dataset.SOPInstanceUID),
                    str(dataset.SeriesInstanceUID),
                    str(dataset.StudyInstanceUID),
                    stored.path.relative_to(self._settings.storage.data_dir).as_posix(),
                )
            )
        if not job.shadow and any(d.notifies for d in self._settings.destinations):
            written.append(self._write_notice(job, prediction, context, written))
        return written

    def _write_notice(
        self,
        job: _JobInput,
        prediction: Findings,
        context: WriterContext,
        written: list[_Written],
    ) -> _Written:
        """Write the notice of the analysis whose DICOM objects are `written`."""
        sr = next((w for w in written if w.kind is ResultKind.SR), None)
        message_id = context.identity.uid("notice")
        notice = build_notice(
            prediction,
            self._subject(job),
            message_id=message_id,
            created_at=self._clock(),
            replaces=self._previous_notice(job),
            use_statement=context.use_statement(),
            clinical_use=context.clinical_use,
            study_page=f"{self._settings.public_url}/studies/{job.study_uid}",
            viewer=(
                f"{self._settings.public_url}/viewer/viewer?StudyInstanceUIDs={job.study_uid}"
                + (f"&initialSeriesInstanceUID={sr.series_uid}" if sr else "")
            ),
            sr_sop_instance_uid=sr.sop_instance_uid if sr else None,
            sr_series_instance_uid=sr.series_uid if sr else None,
        )
        stored = self._results.write(
            job.study_uid, job.series_uid, message_id, [notice_bytes(notice)], suffix=".json"
        )
        return _Written(
            ResultKind.NOTICE,
            "",
            message_id,
            job.series_uid,
            job.study_uid,
            stored.path.relative_to(self._settings.storage.data_dir).as_posix(),
            # as stored: a job run again sends what was written the first time
            notice if stored.created else read_notice(stored.path),
        )

    def _subject(self, job: _JobInput) -> NoticeSubject:
        """The patient, study and series of a job, as the node recorded them."""
        with self._sessions() as session:
            series = session.get(Series, job.series_pk)
            assert series is not None  # a job's series is never deleted under it
            study, patient = series.study, series.study.patient
            return NoticeSubject(
                patient_id=patient.patient_id,
                patient_name=patient.patient_name,
                patient_birth_date=patient.birth_date,
                patient_sex=patient.sex,
                study_instance_uid=study.study_instance_uid,
                accession_number=study.accession_number,
                study_date=study.study_date,
                study_description=study.study_description,
                series_instance_uid=series.series_instance_uid,
                series_number=series.series_number,
                series_description=series.series_description,
                modality=series.modality,
                body_part=series.body_part_examined,
                calling_ae=series.calling_ae_title,
            )

    def _previous_notice(self, job: _JobInput) -> str | None:
        """The message id of the notice this analysis corrects, if any."""
        earlier = self._superseded(job, ResultKind.NOTICE)
        return earlier.sop_instance_uid if earlier is not None else None

    def _record(
        self,
        job: _JobInput,
        prediction: Findings,
        seconds: float,
        written: list[_Written],
    ) -> None:
        """Record the results and finish the job in one transaction; a live job's results
        get their outbox rows in it too, a shadow job's none."""
        job_id = job.id
        now = self._clock()
        with self._write_lock, self._sessions() as session, session.begin():
            for item in written:
                result = session.scalar(
                    select(ResultObject).where(
                        ResultObject.sop_instance_uid == item.sop_instance_uid
                    )
                )
                if result is None:
                    result = ResultObject(
                        job_pk=job_id,
                        kind=item.kind,
                        sop_class_uid=item.sop_class_uid,
                        sop_instance_uid=item.sop_instance_uid,
                        series_instance_uid=item.series_uid,
                        study_instance_uid=item.study_uid,
                        path=item.path,
                        created_at=now,
                    )
                    session.add(result)
                    session.flush()
                if not job.shadow:
                    self._outbox.add(session, result, item.notice)
            session.execute(
                update(Job)
                .where(Job.id == job_id, Job.state == JobState.RUNNING)
                .values(
                    state=JobState.DONE,
                    finished_at=now,
                    inference_seconds=round(seconds, 3),
                    study_probability=prediction.study_probability,
                    positive=prediction.positive,
                    summary=prediction.summary(),
                    findings_json=json.dumps(prediction.to_dict()),
                )
            )

    def _finish(self, job_id: int, state: JobState, reason: str) -> None:
        with self._write_lock, self._sessions() as session, session.begin():
            session.execute(
                update(Job)
                .where(Job.id == job_id, Job.state == JobState.RUNNING)
                .values(state=state, finished_at=self._clock(), reason=reason[:4000])
            )
        LOGGER.warning("job %d %s: %s", job_id, state.value, reason)

    # -- after a crash -------------------------------------------------------------------

    def recover(self) -> list[int]:
        """Put back jobs whose worker died; returns every queued job id (to enqueue)."""
        host = socket.gethostname()
        now = self._clock()
        with self._write_lock, self._sessions() as session, session.begin():
            running = session.execute(
                select(Job.id, Job.worker, Job.started_at).where(Job.state == JobState.RUNNING)
            ).all()
            for row in running:
                worker_host, _, pid = row.worker.rpartition(":")
                dead = (worker_host == host and pid.isdigit() and not _process_alive(int(pid))) or (
                    row.started_at is not None and now - row.started_at > JOB_TIMEOUT
                )
                if dead and row.worker != self._worker:
                    session.execute(
                        update(Job)
                        .where(Job.id == row.id, Job.state == JobState.RUNNING)
                        .values(state=JobState.QUEUED, reason="its worker stopped; queued again")
                    )
                    LOGGER.warning(
                        "job %d was left running by %s; queued again", row.id, row.worker
                    )
            return list(
                session.scalars(select(Job.id).where(Job.state == JobState.QUEUED).order_by(Job.id))
            )
