"""The node's tables as typed SQLAlchemy 2 models. No torch, no I/O beyond the database.

Times are naive UTC (``assistant.db.utcnow``): SQLite has no time zones, and one
convention on every backend keeps comparisons honest.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import DateTime, Enum, Float, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

UID_LENGTH = 64


class Base(DeclarativeBase):
    pass


class SeriesState(enum.StrEnum):
    """Where a series is in its life. Later stages (queued, analysing, done…) are added
    by the job queue; completion only moves between these two."""

    RECEIVING = "receiving"
    COMPLETE = "complete"


class CompletionReason(enum.StrEnum):
    QUIET_PERIOD = "quiet_period"
    CONTIGUOUS_AFTER_RELEASE = "contiguous_after_release"


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    # Stored as plain strings with a CHECK constraint: portable, and migrations stay simple.
    return Enum(
        cls, name=name, native_enum=False, length=32, values_callable=lambda e: [m.value for m in e]
    )


class Patient(Base):
    __tablename__ = "patient"
    __table_args__ = (
        UniqueConstraint("patient_id", "issuer_of_patient_id", name="uq_patient_identity"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(64), default="")
    issuer_of_patient_id: Mapped[str] = mapped_column(String(64), default="")
    patient_name: Mapped[str] = mapped_column(String(324), default="")
    birth_date: Mapped[str] = mapped_column(String(8), default="")
    sex: Mapped[str] = mapped_column(String(16), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime)

    studies: Mapped[list[Study]] = relationship(back_populates="patient")


class Study(Base):
    __tablename__ = "study"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_instance_uid: Mapped[str] = mapped_column(String(UID_LENGTH), unique=True)
    patient_pk: Mapped[int] = mapped_column(
        ForeignKey("patient.id", ondelete="CASCADE"), index=True
    )
    study_date: Mapped[str] = mapped_column(String(8), default="")
    study_time: Mapped[str] = mapped_column(String(16), default="")
    accession_number: Mapped[str] = mapped_column(String(16), default="", index=True)
    study_id: Mapped[str] = mapped_column(String(16), default="")
    study_description: Mapped[str] = mapped_column(String(64), default="")
    referring_physician_name: Mapped[str] = mapped_column(String(324), default="")
    received_at: Mapped[datetime] = mapped_column(DateTime, index=True)

    patient: Mapped[Patient] = relationship(back_populates="studies")
    series: Mapped[list[Series]] = relationship(back_populates="study")


class Series(Base):
    __tablename__ = "series"
    __table_args__ = (Index("ix_series_state_last_received", "state", "last_received_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    series_instance_uid: Mapped[str] = mapped_column(String(UID_LENGTH), unique=True)
    study_pk: Mapped[int] = mapped_column(ForeignKey("study.id", ondelete="CASCADE"), index=True)
    modality: Mapped[str] = mapped_column(String(16), default="")
    series_number: Mapped[int | None] = mapped_column(Integer)
    series_description: Mapped[str] = mapped_column(String(64), default="")
    body_part_examined: Mapped[str] = mapped_column(String(16), default="")
    #: AE title of the peer that sent the first instance (selection rules use it).
    calling_ae_title: Mapped[str] = mapped_column(String(16), default="")
    instance_count: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[SeriesState] = mapped_column(_enum(SeriesState, "series_state"))
    first_received_at: Mapped[datetime] = mapped_column(DateTime)
    last_received_at: Mapped[datetime] = mapped_column(DateTime)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime)
    completion_reason: Mapped[CompletionReason | None] = mapped_column(
        _enum(CompletionReason, "completion_reason")
    )
    #: How often an instance arrived after the series had been complete.
    reopened_count: Mapped[int] = mapped_column(Integer, default=0)

    study: Mapped[Study] = relationship(back_populates="series")
    instances: Mapped[list[Instance]] = relationship(back_populates="series")


class Instance(Base):
    __tablename__ = "instance"

    id: Mapped[int] = mapped_column(primary_key=True)
    sop_instance_uid: Mapped[str] = mapped_column(String(UID_LENGTH), unique=True)
    series_pk: Mapped[int] = mapped_column(ForeignKey("series.id", ondelete="CASCADE"), index=True)
    sop_class_uid: Mapped[str] = mapped_column(String(UID_LENGTH))
    transfer_syntax_uid: Mapped[str] = mapped_column(String(UID_LENGTH))
    instance_number: Mapped[int | None] = mapped_column(Integer)
    #: Position along the slice normal (mm): Image Position (Patient) · (row x column).
    slice_position: Mapped[float | None] = mapped_column(Float)
    #: Image Orientation (Patient), six numbers joined by "\\", as received.
    image_orientation: Mapped[str] = mapped_column(String(128), default="")
    #: Path of the file relative to the data folder.
    path: Mapped[str] = mapped_column(String(300))
    size_bytes: Mapped[int] = mapped_column(Integer)
    calling_ae_title: Mapped[str] = mapped_column(String(16), default="")
    received_at: Mapped[datetime] = mapped_column(DateTime)

    series: Mapped[Series] = relationship(back_populates="instances")
