"""a reader's missed-finding marks (slice range), a model's recorded comparison

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 10:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("feedback", schema=None) as batch_op:
        batch_op.add_column(sa.Column("first_slice", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("last_slice", sa.Integer(), nullable=True))
    with op.batch_alter_table("registered_model", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("comparison_json", sa.Text(), nullable=False, server_default="")
        )


def downgrade() -> None:
    with op.batch_alter_table("registered_model", schema=None) as batch_op:
        batch_op.drop_column("comparison_json")
    with op.batch_alter_table("feedback", schema=None) as batch_op:
        batch_op.drop_column("last_slice")
        batch_op.drop_column("first_slice")
