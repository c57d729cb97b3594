"""What the dashboard and the API show: studies with a status and a verdict, derived from
the series, job and delivery tables in a few set-based queries (never one per row)."""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import cached_property

from sqlalchemy import Select, Subquery, func, or_, select
from sqlalchemy.orm import Session, aliased

from assistant.db import (
    Delivery,
    DeliveryState,
    Feedback,
    InstanceChange,
    InstanceChangeAction,
    Job,
    JobState,
    Patient,
    RegisteredModel,
    ResultObject,
    Series,
    SeriesState,
    Study,
    utcnow,
)
from assistant.findings import Findings, FindingsError, Lesion
from web.reading import Reading, reading_of

LOGGER = logging.getLogger(__name__)

#: Study states, most urgent first: a study shows the first state any of its series has.
STATUSES = (
    "receiving",
    "waiting",
    "analysing",
    "queued",
    "failed",
    "done",
    "delivered",
    "skipped",
)
STATUS_LABELS = {
    "receiving": "receiving",
    "waiting": "waiting for completion",
    "analysing": "analysing",
    "queued": "queued",
    "failed": "failed",
    "done": "done",
    "delivered": "delivered",
    "skipped": "skipped",
}
VERDICTS = ("positive", "negative", "none")
#: What became of an analysis's results at its destinations (see `delivery_summary`).
DELIVERY_SUMMARIES = ("none", "pending", "failing", "failed", "sent")
#: A series that got an instance this recently is "receiving", later "waiting".
RECEIVING_WINDOW = timedelta(seconds=3)


@dataclass(frozen=True)
class StudyFilter:
    received_from: date | None = None
    received_to: date | None = None
    status: str | None = None
    verdict: str | None = None
    #: Matches the start of a patient ID or accession number.
    search: str = ""


@dataclass(frozen=True)
class SeriesView:
    pk: int
    series_instance_uid: str
    number: int | None
    description: str
    modality: str
    instance_count: int
    status: str
    #: Why it was skipped or failed, or the job's summary.
    reason: str
    job_id: int | None
    positive: bool | None
    probability: float | None
    #: Changed copies of its instances, by action (replaced, kept-first, refused).
    instance_changes: dict[str, int] = field(default_factory=dict)
    #: Its latest analysis's results at their destinations (DELIVERY_SUMMARIES).
    delivery: str = "none"
    #: Its latest analysis's summary and findings record, once it is done ("" before).
    summary: str = field(default="", repr=False, compare=False)
    findings_record: str = field(default="", repr=False, compare=False)

    @cached_property
    def reading(self) -> Reading | None:
        """Its latest analysis's impression and midline shift; None before it is done.
        Read from the record when first asked for: the worklist asks for the rows of the
        page it shows, not for every study it sorts."""
        return reading_of(self.findings_record) if self.positive is not None else None

    @property
    def finding(self) -> str:
        """Its latest analysis's impression ("" before one is done)."""
        if self.reading is not None:
            return self.reading.impression
        return self.summary.splitlines()[0].split(" (")[0] if self.summary else ""

    @property
    def incomplete(self) -> bool:
        """Whether its latest analysis read a volume with a hole in it."""
        return any(line.startswith("Incomplete volume") for line in self.summary.splitlines())

    @property
    def change_notes(self) -> list[str]:
        """The changed re-sends in words, for the study page."""
        notes = []
        for action, words in _CHANGE_WORDS.items():
            count = self.instance_changes.get(action, 0)
            if count:
                notes.append(f"{count} {'instance' if count == 1 else 'instances'} {words}")
        return notes


_CHANGE_WORDS = {
    InstanceChangeAction.REPLACED.value: "replaced by the sender (earlier copies kept)",
    InstanceChangeAction.KEPT_FIRST.value: "sent again changed; the first copy kept in use",
    InstanceChangeAction.REFUSED.value: "sent again changed and refused",
}


