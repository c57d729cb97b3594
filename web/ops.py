"""Operations: /healthz for load balancers (no login, no data) and /metrics in the
Prometheus text format (login, e.g. Basic auth in the scrape config)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response
from flask_login import login_required
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from sqlalchemy import func, select, text
from sqlalchemy.exc import SQLAlchemyError

from assistant.db import Delivery, Feedback, Instance, Job, JobState, Series
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
            series = dict(
                session.execute(
                    select(Series.state, func.count(Series.id)).group_by(Series.state)
                ).all()
            )
            jobs = dict(
                session.execute(select(Job.state, func.count(Job.id)).group_by(Job.state)).all()
            )
            inference_count, inference_sum = session.execute(
                select(
                    func.count(Job.inference_seconds),
                    func.coalesce(func.sum(Job.inference_seconds), 0.0),
                )
            ).one()
            deliveries = dict(
                session.execute(
                    select(Delivery.state, func.count(Delivery.id)).group_by(Delivery.state)
                ).all()
            )
            feedback = dict(
                session.execute(
                    select(Feedback.verdict, func.count(Feedback.id)).group_by(Feedback.verdict)
                ).all()
            )
        yield CounterMetricFamily(
            "radassist_instances_received", "DICOM instances stored", value=instances
        )
        family = GaugeMetricFamily(
            "radassist_series", "Series by completion state", labels=["state"]
        )
        for state, count in series.items():
            family.add_metric([state.value], count)
        yield family
        family = GaugeMetricFamily("radassist_jobs", "Analysis jobs by state", labels=["state"])
        for state in JobState:
            family.add_metric([state.value], jobs.get(state, 0))
        yield family
        summary = CounterMetricFamily(
            "radassist_inference_seconds", "Model time of finished analyses"
        )
        summary.add_metric([], float(inference_sum))
        yield summary
        yield CounterMetricFamily(
            "radassist_inferences", "Finished analyses with a model time", value=inference_count
        )
        family = GaugeMetricFamily(
            "radassist_deliveries", "Result deliveries by outcome", labels=["state"]
        )
        for state, count in deliveries.items():
            family.add_metric([state.value], count)
        yield family
        family = CounterMetricFamily(
            "radassist_feedback", "Radiologist feedback by verdict", labels=["verdict"]
        )
        for verdict, count in feedback.items():
            family.add_metric([verdict.value], count)
        yield family


@blueprint.route("/metrics")
@login_required
def metrics() -> Any:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(context().sessions))  # type: ignore[arg-type]
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
