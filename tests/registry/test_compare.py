"""A shadow model against the live one, on a hand-made set of series in a migrated
database: the pairs, the agreement, the truth of each reviewed series (the rule in
assistant/registry/compare.py) and the Wilson intervals, zero counts included."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from assistant.db import (
    Database,
    Feedback,
    FeedbackVerdict,
    Job,
    JobState,
    ModelState,
    Patient,
    RegisteredModel,
    Series,
    SeriesState,
    Study,
    make_engine,
    utcnow,
)
from assistant.registry.compare import (
    MIN_REVIEWED,
    Accuracy,
    Pair,
    Rate,
    baselines,
    compare,
    summarize,
    wilson_interval,
)
from assistant.registry.truth import JobCall, Verdict, reviewed_truths

LIVE, SHADOW = ("m", "1"), ("m", "2")
T0 = utcnow()


@pytest.fixture
def db(migrated_url: str) -> Iterator[Database]:
    database = Database(make_engine(migrated_url))
    yield database
    database.dispose()


def _series(session: Session, number: int) -> int:
    patient = Patient(patient_id=f"P{number}", created_at=T0)
    study = Study(study_instance_uid=f"1.2.3.{number}", patient=patient, received_at=T0)
    series = Series(
        series_instance_uid=f"1.2.3.{number}.1",
        study=study,
        series_number=1,
        state=SeriesState.COMPLETE,
        first_received_at=T0,
        last_received_at=T0,
    )
    session.add_all([patient, study, series])
    session.flush()
    return series.id


def _job(
    session: Session,
    series_pk: int,
    model: tuple[str, str],
    positive: bool,
    *,
    digest: str = "d",
    shadow: bool = False,
    state: JobState = JobState.DONE,
) -> int:
    job = Job(
        series_pk=series_pk,
        model_name=model[0],
        model_version=model[1],
        input_digest=digest,
        instance_count=10,
        state=state,
        created_at=T0,
        finished_at=T0,
        positive=positive if state is JobState.DONE else None,
        study_probability=0.9 if positive else 0.1,
        shadow=shadow,
    )
    session.add(job)
    session.flush()
    return job.id


def _feedback(
    session: Session, job_pk: int, verdict: str, *, lesion: int | None = None, minutes: int = 0
) -> None:
    session.add(
        Feedback(
            job_pk=job_pk,
            lesion_index=lesion,
            verdict=FeedbackVerdict(verdict),
            username="rad",
            created_at=T0 + timedelta(minutes=minutes),
        )
    )


def _pair(
    session: Session, number: int, live: bool, shadow: bool, digest: str = "d"
) -> tuple[int, int, int]:
    """A series read by both models on the same inputs: (series, live job, shadow job)."""
    series = _series(session, number)
    live_job = _job(session, series, LIVE, live, digest=digest)
    shadow_job = _job(session, series, SHADOW, shadow, digest=digest, shadow=True)
    return series, live_job, shadow_job


def _hand_made_set(db: Database) -> None:
    """Nine series; see each line for what it tests."""
    with db.writing() as session:
        _, live, _ = _pair(session, 1, True, True)
        _feedback(session, live, "accept")  # positive; both right
        _, live, _ = _pair(session, 2, True, False)
        _feedback(session, live, "reject")  # negative; live FP, shadow TN
        _, live, _ = _pair(session, 3, False, True)
        _feedback(session, live, "reject")  # positive; live FN, shadow TP
        _, live, _ = _pair(session, 4, False, False)
        _feedback(session, live, "reject", lesion=0)  # no such lesion reported: unreviewed
        _, live, _ = _pair(session, 5, True, True)
        _feedback(session, live, "accept", lesion=0)  # lesion accepted: positive
        _, _, shadow = _pair(session, 6, False, False)
        _feedback(session, shadow, "accept")  # only on the shadow job: unreviewed
        series = _series(session, 7)  # different inputs: no pair
        _job(session, series, LIVE, True, digest="a")
        _job(session, series, SHADOW, False, digest="b", shadow=True)
        _, live, _ = _pair(session, 8, True, False)
        _feedback(session, live, "accept", minutes=1)
        _feedback(session, live, "reject", minutes=2)  # the latest decides: negative
        series, _, _ = _pair(session, 9, True, True, digest="old")
        _job(session, series, LIVE, False, digest="new")  # the latest pair disagrees
        _job(session, series, SHADOW, True, digest="new", shadow=True)
        series = _series(session, 10)  # the shadow job failed: no pair
        _job(session, series, LIVE, True)
        _job(session, series, SHADOW, True, shadow=True, state=JobState.FAILED)


def test_counts_agreement_and_accuracy_on_a_hand_made_set(db: Database) -> None:
    _hand_made_set(db)
    result = compare(db, SHADOW, LIVE)
    assert (result.candidate, result.baseline) == ("m:2", "m:1")
    assert result.pairs == 8  # series 1-6, 8, 9
    assert (result.agreement.count, result.agreement.total) == (4, 8)
    assert result.agreement.fraction == 0.5
    assert result.baseline_accuracy == Accuracy(
        true_positives=2, false_negatives=1, true_negatives=0, false_positives=2
    )
    assert result.candidate_accuracy == Accuracy(
        true_positives=3, false_negatives=0, true_negatives=2, false_positives=0
    )
    assert (result.reviewed_positives, result.reviewed_negatives) == (3, 2)
    live_sensitivity = result.baseline_accuracy.sensitivity
    assert (live_sensitivity.count, live_sensitivity.total) == (2, 3)
    assert live_sensitivity.interval == pytest.approx((0.2077, 0.9385), abs=1e-4)
    live_specificity = result.baseline_accuracy.specificity
    assert live_specificity.fraction == 0.0
    assert live_specificity.interval == pytest.approx((0.0, 0.6576), abs=1e-4)
    shadow_sensitivity = result.candidate_accuracy.sensitivity
    assert shadow_sensitivity.interval == pytest.approx((0.4385, 1.0), abs=1e-4)
    assert result.too_few is not None and result.too_few.startswith(
        "too few reviewed studies to compare: 3 reviewed positive and 2 reviewed negative"
    )


def test_either_side_may_be_the_candidate(db: Database) -> None:
    _hand_made_set(db)
    swapped = compare(db, LIVE, SHADOW)
    straight = compare(db, SHADOW, LIVE)
    assert swapped.pairs == straight.pairs
    assert swapped.candidate_accuracy == straight.baseline_accuracy


def test_models_that_read_nothing_in_common_compare_as_nothing(db: Database) -> None:
    """Zero pairs: no fraction and no interval anywhere, never a crash."""
    with db.writing() as session:
        _job(session, _series(session, 1), LIVE, True)
    result = compare(db, SHADOW, LIVE)
    assert result.pairs == 0
    assert result.agreement.fraction is None and result.agreement.interval is None
    for side in (result.candidate_accuracy, result.baseline_accuracy):
        assert side == Accuracy()
        assert side.sensitivity.interval is None and side.specificity.interval is None
    assert result.too_few is not None and "0 reviewed positive" in result.too_few


def test_a_model_is_not_compared_with_itself(db: Database) -> None:
    with pytest.raises(ValueError, match="itself"):
        compare(db, LIVE, LIVE)


def test_enough_reviewed_series_of_each_class_need_no_warning() -> None:
    pairs = [Pair(pk, pk, pk + 100, pk % 2 == 0, pk % 2 == 0) for pk in range(2 * MIN_REVIEWED)]
    truths = {pk: pk % 2 == 0 for pk in range(2 * MIN_REVIEWED)}
    result = summarize("m:2", "m:1", pairs, truths)
    assert result.too_few is None
    assert result.candidate_accuracy.sensitivity.fraction == 1.0
    assert result.agreement.interval is not None and result.agreement.interval[1] == 1.0


def test_the_wilson_interval() -> None:
    """Textbook values, and a width at 0 % and 100 % (never zero from a count)."""
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    assert wilson_interval(0, 0) is None
    for count, total in ((0, 1), (1, 1), (0, 1000), (1000, 1000)):
        low, high = wilson_interval(count, total) or (0.0, 0.0)
        assert 0.0 <= low < high <= 1.0
    with pytest.raises(ValueError):
        Rate(3, 2)


def test_the_truth_rule_on_rows() -> None:
    """assistant/registry/truth.py's rule, as the comparison reads it: a missed mark, then
    an accepted lesion, make a series positive; else the latest study-level verdict
    (accept: the call was right); else all lesions rejected: negative; a series with
    nothing a reader decided is unreviewed."""
    accept, reject, missed = FeedbackVerdict.ACCEPT, FeedbackVerdict.REJECT, FeedbackVerdict.MISSED
    later = T0 + timedelta(minutes=1)

    def job(pk: int, positive: bool | None, lesions: int = 0) -> JobCall:
        return JobCall(pk, positive, ((3, 5),) * lesions, "digest", T0)

    def verdict(
        fid: int, job_pk: int, lesion: int | None, what: FeedbackVerdict, at: datetime = T0
    ) -> Verdict:
        slices = (4, 6) if what is missed else (None, None)
        return Verdict(fid, job_pk, lesion, what, *slices, "reader", at)

    jobs = {
        1: {1: job(1, True)},
        2: {2: job(2, False)},
        3: {3: job(3, False, lesions=1)},
        4: {4: job(4, True, lesions=1)},
        5: {5: job(5, None)},
        6: {6: job(6, True)},
        7: {7: job(7, True, lesions=1)},
        8: {8: job(8, False)},
    }
    verdicts = {
        1: [verdict(1, 1, None, accept), verdict(2, 1, None, reject, later)],  # later wins
        2: [verdict(3, 2, None, reject)],  # the negative call was wrong: positive
        3: [verdict(4, 3, 0, accept)],  # a lesion accepted: positive
        4: [verdict(5, 4, 0, reject)],  # its only lesion rejected: negative
        5: [verdict(6, 5, None, accept)],  # no call to be right about: unreviewed
        6: [verdict(7, 6, None, reject), verdict(8, 6, None, accept)],  # same time: id decides
        7: [verdict(9, 7, 0, accept), verdict(10, 7, None, reject, later)],  # the lesion
        8: [verdict(11, 8, None, missed), verdict(12, 8, None, accept, later)],  # the mark
    }
    assert reviewed_truths(jobs, verdicts) == {
        1: False,
        2: True,
        3: True,
        4: False,
        6: True,
        7: True,
        8: True,
    }


def test_the_baselines_of_a_shadow_model(db: Database) -> None:
    """The live version of its name; where there is none, every live model of another
    name that read a series it read."""
    with db.writing() as session:
        for name, version, state in (
            ("m", "1", ModelState.LIVE),
            ("m", "2", ModelState.SHADOW),
            ("n", "1", ModelState.SHADOW),
            ("other", "3", ModelState.LIVE),
            ("idle", "1", ModelState.LIVE),
        ):
            session.add(
                RegisteredModel(
                    name=name,
                    version=version,
                    state=state,
                    slot=0,
                    folder=f"models/{name}/{version}",
                    format="state_dict",
                    weights_sha256="0" * 64,
                    card_json="{}",
                    added_at=T0,
                    state_changed_at=T0,
                )
            )
        series = _series(session, 1)
        _job(session, series, ("n", "1"), True, shadow=True)
        _job(session, series, ("other", "3"), True)
        _job(session, _series(session, 2), ("idle", "1"), True)
    assert baselines(db, "m", "2") == [("m", "1")]
    assert baselines(db, "n", "1") == [("other", "3")]