@dataclass(frozen=True)
class StudyView:
    pk: int
    study_instance_uid: str
    patient_id: str
    patient_name: str
    accession_number: str
    study_date: str
    description: str
    received_at: datetime
    status: str
    positive: bool | None
    probability: float | None
    series: tuple[SeriesView, ...] = field(default=())
    #: Patient Sex as sent ("F", "M", "O" or "").
    patient_sex: str = ""
    #: Patient Birth Date as sent (YYYYMMDD or "").
    patient_birth_date: str = ""

    @property
    def patient_age(self) -> str:
        """Age at the study date, as a radiologist writes it ("67 y", "8 mo", "12 d"),
        or "" when either date is unknown."""
        return age_at(self.patient_birth_date, self.study_date)

    @property
    def verdict(self) -> str:
        return "none" if self.positive is None else ("positive" if self.positive else "negative")

    @cached_property
    def most_severe(self) -> SeriesView | None:
        """The analysed series that weighs most: positive before negative, then the
        higher probability."""
        judged = [s for s in self.series if s.positive is not None and s.finding]
        return max(judged, key=lambda s: (bool(s.positive), s.probability or 0.0), default=None)

    @property
    def finding(self) -> str:
        """The most severe series' impression, named by its series number: "S2: Small
        right parietal …", "S2 (incomplete volume): …"; "" before any analysis."""
        worst = self.most_severe
        if worst is None:
            return ""
        number = f"S{worst.number}" if worst.number is not None else "Series"
        return f"{number}{' (incomplete volume)' if worst.incomplete else ''}: {worst.finding}"

    @property
    def reading(self) -> Reading | None:
        """The most severe series' reading (what `finding` shows)."""
        return self.most_severe.reading if self.most_severe is not None else None

    @property
    def status_label(self) -> str:
        return STATUS_LABELS[self.status]


@dataclass(frozen=True)
class Page:
    studies: tuple[StudyView, ...]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def age_at(birth_date: str, on: str) -> str:
    """The age on date `on` of someone born on `birth_date` (both DICOM DA, YYYYMMDD), in
    the unit PS3.5 uses for Patient's Age at that age: days under a month, months under
    two years, else years. "" when a date is missing or not a date."""
    try:
        born = datetime.strptime(birth_date.strip(), "%Y%m%d").date()
        then = datetime.strptime(on.strip(), "%Y%m%d").date()
    except ValueError:
        return ""
    if then < born:
        return ""
    months = (then.year - born.year) * 12 + then.month - born.month - (then.day < born.day)
    if months < 1:
        return f"{(then - born).days} d"
    if months < 24:
        return f"{months} mo"
    return f"{months // 12} y"


def _study_query(flt: StudyFilter) -> Select:
    query = select(Study, Patient).join(Patient, Study.patient_pk == Patient.id)
    if flt.received_from:
        query = query.where(
            Study.received_at >= datetime.combine(flt.received_from, datetime.min.time())
        )
    if flt.received_to:
        end = datetime.combine(flt.received_to, datetime.min.time()) + timedelta(days=1)
        query = query.where(Study.received_at < end)
    if flt.search:
        pattern = flt.search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(
            or_(
                Patient.patient_id.like(pattern, escape="\\"),
                Study.accession_number.like(pattern, escape="\\"),
            )
        )
    return query


def _latest_jobs(study_pks: Select, shadow: bool) -> Subquery:
    """(series_pk, job_id) of the latest job of each series of the selected studies, of
    the models in shadow or of the others."""
    return (
        select(Job.series_pk, func.max(Job.id).label("job_id"))
        .join(Series, Series.id == Job.series_pk)
        .where(Series.study_pk.in_(study_pks), Job.shadow.is_(shadow))
        .group_by(Job.series_pk)
        .subquery()
    )


