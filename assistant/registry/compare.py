"""A model in shadow against the live one: how often they agree on the same series, and
how each fares against what the radiologists said. Torch-free; read by the dashboard.

**Pairs.** A pair is a DONE job of each model on the same series and the same inputs
(same ``input_digest``); where a series has several (instances that came later), the
latest pair counts, one per series.

**The truth of a series**: the radiologists' feedback on the *live* (non-shadow) jobs
of the series, by the rule of assistant/registry/truth.py (the one the dataset export
uses): a ``missed`` mark, then an accepted lesion, make it positive; else the latest
study-level verdict (``accept``: the call was right, ``reject``: it was wrong); else all
of a job's lesions rejected make it negative; anything else (no feedback, feedback only
on shadow jobs) leaves it unreviewed: it counts towards agreement, not towards
sensitivity or specificity.

Feedback is given on the live model's calls, so the truth leans on what the live model
showed (verification bias): read the shadow model's figures as "against the reviewed
series", not as a trial.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, select
from sqlalchemy.orm import aliased

from assistant.db import (
    Database,
    Feedback,
    Job,
    JobState,
    ModelState,
    RegisteredModel,
)
from assistant.registry.truth import JobCall, Verdict, lesion_ranges, reviewed_truths

#: z for a two-sided 95 % interval.
Z95 = 1.959963984540054
#: Reviewed series of each class (positive, negative) below which the page says the
#: figures are too few to compare models by.
MIN_REVIEWED = 10


@dataclass(frozen=True)
class Rate:
    """`count` of `total`, with its Wilson score 95 % interval; no fraction and no
    interval when `total` is 0 (nothing was measured, which is not "0 %")."""

    count: int
    total: int

    def __post_init__(self) -> None:
        if not 0 <= self.count <= self.total:
            raise ValueError(f"a rate needs 0 <= count <= total, not {self.count}/{self.total}")

    @property
    def fraction(self) -> float | None:
        return self.count / self.total if self.total else None

    @property
    def interval(self) -> tuple[float, float] | None:
        return wilson_interval(self.count, self.total)


def wilson_interval(count: int, total: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval of `count` successes in `total` trials; None for 0
    trials. Unlike the normal approximation it stays inside [0, 1] and keeps a width at
    0 % and 100 %, which small counts (a handful of reviewed series) need."""
    if total <= 0:
        return None
    p = count / total
    z2 = z * z
    denominator = 1 + z2 / total
    centre = (p + z2 / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z2 / (4 * total * total)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Accuracy:
    """One model's calls on the reviewed series of the pairs, against their truth."""

    true_positives: int = 0
    false_negatives: int = 0
    true_negatives: int = 0
    false_positives: int = 0

    @property
    def positives(self) -> int:
        """Reviewed series that are positive."""
        return self.true_positives + self.false_negatives

    @property
    def negatives(self) -> int:
        """Reviewed series that are negative."""
        return self.true_negatives + self.false_positives

    @property
    def sensitivity(self) -> Rate:
        return Rate(self.true_positives, self.positives)

    @property
    def specificity(self) -> Rate:
        return Rate(self.true_negatives, self.negatives)


@dataclass(frozen=True)
class Pair:
    """One series both models read on the same inputs: each one's call."""

    series_pk: int
    candidate_job: int
    baseline_job: int
    candidate_positive: bool
    baseline_positive: bool


@dataclass(frozen=True)
class Comparison:
    """`candidate` (usually in shadow) against `baseline` (usually live), both
    "name:version", on the series they both read."""

    candidate: str
    baseline: str
    agreement: Rate
    candidate_accuracy: Accuracy
    baseline_accuracy: Accuracy

    @property
    def pairs(self) -> int:
        """Series both models read on the same inputs."""
        return self.agreement.total

    @property
    def reviewed_positives(self) -> int:
        return self.baseline_accuracy.positives

    @property
    def reviewed_negatives(self) -> int:
        return self.baseline_accuracy.negatives

    @property
    def reviewed(self) -> int:
        """Reviewed series (either class) among the pairs: 0 means no evidence at all."""
        return self.reviewed_positives + self.reviewed_negatives

    @property
    def sensitivity_shortfall(self) -> str | None:
        """A plain sentence when the candidate's sensitivity on the reviewed positives is
        surely lower than the baseline's: its Wilson 95 % interval lies entirely below the
        baseline's (candidate upper < baseline lower). None otherwise, and where either
        has no reviewed positive. The dashboard refuses a promotion on it unless an admin
        overrides with a reason: a model that misses findings the live one catches is the
        one mistake a shadow run exists to catch."""
        mine = self.candidate_accuracy.sensitivity
        theirs = self.baseline_accuracy.sensitivity
        if mine.interval is None or theirs.interval is None:
            return None
        if mine.interval[1] >= theirs.interval[0]:
            return None
        return (
            f"{self.candidate}'s sensitivity on the reviewed positives ({_percent(mine)}) "
            f"lies entirely below {self.baseline}'s ({_percent(theirs)})"
        )

    @property
    def too_few(self) -> str | None:
        """A plain sentence when fewer than MIN_REVIEWED reviewed series of either class
        back the figures; None when there are enough."""
        positives, negatives = self.reviewed_positives, self.reviewed_negatives
        if positives >= MIN_REVIEWED and negatives >= MIN_REVIEWED:
            return None
        return (
            f"too few reviewed studies to compare: {positives} reviewed positive and "
            f"{negatives} reviewed negative series of the {self.pairs} both models read "
            f"({MIN_REVIEWED} of each are needed before the figures mean much)."
        )


def _percent(rate: Rate) -> str:
    """ "16.7 %, 2 of 12, 95 % CI 3.0 to 44.8 %" (a rate with a total)."""
    fraction, interval = rate.fraction, rate.interval
    assert fraction is not None and interval is not None
    return (
        f"{100 * fraction:.1f} %, {rate.count} of {rate.total}, "
        f"95 % CI {100 * interval[0]:.1f} to {100 * interval[1]:.1f} %"
    )


# -- pure functions over rows ----------------------------------------------------------


def latest_pairs(rows: Iterable[tuple[int, int, int, bool | None, bool | None]]) -> list[Pair]:
    """From (series_pk, candidate job id, baseline job id, candidate positive, baseline
    positive) rows of jobs on the same inputs, the latest pair of each series (the
    highest candidate job id, then the highest baseline job id), by series."""
    latest: dict[int, Pair] = {}
    for series_pk, candidate_job, baseline_job, candidate_positive, baseline_positive in rows:
        pair = Pair(
            series_pk,
            candidate_job,
            baseline_job,
            bool(candidate_positive),
            bool(baseline_positive),
        )
        held = latest.get(series_pk)
        if held is None or (candidate_job, baseline_job) > (held.candidate_job, held.baseline_job):
            latest[series_pk] = pair
    return [latest[pk] for pk in sorted(latest)]


def accuracy(calls: Iterable[tuple[int, bool]], truths: Mapping[int, bool]) -> Accuracy:
    """TP, FN, TN and FP of (series_pk, call) against the truths of the reviewed series
    (series without one are left out)."""
    tp = fn = tn = fp = 0
    for series_pk, positive in calls:
        truth = truths.get(series_pk)
        if truth is None:
            continue
        if truth:
            tp, fn = (tp + 1, fn) if positive else (tp, fn + 1)
        else:
            tn, fp = (tn, fp + 1) if positive else (tn + 1, fp)
    return Accuracy(tp, fn, tn, fp)


def summarize(
    candidate: str, baseline: str, pairs: list[Pair], truths: Mapping[int, bool]
) -> Comparison:
    """The comparison of two models from their pairs and the series' truths."""
    agree = sum(p.candidate_positive == p.baseline_positive for p in pairs)
    return Comparison(
        candidate=candidate,
        baseline=baseline,
        agreement=Rate(agree, len(pairs)),
        candidate_accuracy=accuracy(((p.series_pk, p.candidate_positive) for p in pairs), truths),
        baseline_accuracy=accuracy(((p.series_pk, p.baseline_positive) for p in pairs), truths),
    )


# -- the queries -------------------------------------------------------------------------


def _done(job: Any, name: str, version: str) -> list[ColumnElement[bool]]:
    """A DONE job of `job` (Job or an alias of it) by model `name` `version`."""
    return [
        job.model_name == name,
        job.model_version == version,
        job.state == JobState.DONE,
        job.positive.is_not(None),
    ]


def compare(db: Database, candidate: tuple[str, str], baseline: tuple[str, str]) -> Comparison:
    """`candidate` (name, version) against `baseline` (name, version) on every series
    both read on the same inputs, with the truth of the reviewed ones."""
    if candidate == baseline:
        raise ValueError(f"{candidate[0]}:{candidate[1]} cannot be compared with itself")
    a, b = aliased(Job), aliased(Job)
    with db.sessions() as session:
        pair_rows = session.execute(
            select(a.series_pk, a.id, b.id, a.positive, b.positive)
            .join(b, and_(b.series_pk == a.series_pk, b.input_digest == a.input_digest))
            .where(*_done(a, *candidate), *_done(b, *baseline))
        ).all()
        pairs = latest_pairs(pair_rows)
        read = select(a.series_pk).where(*_done(a, *candidate))
        feedback_rows = session.execute(
            select(Job, Feedback)
            .join(Job, Job.id == Feedback.job_pk)
            .where(Job.shadow.is_(False), Job.series_pk.in_(read))
        ).all()
        jobs: dict[int, dict[int, JobCall]] = defaultdict(dict)
        verdicts: dict[int, list[Verdict]] = defaultdict(list)
        for job, feedback in feedback_rows:
            jobs[job.series_pk][job.id] = JobCall(
                job.id,
                job.positive,
                lesion_ranges(job.findings_json),
                job.input_digest,
                job.finished_at or job.created_at,
            )
            verdicts[job.series_pk].append(
                Verdict(
                    feedback.id,
                    feedback.job_pk,
                    feedback.lesion_index,
                    feedback.verdict,
                    feedback.first_slice,
                    feedback.last_slice,
                    feedback.username,
                    feedback.created_at,
                )
            )
    truths = reviewed_truths(jobs, verdicts)
    return summarize(
        f"{candidate[0]}:{candidate[1]}", f"{baseline[0]}:{baseline[1]}", pairs, truths
    )


def baselines(db: Database, name: str, version: str) -> list[tuple[str, str]]:
    """What a model in shadow is compared with: the live version of its name; where the
    name has none, every live model (of another name) that read a series it read."""
    with db.sessions() as session:
        live = session.execute(
            select(RegisteredModel.name, RegisteredModel.version).where(
                RegisteredModel.state == ModelState.LIVE
            )
        ).all()
        same_name = [(n, v) for n, v in live if n == name and v != version]
        if same_name:
            return same_name
        theirs = aliased(Job)
        ours = select(Job.series_pk).where(
            Job.model_name == name, Job.model_version == version, Job.state == JobState.DONE
        )
        read_same = set(
            session.execute(
                select(theirs.model_name, theirs.model_version)
                .where(theirs.state == JobState.DONE, theirs.series_pk.in_(ours))
                .distinct()
            ).all()
        )
    return sorted((n, v) for n, v in live if n != name and (n, v) in read_same)
