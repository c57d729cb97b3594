"""instance versions, the record of changed re-sends, frame counts

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05 02:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("instance", schema=None) as batch_op:
        batch_op.add_column(sa.Column("version", sa.Integer(), nullable=False, server_default="1"))
        batch_op.add_column(
            sa.Column("frame_count", sa.Integer(), nullable=False, server_default="1")
        )
    op.create_table(
        "instance_change",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("instance_pk", sa.Integer(), nullable=False),
        sa.Column("series_pk", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("kept_path", sa.String(length=300), nullable=False),
        sa.Column("calling_ae_title", sa.String(length=16), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["instance_pk"], ["instance.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["series_pk"], ["series.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("instance_change", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_instance_change_instance_pk"), ["instance_pk"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_instance_change_series_pk"), ["series_pk"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("instance_change", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_instance_change_series_pk"))
        batch_op.drop_index(batch_op.f("ix_instance_change_instance_pk"))
    op.drop_table("instance_change")
    with op.batch_alter_table("instance", schema=None) as batch_op:
        batch_op.drop_column("frame_count")
        batch_op.drop_column("version")
