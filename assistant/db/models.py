"""The node's tables as typed SQLAlchemy 2 models. No torch, no I/O beyond the database.

Times are naive UTC (``assistant.db.utcnow``): SQLite has no time zones, and one
convention on every backend keeps comparisons honest.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import (
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
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
    #: Slice Thickness (0018,0050) of the instance that made the series (mm), or None;
    #: routes use it.
    slice_thickness_mm: Mapped[float | None] = mapped_column(Float)

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
    #: 1 as first stored; each changed copy the sender's correction replaced it with adds
    #: one (see InstanceChange). Part of what an analysis read (``input_digest``).
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    #: Number of Frames (1 for a single-frame image or an object without pixels).
    frame_count: Mapped[int] = mapped_column(Integer, default=1, server_default="1")

    series: Mapped[Series] = relationship(back_populates="instances")


class InstanceChangeAction(enum.StrEnum):
    """What storage.on_changed_duplicate did with a changed copy of a stored instance."""

    REPLACED = "replaced"  # the changed copy is in use; the earlier one kept beside it
    KEPT_FIRST = "kept-first"  # the first copy stays in use; the changed one kept beside it
    REFUSED = "refused"  # answered a failure status; the changed copy was not written


class InstanceChange(Base):
    """A copy of a stored instance that arrived with other content: the record of who
    sent what, when, and where each copy is. Nothing about it is ever deleted."""

    __tablename__ = "instance_change"

    id: Mapped[int] = mapped_column(primary_key=True)
    instance_pk: Mapped[int] = mapped_column(
        ForeignKey("instance.id", ondelete="CASCADE"), index=True
    )
    series_pk: Mapped[int] = mapped_column(ForeignKey("series.id", ondelete="CASCADE"), index=True)
    action: Mapped[str] = mapped_column(String(16))
    #: The instance's version once this change was applied (unchanged unless replaced).
    version: Mapped[int] = mapped_column(Integer)
    #: The file not in use after the change (the replaced or the refused-for-use copy),
    #: relative to the data folder; "" when nothing was written (refused).
    kept_path: Mapped[str] = mapped_column(String(300), default="")
    calling_ae_title: Mapped[str] = mapped_column(String(16), default="")
    received_at: Mapped[datetime] = mapped_column(DateTime)


class JobState(enum.StrEnum):
    """Where the analysis of one series (by one model, on one set of inputs) is."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    SKIPPED = "skipped"
    FAILED = "failed"


class ResultKind(enum.StrEnum):
    SR = "sr"
    KOS = "kos"
    SEG = "seg"
    #: The notification of an analysis (a JSON document, assistant/delivery/notice.py),
    #: for webhook, HL7 and FHIR destinations.
    NOTICE = "notice"