#: Which live analysis speaks for a series that several live models read: a positive
#: first (the surest), then one not yet finished, one that failed, a negative, a skip.
_SPEAKS_FIRST = {JobState.RUNNING: 1, JobState.QUEUED: 1, JobState.FAILED: 2, JobState.DONE: 3}


def _speaking_jobs(session: Session, study_pks: Select) -> dict[int, Job]:
    """Per series of the selected studies, the job whose verdict and status the worklist
    shows: of each live model's latest job on it, the one _SPEAKS_FIRST puts first, so a
    series is negative only when every live model that read it found nothing."""
    latest_per_model = (
        select(func.max(Job.id))
        .join(Series, Series.id == Job.series_pk)
        .where(Series.study_pk.in_(study_pks), Job.shadow.is_(False))
        .group_by(Job.series_pk, Job.model_name)
    )
    chosen: dict[int, Job] = {}
    for job in session.scalars(select(Job).where(Job.id.in_(latest_per_model))):
        current = chosen.get(job.series_pk)
        if current is None or _speaking_rank(job) < _speaking_rank(current):
            chosen[job.series_pk] = job
    return chosen


def _speaking_rank(job: Job) -> tuple[int, float, int]:
    """Lower speaks first: a positive (the surer first), then by _SPEAKS_FIRST, the
    newest first among equals."""
    if job.state is JobState.DONE and job.positive:
        return (0, -(job.study_probability or 0.0), -job.id)
    return (_SPEAKS_FIRST.get(job.state, 4), 0.0, -job.id)


def _series_views(session: Session, study_pks: Select) -> dict[int, list[SeriesView]]:
    """Every series of the selected studies with the job that speaks for it and its
    delivery outcome.

    Only the jobs of models not in shadow make a series' verdict and delivery: a shadow
    job never changes what the worklist says. A series that only models in shadow read
    takes its status (not its verdict) from the latest of theirs."""
    speaking = _speaking_jobs(session, study_pks)
    latest_shadow = _latest_jobs(study_pks, shadow=True)
    shadow_jobs = aliased(Job)
    rows = [
        (series, speaking.get(series.id), shadow_job)
        for series, shadow_job in session.execute(
            select(Series, shadow_jobs)
            .outerjoin(latest_shadow, latest_shadow.c.series_pk == Series.id)
            .outerjoin(shadow_jobs, shadow_jobs.id == latest_shadow.c.job_id)
            .where(Series.study_pk.in_(study_pks))
            .order_by(Series.series_number, Series.id)
        ).all()
    ]
    deliveries = delivery_summaries(session, [job.id for job in speaking.values()])
    changes: dict[int, dict[str, int]] = defaultdict(dict)
    for series_pk, action, count in session.execute(
        select(InstanceChange.series_pk, InstanceChange.action, func.count(InstanceChange.id))
        .join(Series, Series.id == InstanceChange.series_pk)
        .where(Series.study_pk.in_(study_pks))
        .group_by(InstanceChange.series_pk, InstanceChange.action)
    ):
        changes[series_pk][action] = count
    now = utcnow()
    out: dict[int, list[SeriesView]] = defaultdict(list)
    for series, job, shadow_job in rows:
        delivery = deliveries.get(job.id, "none") if job else "none"
        status, reason = _series_status(series, job, delivery, now)
        if job is None and shadow_job is not None and series.state is SeriesState.COMPLETE:
            status, reason = _shadow_only_status(series, shadow_job, now)
        out[series.study_pk].append(
            SeriesView(
                pk=series.id,
                series_instance_uid=series.series_instance_uid,
                number=series.series_number,
                description=series.series_description,
                modality=series.modality,
                instance_count=series.instance_count,
                status=status,
                reason=reason,
                job_id=job.id if job else None,
                positive=job.positive if job and job.state is JobState.DONE else None,
                probability=job.study_probability if job and job.state is JobState.DONE else None,
                instance_changes=changes.get(series.id, {}),
                delivery=delivery,
                summary=job.summary if job and job.state is JobState.DONE else "",
                findings_record=job.findings_json if job and job.state is JobState.DONE else "",
            )
        )
    return out


