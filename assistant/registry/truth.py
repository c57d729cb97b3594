"""What the radiologists said about a series, as one label: the rule the dataset export
(assistant/training/reviewed.py) and the dashboard's shadow comparison
(assistant/registry/compare.py) both use, so a series is positive or negative the same
way everywhere. Pure functions over plain values; torch-free.

The rule, the first that applies (``RULE``, written verbatim into every exported
dataset's manifest):

1. a ``missed`` mark (a finding the model did not report) makes it positive, on the
   slices the reader marked;
2. else a lesion whose latest verdict is ``accept`` makes it positive, on the slices of
   the accepted lesions;
3. else the latest study-level verdict decides: ``accept`` keeps that job's call,
   ``reject`` turns it over;
4. else a job whose reported lesions were all rejected makes it negative;
5. else the series is unreviewed (the export may label it with the model's call).

The reader's own marks come first: they carry the slices a model learns from, and a
reader who marked a finding has said more than one who clicked a verdict.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from assistant.db import FeedbackVerdict
from assistant.findings import Findings, FindingsError

RULE = (
    "Each series analysed by a finished, non-shadow job (of the chosen model, finished on "
    "or after the chosen date) is labelled by the radiologists' feedback on those jobs, "
    "the first that applies: (1) a 'missed' mark (a finding the model did not report) "
    "makes it positive, on the slices the reader marked; (2) else a lesion whose latest "
    "verdict is 'accept' makes it positive, on the slices of the accepted lesions; (3) else "
    "the latest study-level verdict decides: 'accept' keeps that job's call, 'reject' turns "
    "it over; (4) else a job whose reported lesions were all rejected makes it negative; "
    "(5) else the series is unreviewed: left out or, when asked for, labelled with the "
    "latest job's call (label_source=model). Where several marks or lesions give slices, "
    "the range covers them all (1-based, inclusive, along the stack). A series whose "
    "instances changed after the verdict (their input digest is no longer that of the job "
    "the verdict was given on, or an instance changed after the verdict) is left out."
)


@dataclass(frozen=True)
class JobCall:
    """What a finished job said about its series."""

    id: int
    positive: bool | None
    #: Each reported lesion's slices, 1-based and inclusive, by lesion index.
    lesions: tuple[tuple[int, int], ...]
    input_digest: str
    finished_at: datetime


@dataclass(frozen=True)
class Verdict:
    """One feedback row, as the rule reads it."""

    id: int
    job_pk: int
    lesion_index: int | None
    verdict: FeedbackVerdict
    first_slice: int | None
    last_slice: int | None
    username: str
    created_at: datetime


@dataclass(frozen=True)
class Decision:
    """A series' label, the branch of the rule that gave it, and what it rests on."""

    label: int
    #: missed, accepted-lesion, study-accepted, study-rejected, lesions-rejected or model.
    rule: str
    jobs: tuple[JobCall, ...]
    verdicts: tuple[Verdict, ...] = ()
    first_slice: int | None = None
    last_slice: int | None = None

    @property
    def source(self) -> str:
        """Who gave the label: "radiologist" or "model"."""
        return "model" if self.rule == "model" else "radiologist"


def _cover(ranges: Iterable[tuple[int | None, int | None]]) -> tuple[int | None, int | None]:
    """The smallest range covering every (first, last) given; (None, None) for none."""
    known = [(a, b) for a, b in ranges if a is not None and b is not None]
    if not known:
        return None, None
    return min(a for a, _ in known), max(b for _, b in known)


def decide(jobs: Mapping[int, JobCall], verdicts: Iterable[Verdict]) -> Decision | None:
    """The label of one series by ``RULE`` from its jobs (by id) and the verdicts given
    on them; a model-labelled Decision when unreviewed, None when unreviewed and the
    model made no call."""
    ordered = sorted(verdicts, key=lambda v: (v.created_at, v.id))
    study_level = [v for v in ordered if v.lesion_index is None]
    missed = [v for v in study_level if v.verdict is FeedbackVerdict.MISSED]
    if missed:
        first, last = _cover((v.first_slice, v.last_slice) for v in missed)
        return Decision(1, "missed", _jobs_of(missed, jobs), tuple(missed), first, last)
    latest_on_lesion: dict[tuple[int, int], Verdict] = {}
    for v in ordered:
        if v.lesion_index is not None:
            latest_on_lesion[(v.job_pk, v.lesion_index)] = v
    accepted = [v for v in latest_on_lesion.values() if v.verdict is FeedbackVerdict.ACCEPT]
    if accepted:
        first, last = _cover(
            jobs[v.job_pk].lesions[v.lesion_index]
            for v in accepted
            if v.lesion_index is not None and 0 <= v.lesion_index < len(jobs[v.job_pk].lesions)
        )
        return Decision(
            1, "accepted-lesion", _jobs_of(accepted, jobs), tuple(accepted), first, last
        )
    calls = [
        v
        for v in study_level
        if v.verdict is not FeedbackVerdict.MISSED and jobs[v.job_pk].positive is not None
    ]
    if calls:
        latest = calls[-1]
        call = bool(jobs[latest.job_pk].positive)
        agreed = latest.verdict is FeedbackVerdict.ACCEPT
        rule = "study-accepted" if agreed else "study-rejected"
        return Decision(int(call if agreed else not call), rule, (jobs[latest.job_pk],), (latest,))
    for job in sorted(jobs.values(), key=lambda j: j.id, reverse=True):
        on_lesions = [latest_on_lesion.get((job.id, i)) for i in range(len(job.lesions))]
        rejected = [v for v in on_lesions if v is not None and v.verdict is FeedbackVerdict.REJECT]
        if job.lesions and len(rejected) == len(job.lesions):
            return Decision(0, "lesions-rejected", (job,), tuple(rejected))
    latest_job = max(jobs.values(), key=lambda j: j.id)
    if latest_job.positive is None:
        return None
    return Decision(int(latest_job.positive), "model", (latest_job,))


def _jobs_of(verdicts: Sequence[Verdict], jobs: Mapping[int, JobCall]) -> tuple[JobCall, ...]:
    return tuple(jobs[pk] for pk in sorted({v.job_pk for v in verdicts}))


def lesion_ranges(findings_json: str) -> tuple[tuple[int, int], ...]:
    """A job's lesions' slices (1-based, inclusive) from its findings record; none where
    the record cannot be read."""
    try:
        findings = Findings.from_dict(json.loads(findings_json or "null") or {})
    except (ValueError, KeyError, TypeError, FindingsError):
        return ()
    return tuple((lesion.first_slice + 1, lesion.last_slice + 1) for lesion in findings.lesions)


def reviewed_truths(
    jobs: Mapping[int, Mapping[int, JobCall]], verdicts: Mapping[int, Sequence[Verdict]]
) -> dict[int, bool]:
    """The truth of each reviewed series (True: positive), by ``decide``, from each
    series' live jobs (by id) and the verdicts on them; unreviewed series are left out."""
    truths = {}
    for series_pk, given in verdicts.items():
        decision = decide(jobs[series_pk], given)
        if decision is not None and decision.source == "radiologist":
            truths[series_pk] = bool(decision.label)
    return truths
