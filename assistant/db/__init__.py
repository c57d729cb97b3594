"""Database models, engines and migrations (SQLAlchemy 2 + Alembic)."""

from assistant.db.models import (
    Base,
    CompletionReason,
    Delivery,
    DeliveryState,
    Instance,
    Job,
    JobState,
    Patient,
    ResultKind,
    ResultObject,
    Series,
    SeriesState,
    Study,
)
from assistant.db.session import make_engine, make_session_factory, make_write_lock, utcnow

__all__ = [
    "Base",
    "CompletionReason",
    "Delivery",
    "DeliveryState",
    "Instance",
    "Job",
    "JobState",
    "Patient",
    "ResultKind",
    "ResultObject",
    "Series",
    "SeriesState",
    "Study",
    "make_engine",
    "make_session_factory",
    "make_write_lock",
    "utcnow",
]