def delivery_summary(deliveries: Iterable[tuple[DeliveryState, int]]) -> str:
    """What became of an analysis's results, from the (state, attempts) of each of its
    deliveries (or of the most-tried one in each state): "none" without any, "failed"
    once one gave up, "sent" when all arrived, "failing" while one that failed before
    waits for its next try, else "pending"."""
    rows = list(deliveries)
    if not rows:
        return "none"
    if any(state is DeliveryState.FAILED for state, _ in rows):
        return "failed"
    if all(state is DeliveryState.SENT for state, _ in rows):
        return "sent"
    if any(state is not DeliveryState.SENT and attempts > 0 for state, attempts in rows):
        return "failing"
    return "pending"


def delivery_summaries(session: Session, job_ids: Select | list[int]) -> dict[int, str]:
    """`delivery_summary` of each job among `job_ids` that has results to deliver."""
    states: dict[int, list[tuple[DeliveryState, int]]] = defaultdict(list)
    for job_pk, state, attempts in session.execute(
        select(ResultObject.job_pk, Delivery.state, func.max(Delivery.attempts))
        .join(Delivery, Delivery.result_pk == ResultObject.id)
        .where(ResultObject.job_pk.in_(job_ids))
        .group_by(ResultObject.job_pk, Delivery.state)
    ):
        states[job_pk].append((state, attempts))
    return {job_pk: delivery_summary(rows) for job_pk, rows in states.items()}


def _series_status(
    series: Series, job: Job | None, delivery: str, now: datetime
) -> tuple[str, str]:
    if series.state is SeriesState.RECEIVING:
        if now - series.last_received_at < RECEIVING_WINDOW:
            return "receiving", ""
        return "waiting", ""
    if job is None or job.state is JobState.QUEUED:
        return "queued", ""
    if job.state is JobState.RUNNING:
        return "analysing", ""
    if job.state is JobState.SKIPPED:
        return "skipped", job.reason
    if job.state is JobState.FAILED:
        return "failed", job.reason
    summary = job.summary.splitlines()[0] if job.summary else ""
    if delivery == "failed":
        return "failed", f"delivery failed; {summary}"
    if delivery == "sent":
        return "delivered", summary
    return "done", summary


def _shadow_only_status(series: Series, job: Job, now: datetime) -> tuple[str, str]:
    """The status of a series that only models in shadow read: where their job is,
    never what it found (nothing of it is sent)."""
    status, reason = _series_status(series, job, "none", now)
    if status == "done":
        return status, "read only by a model in shadow: nothing sent"
    return status, f"model in shadow: {reason}" if reason else reason


def _study_view(study: Study, patient: Patient, series: list[SeriesView]) -> StudyView:
    statuses = {s.status for s in series}
    status = next((s for s in STATUSES if s in statuses), "waiting")
    judged = [s for s in series if s.positive is not None]
    positive = any(s.positive for s in judged) if judged else None
    probabilities = [s.probability for s in judged if s.probability is not None]
    return StudyView(
        pk=study.id,
        study_instance_uid=study.study_instance_uid,
        patient_id=patient.patient_id,
        patient_name=patient.patient_name,
        accession_number=study.accession_number,
        study_date=study.study_date,
        description=study.study_description,
        received_at=study.received_at,
        status=status,
        positive=positive,
        probability=max(probabilities) if probabilities else None,
        series=tuple(series),
        patient_sex=patient.sex,
        patient_birth_date=patient.birth_date,
    )


