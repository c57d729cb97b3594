"""the model registry, routes, shadow jobs and series slice thickness

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "registered_model",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column(
            "state",
            sa.Enum("live", "shadow", "retired", name="model_state", native_enum=False, length=32),
            nullable=False,
        ),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("folder", sa.String(length=300), nullable=False),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("weights_sha256", sa.String(length=64), nullable=False),
        sa.Column("card_json", sa.Text(), nullable=False),
        sa.Column("parent", sa.String(length=100), nullable=False),
        sa.Column("added_at", sa.DateTime(), nullable=False),
        sa.Column("added_by", sa.String(length=64), nullable=False),
        sa.Column("state_changed_at", sa.DateTime(), nullable=False),
        sa.Column("state_changed_by", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name", "version", name="uq_registered_model"),
    )
    op.create_index(
        "uq_registered_model_live",
        "registered_model",
        ["name"],
        unique=True,
        sqlite_where=sa.text("state = 'live'"),
        postgresql_where=sa.text("state = 'live'"),
    )
    op.create_table(
        "model_route",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("model_name", sa.String(length=64), nullable=False),
        sa.Column("modalities", sa.Text(), nullable=False),
        sa.Column("series_description_patterns", sa.Text(), nullable=False),
        sa.Column("body_part_patterns", sa.Text(), nullable=False),
        sa.Column("calling_ae_titles", sa.Text(), nullable=False),
        sa.Column("min_slice_thickness_mm", sa.Float(), nullable=True),
        sa.Column("max_slice_thickness_mm", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("shadow", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("series", schema=None) as batch_op:
        batch_op.add_column(sa.Column("slice_thickness_mm", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("series", schema=None) as batch_op:
        batch_op.drop_column("slice_thickness_mm")
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.drop_column("shadow")
    op.drop_table("model_route")
    op.drop_index("uq_registered_model_live", table_name="registered_model")
    op.drop_table("registered_model")