class DeliveryState(enum.StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


def input_digest(sop_instance_uids: Iterable[str | tuple[str, int]]) -> str:
    """sha256 of the sorted SOP Instance UIDs an analysis reads: with the series and the
    model, what makes a job (and its results' UIDs) unique.

    A (UID, version) pair stands for an instance the sender replaced: version 1 counts as
    the bare UID (so digests made before versions existed stay the same), a later version
    as "UID#version", so the corrected instance makes a new job."""
    keys = (
        item if isinstance(item, str) else item[0] if item[1] <= 1 else f"{item[0]}#{item[1]}"
        for item in sop_instance_uids
    )
    joined = "\n".join(sorted(keys))
    return hashlib.sha256(joined.encode("ascii")).hexdigest()


class Job(Base):
    """One analysis of one series by one model on one set of instances.

    ``input_digest`` (sha256 of the sorted SOP Instance UIDs) makes a job unique with
    the series and model: the same inputs never make a second job, an instance that
    arrives later makes a new one, whose results supersede the earlier ones.
    """

    __tablename__ = "job"
    __table_args__ = (
        UniqueConstraint(
            "series_pk", "model_name", "model_version", "input_digest", name="uq_job_inputs"
        ),
        Index("ix_job_state_created", "state", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    series_pk: Mapped[int] = mapped_column(ForeignKey("series.id", ondelete="CASCADE"), index=True)
    model_name: Mapped[str] = mapped_column(String(64))
    model_version: Mapped[str] = mapped_column(String(32))
    input_digest: Mapped[str] = mapped_column(String(64))
    instance_count: Mapped[int] = mapped_column(Integer)
    state: Mapped[JobState] = mapped_column(_enum(JobState, "job_state"))
    #: Why a job was skipped, or the error it failed with.
    reason: Mapped[str] = mapped_column(Text, default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: host:pid of the worker running it (a crashed worker's jobs are picked up again).
    worker: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    inference_seconds: Mapped[float | None] = mapped_column(Float)
    study_probability: Mapped[float | None] = mapped_column(Float)
    positive: Mapped[bool | None] = mapped_column(Boolean)
    summary: Mapped[str] = mapped_column(Text, default="")
    #: The Findings as JSON (assistant.analysis.inference.Findings.to_dict), for the dashboard.
    findings_json: Mapped[str] = mapped_column(Text, default="")
    #: Run by a model in shadow (decided when the job was made): its results are kept and
    #: shown, never sent.
    shadow: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    series: Mapped[Series] = relationship()
    results: Mapped[list[ResultObject]] = relationship(back_populates="job")


class ResultObject(Base):
    """A result we wrote, kept under <data>/results: a DICOM object (SR, KOS or SEG), or
    the notification document of its analysis (NOTICE: `sop_instance_uid` is then the
    notice's message id, `sop_class_uid` empty)."""

    __tablename__ = "result_object"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_pk: Mapped[int] = mapped_column(ForeignKey("job.id", ondelete="CASCADE"), index=True)
    kind: Mapped[ResultKind] = mapped_column(_enum(ResultKind, "result_kind"))
    sop_class_uid: Mapped[str] = mapped_column(String(UID_LENGTH))
    sop_instance_uid: Mapped[str] = mapped_column(String(UID_LENGTH), unique=True)
    series_instance_uid: Mapped[str] = mapped_column(String(UID_LENGTH))
    study_instance_uid: Mapped[str] = mapped_column(String(UID_LENGTH))
    #: Path of the file relative to the data folder.
    path: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(DateTime)

    job: Mapped[Job] = relationship(back_populates="results")
    deliveries: Mapped[list[Delivery]] = relationship(back_populates="result")


class Delivery(Base):
    """The outbox: one row per result object per destination."""

    __tablename__ = "delivery"
    __table_args__ = (
        UniqueConstraint("result_pk", "destination", name="uq_delivery_target"),
        Index("ix_delivery_state_due", "state", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    result_pk: Mapped[int] = mapped_column(
        ForeignKey("result_object.id", ondelete="CASCADE"), index=True
    )
    destination: Mapped[str] = mapped_column(String(64))
    state: Mapped[DeliveryState] = mapped_column(_enum(DeliveryState, "delivery_state"))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime)
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime)
    #: The peer's DIMSE status (or HTTP status) of the last attempt.
    peer_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str] = mapped_column(Text, default="")
    sent_at: Mapped[datetime | None] = mapped_column(DateTime)

    result: Mapped[ResultObject] = relationship(back_populates="deliveries")


class Role(enum.StrEnum):
    """What a user may do: read (viewer); also send instances by STOW-RS (uploader);
    everything, users included (admin)."""

    VIEWER = "viewer"
    UPLOADER = "uploader"
    ADMIN = "admin"


class User(Base):
    """A dashboard user. Passwords are stored only as salted hashes (werkzeug's scrypt)."""

    __tablename__ = "user_account"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[Role] = mapped_column(_enum(Role, "user_role"))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime)
    #: Wrong passwords since the last right one; at auth.max_failures the account is
    #: locked until `locked_until`.
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime)
    #: Sessions begun before this are no longer valid.
    password_changed_at: Mapped[datetime | None] = mapped_column(DateTime)


class WebSession(Base):
    """A browser's login, server side: the cookie holds only a random id whose sha256 is
    the key here, so logout, a password change or an admin can end it for good."""

    __tablename__ = "web_session"

    id_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("user_account.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime)
    remote_addr: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(String(256), default="")


class AuditEvent(Base):
    """Who did what, when, from where: logins, failed logins, study views, feedback,
    retries. Never deleted by the application."""

    __tablename__ = "audit_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime, index=True)
    username: Mapped[str] = mapped_column(String(64), default="")
    action: Mapped[str] = mapped_column(String(32), index=True)
    #: What the action was about: a Study Instance UID, a job or delivery id, or "".
    target: Mapped[str] = mapped_column(String(128), default="")
    remote_addr: Mapped[str] = mapped_column(String(64), default="")
    detail: Mapped[str] = mapped_column(Text, default="")


class FeedbackVerdict(enum.StrEnum):
    ACCEPT = "accept"
    REJECT = "reject"
    #: A reader's mark that the study has a finding the model did not report (study level,
    #: with the slice range the reader saw it on).
    MISSED = "missed"


class Feedback(Base):
    """A radiologist's verdict on one finding of a job: a lesion (by its index in the
    job's findings) or, with lesion_index NULL, the study-level verdict."""

    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_pk: Mapped[int] = mapped_column(ForeignKey("job.id", ondelete="CASCADE"), index=True)
    lesion_index: Mapped[int | None] = mapped_column(Integer)
    verdict: Mapped[FeedbackVerdict] = mapped_column(_enum(FeedbackVerdict, "feedback_verdict"))
    comment: Mapped[str] = mapped_column(Text, default="")
    #: MISSED only: the slices (1-based along the stack, as the study page numbers them)
    #: where the reader saw the finding.
    first_slice: Mapped[int | None] = mapped_column(Integer)
    last_slice: Mapped[int | None] = mapped_column(Integer)
    username: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime)

    job: Mapped[Job] = relationship()


class ModelState(enum.StrEnum):
    """What a registered model does: reads series and its results are sent (live), reads
    them and its results are only kept and compared (shadow), or reads nothing (retired)."""

    LIVE = "live"
    SHADOW = "shadow"
    RETIRED = "retired"


class RegisteredModel(Base):
    """A model in the registry: an immutable folder under <data>/models/<name>/<version>/
    (card + weights, as added), and its state. Never deleted: a job names the model it ran
    even after the model is retired."""

    __tablename__ = "registered_model"
    __table_args__ = (
        UniqueConstraint("name", "version", name="uq_registered_model"),
        # One live version per name, whatever two admins do at once.
        Index(
            "uq_registered_model_live",
            "name",
            unique=True,
            sqlite_where=text("state = 'live'"),
            postgresql_where=text("state = 'live'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(32))
    state: Mapped[ModelState] = mapped_column(_enum(ModelState, "model_state"))
    #: All versions of a name share one; it sets their result series' numbers apart from
    #: other models' (0 for the first name registered: the numbers results always had).
    slot: Mapped[int] = mapped_column(Integer)
    #: The folder relative to the data folder.
    folder: Mapped[str] = mapped_column(String(300))
    #: "state_dict" (our network's weights) or "torchscript" (a program from elsewhere).
    format: Mapped[str] = mapped_column(String(16))
    weights_sha256: Mapped[str] = mapped_column(String(64))
    #: The model card as added (model.json's text).
    card_json: Mapped[str] = mapped_column(Text)
    #: "name:version" of the model it was fine-tuned from, or "".
    parent: Mapped[str] = mapped_column(String(100), default="")
    added_at: Mapped[datetime] = mapped_column(DateTime)
    added_by: Mapped[str] = mapped_column(String(64), default="")
    state_changed_at: Mapped[datetime] = mapped_column(DateTime)
    state_changed_by: Mapped[str] = mapped_column(String(64), default="")
    #: The latest `radassist compare` of this model with another (JSON), or "".
    comparison_json: Mapped[str] = mapped_column(Text, default="", server_default="")


class ModelRoute(Base):
    """Which series a model reads: every condition set must hold (empty: any). The route
    names a model by name; its live version reads and sends, its shadow versions read."""

    __tablename__ = "model_route"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    model_name: Mapped[str] = mapped_column(String(64))
    #: JSON lists of strings; patterns are shell-style and case-insensitive.
    modalities: Mapped[str] = mapped_column(Text, default="[]")
    series_description_patterns: Mapped[str] = mapped_column(Text, default="[]")
    body_part_patterns: Mapped[str] = mapped_column(Text, default="[]")
    calling_ae_titles: Mapped[str] = mapped_column(Text, default="[]")
    min_slice_thickness_mm: Mapped[float | None] = mapped_column(Float)
    max_slice_thickness_mm: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    created_by: Mapped[str] = mapped_column(String(64), default="")