def list_studies(session: Session, flt: StudyFilter, page: int = 1, per_page: int = 25) -> Page:
    """One page of the worklist: positive studies first, then the newest."""
    query = _study_query(flt)
    study_pks = query.with_only_columns(Study.id)
    series = _series_views(session, study_pks)
    views = [
        _study_view(study, patient, series.get(study.id, []))
        for study, patient in session.execute(query)
    ]
    if flt.status:
        views = [v for v in views if v.status == flt.status]
    if flt.verdict:
        views = [v for v in views if v.verdict == flt.verdict]
    views.sort(key=lambda v: (not v.positive, -v.received_at.timestamp(), -v.pk))
    page = max(1, page)
    start = (page - 1) * per_page
    return Page(tuple(views[start : start + per_page]), len(views), page, per_page)


def get_study(session: Session, study_instance_uid: str) -> StudyView | None:
    row = session.execute(
        select(Study, Patient)
        .join(Patient, Study.patient_pk == Patient.id)
        .where(Study.study_instance_uid == study_instance_uid)
    ).first()
    if row is None:
        return None
    study, patient = row
    series = _series_views(session, select(Study.id).where(Study.id == study.id))
    return _study_view(study, patient, series.get(study.id, []))


@dataclass(frozen=True)
class DeliveryView:
    id: int
    destination: str
    state: str
    attempts: int
    peer_status: int | None
    last_error: str
    sent_at: datetime | None
    #: When the outbox tries it next: set only while it is pending.
    next_attempt_at: datetime | None = None


@dataclass(frozen=True)
class ResultView:
    id: int
    kind: str
    sop_instance_uid: str
    path: str
    deliveries: tuple[DeliveryView, ...]


@dataclass(frozen=True)
class FeedbackView:
    id: int
    lesion_index: int | None
    verdict: str
    comment: str
    username: str
    created_at: datetime
    #: A missed finding's slices (1-based), else None.
    first_slice: int | None = None
    last_slice: int | None = None


@dataclass(frozen=True)
class JobDetail:
    """A finished (or failed) analysis of one series, with everything the page shows."""

    id: int
    series_pk: int
    series_instance_uid: str
    #: The analysed series as the modality named it.
    series_number: int | None
    series_description: str
    state: str
    reason: str
    model: str
    positive: bool | None
    probability: float | None
    summary: str
    #: None for a job that found nothing yet (queued, failed, skipped) or whose record
    #: cannot be read.
    findings: Findings | None
    #: Its impression and midline shift; None where `findings` is.
    reading: Reading | None
    inference_seconds: float | None
    finished_at: datetime | None
    results: tuple[ResultView, ...]
    feedback: tuple[FeedbackView, ...]
    model_name: str = ""
    model_version: str = ""
    #: Run by a model in shadow: its results are kept and shown, never sent.
    shadow: bool = False
    #: The sha256 of the model's weights (the registry's, else its findings record's);
    #: "" where neither says.
    weights_sha256: str = ""

    @property
    def delivery(self) -> str:
        """Its results at their destinations (DELIVERY_SUMMARIES)."""
        return delivery_summary(
            (DeliveryState(d.state), d.attempts) for r in self.results for d in r.deliveries
        )

    @property
    def lesions(self) -> list[Lesion]:
        return list(self.findings.lesions) if self.findings else []

    @property
    def summary_lines(self) -> list[str]:
        """Its summary, line by line, less the impression line (the page shows that
        above, with the midline shift)."""
        shown = self.reading.impression if self.reading else None
        return [line for line in self.summary.splitlines() if line != shown]

    @property
    def slice_probabilities(self) -> list[float]:
        return [s.probability for s in self.findings.slices] if self.findings else []

    @property
    def flagged_slice_indices(self) -> list[int]:
        """Positions (0-based, along the stack) of the slices the model flagged."""
        return self.findings.flagged_slice_indices() if self.findings else []

    @property
    def flagged_slice_numbers(self) -> list[int]:
        """The same slices numbered as the page shows them: 1 to N along the stack."""
        return [index + 1 for index in self.flagged_slice_indices]


