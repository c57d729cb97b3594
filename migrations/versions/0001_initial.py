"""patient, study, series and instance

Revision ID: 0001
Revises:
Create Date: 2026-11-22 01:48:45.985023
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "patient",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("issuer_of_patient_id", sa.String(length=64), nullable=False),
        sa.Column("patient_name", sa.String(length=324), nullable=False),
        sa.Column("birth_date", sa.String(length=8), nullable=False),
        sa.Column("sex", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("patient_id", "issuer_of_patient_id", name="uq_patient_identity"),
    )
    op.create_table(
        "study",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("patient_pk", sa.Integer(), nullable=False),
        sa.Column("study_date", sa.String(length=8), nullable=False),
        sa.Column("study_time", sa.String(length=16), nullable=False),
        sa.Column("accession_number", sa.String(length=16), nullable=False),
        sa.Column("study_id", sa.String(length=16), nullable=False),
        sa.Column("study_description", sa.String(length=64), nullable=False),
        sa.Column("referring_physician_name", sa.String(length=324), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["patient_pk"], ["patient.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("study_instance_uid"),
    )
    with op.batch_alter_table("study", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_study_accession_number"), ["accession_number"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_study_patient_pk"), ["patient_pk"], unique=False)
        batch_op.create_index(batch_op.f("ix_study_received_at"), ["received_at"], unique=False)

    op.create_table(
        "series",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("series_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("study_pk", sa.Integer(), nullable=False),
        sa.Column("modality", sa.String(length=16), nullable=False),
        sa.Column("series_number", sa.Integer(), nullable=True),
        sa.Column("series_description", sa.String(length=64), nullable=False),
        sa.Column("body_part_examined", sa.String(length=16), nullable=False),
        sa.Column("calling_ae_title", sa.String(length=16), nullable=False),
        sa.Column("instance_count", sa.Integer(), nullable=False),
        sa.Column(
            "state",
            sa.Enum("receiving", "complete", name="series_state", native_enum=False, length=32),
            nullable=False,
        ),
        sa.Column("first_received_at", sa.DateTime(), nullable=False),
        sa.Column("last_received_at", sa.DateTime(), nullable=False),
        sa.Column("completed_at", sa.DateTime(), nullable=True),
        sa.Column(
            "completion_reason",
            sa.Enum(
                "quiet_period",
                "contiguous_after_release",
                name="completion_reason",
                native_enum=False,
                length=32,
            ),
            nullable=True,
        ),
        sa.Column("reopened_count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["study_pk"], ["study.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("series_instance_uid"),
    )
    with op.batch_alter_table("series", schema=None) as batch_op:
        batch_op.create_index(
            "ix_series_state_last_received", ["state", "last_received_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_series_study_pk"), ["study_pk"], unique=False)

    op.create_table(
        "instance",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sop_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("series_pk", sa.Integer(), nullable=False),
        sa.Column("sop_class_uid", sa.String(length=64), nullable=False),
        sa.Column("transfer_syntax_uid", sa.String(length=64), nullable=False),
        sa.Column("instance_number", sa.Integer(), nullable=True),
        sa.Column("slice_position", sa.Float(), nullable=True),
        sa.Column("image_orientation", sa.String(length=128), nullable=False),
        sa.Column("path", sa.String(length=300), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("calling_ae_title", sa.String(length=16), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["series_pk"], ["series.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("sop_instance_uid"),
    )
    with op.batch_alter_table("instance", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_instance_series_pk"), ["series_pk"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("instance", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_instance_series_pk"))

    op.drop_table("instance")
    with op.batch_alter_table("series", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_series_study_pk"))
        batch_op.drop_index("ix_series_state_last_received")

    op.drop_table("series")
    with op.batch_alter_table("study", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_study_received_at"))
        batch_op.drop_index(batch_op.f("ix_study_patient_pk"))
        batch_op.drop_index(batch_op.f("ix_study_accession_number"))

    op.drop_table("study")
    op.drop_table("patient")
