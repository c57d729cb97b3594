"""Operations: /healthz for load balancers (no login, no data) and /metrics in the
Prometheus text format (login, e.g. Basic auth in the scrape config). Every metric and
every label value docs/operations.md lists is there from the start, at zero: a query or
an alert on one never finds nothing because nothing happened yet."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response
from flask_login import login_required
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from sqlalchemy import func, select, text
from sqlalchemy.exc import SQLAlchemyError

from assistant.db import (
    Delivery,
    DeliveryState,
    Feedback,
    FeedbackVerdict,
    Instance,
    Job,
    JobState,
    Series,
    SeriesState,
)
from web.context import context

blueprint = Blueprint("ops", __name__)


@blueprint.route("/healthz")
def healthz() -> Any:
    try:
        with context().sessions() as session:
            session.execute(text("SELECT 1"))
    except SQLAlchemyError:
        return {"status": "database unavailable"}, 503
    return {"status": "ok"}


class DatabaseCollector:
    """Reads the counts from the database at scrape time: every process of a site sees
    the same figures, and nothing is lost when one restarts."""

    def __init__(self, sessions: Any) -> None:
        self._sessions = sessions

    def collect(self) -> Iterator[Metric]:
        with self._sessions() as session:
            instances = session.scalar(select(func.count(Instance.id))) or 0
            series = _counts(session, Series.state)
            jobs = _counts(session, Job.state)
            inference_count, inference_sum = session.execute(
                select(
                    func.count(Job.inference_seconds),
                    func.coalesce(func.sum(Job.inference_seconds), 0.0),
                )
            ).one()
            deliveries = _counts(session, Delivery.state)
            feedback = _counts(session, Feedback.verdict)
        yield CounterMetricFamily(
            "radassist_instances_received", "DICOM instances stored", value=instances
        )
        yield _labelled(
            GaugeMetricFamily,
            "radassist_series",
            "Series by completion state",
            "state",
            _every(SeriesState, series),
        )
        yield _labelled(
            GaugeMetricFamily,
            "radassist_jobs",
            "Analysis jobs by state",
            "state",
            _every(JobState, jobs),
        )
        yield CounterMetricFamily(
            "radassist_inference_seconds",
            "Model time of finished analyses",
            value=float(inference_sum),
        )
        yield CounterMetricFamily(
            "radassist_inferences", "Finished analyses with a model time", value=inference_count
        )
        yield _labelled(
            GaugeMetricFamily,
            "radassist_deliveries",
            "Result deliveries by outcome",
            "state",
            _every(DeliveryState, deliveries),
        )
        yield _labelled(
            CounterMetricFamily,
            "radassist_feedback",
            "Radiologist feedback by verdict",
            "verdict",
            _every(FeedbackVerdict, feedback),
        )


def _counts(session: Any, column: Any) -> dict[Any, int]:
    """Rows per value of an enum column."""
    table = column.class_
    return dict(session.execute(select(column, func.count(table.id)).group_by(column)).all())


def _every(values: Any, counts: dict[Any, int]) -> dict[Any, int]:
    """A count for every value of an enum, zero where there are no rows."""
    return {value: counts.get(value, 0) for value in values}


def _labelled(
    kind: Any, name: str, documentation: str, label: str, counts: dict[Any, int]
) -> Metric:
    family = kind(name, documentation, labels=[label])
    for value, count in counts.items():
        family.add_metric([value.value], count)
    return family


@blueprint.route("/metrics")
@login_required
def metrics() -> Any:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(context().sessions))
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