def job_details(session: Session, study: StudyView) -> list[JobDetail]:
    """The latest job of each model of each series of a study (per series, model name
    and shadow or not): those of models not in shadow first, then those in shadow, each
    group in the order they were made."""
    ids = list(
        session.scalars(
            select(func.max(Job.id))
            .join(Series, Series.id == Job.series_pk)
            .where(Series.study_pk == study.pk)
            .group_by(Job.series_pk, Job.model_name, Job.shadow)
        )
    )
    if not ids:
        return []
    weights = model_weights(session)
    jobs = session.execute(
        select(Job, Series.series_instance_uid, Series.series_number, Series.series_description)
        .join(Series)
        .where(Job.id.in_(ids))
        .order_by(Job.shadow, Job.id)
    ).all()
    results: dict[int, list[ResultView]] = defaultdict(list)
    objects = session.scalars(
        select(ResultObject).where(ResultObject.job_pk.in_(ids)).order_by(ResultObject.id)
    ).all()
    delivery_rows = session.scalars(
        select(Delivery)
        .where(Delivery.result_pk.in_([o.id for o in objects]))
        .order_by(Delivery.destination)
    ).all()
    by_result: dict[int, list[DeliveryView]] = defaultdict(list)
    for d in delivery_rows:
        by_result[d.result_pk].append(
            DeliveryView(
                d.id,
                d.destination,
                d.state.value,
                d.attempts,
                d.peer_status,
                d.last_error,
                d.sent_at,
                d.next_attempt_at if d.state is DeliveryState.PENDING else None,
            )
        )
    for o in objects:
        results[o.job_pk].append(
            ResultView(o.id, o.kind.value, o.sop_instance_uid, o.path, tuple(by_result[o.id]))
        )
    feedback: dict[int, list[FeedbackView]] = defaultdict(list)
    for f in session.scalars(
        select(Feedback).where(Feedback.job_pk.in_(ids)).order_by(Feedback.id)
    ):
        feedback[f.job_pk].append(
            FeedbackView(
                f.id,
                f.lesion_index,
                f.verdict.value,
                f.comment,
                f.username,
                f.created_at,
                f.first_slice,
                f.last_slice,
            )
        )
    details = []
    for job, series_uid, series_number, series_description in jobs:
        findings = read_findings(job.findings_json)
        reading = reading_of(job.findings_json) if findings is not None else None
        details.append(
            JobDetail(
                id=job.id,
                series_pk=job.series_pk,
                series_instance_uid=series_uid,
                series_number=series_number,
                series_description=series_description or "",
                state=job.state.value,
                reason=job.reason,
                model=f"{job.model_name} {job.model_version}",
                positive=job.positive,
                probability=job.study_probability,
                summary=job.summary,
                findings=findings,
                reading=reading,
                inference_seconds=job.inference_seconds,
                finished_at=job.finished_at,
                results=tuple(results[job.id]),
                feedback=tuple(feedback[job.id]),
                model_name=job.model_name,
                model_version=job.model_version,
                shadow=job.shadow,
                weights_sha256=weights.get((job.model_name, job.model_version))
                or (findings.model.weights_sha256 if findings is not None else ""),
            )
        )
    return details


def model_weights(session: Session) -> dict[tuple[str, str], str]:
    """The weights' sha256 of every registered model, by (name, version): what a job
    names its model by. The registry is small (a few models), so it is read whole."""
    return {
        (name, version): sha256
        for name, version, sha256 in session.execute(
            select(RegisteredModel.name, RegisteredModel.version, RegisteredModel.weights_sha256)
        )
    }


def read_findings(record: str) -> Findings | None:
    """A job's findings from its JSON record; None (with a log line) when it cannot be read."""
    if not record:
        return None
    try:
        return Findings.from_dict(json.loads(record))
    except (ValueError, FindingsError):
        LOGGER.exception("a job's findings record cannot be read")
        return None
