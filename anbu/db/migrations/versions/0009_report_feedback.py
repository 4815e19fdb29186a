"""report_feedback: per-person widening from officials' findings

monitoring_profiles.widen_h holds the widening in force ("calls=24,power=48"); feedback_steps
keeps every step with the finding that made it, so each can be shown and reverted.

Revision ID: 0009_report_feedback
Revises: 0008_perf_baseline_binary
Create Date: 2026-12-02 11:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import anbu.db.base

revision = "0009_report_feedback"
down_revision = "0008_perf_baseline_binary"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("monitoring_profiles", schema=None) as batch_op:
        batch_op.add_column(sa.Column("widen_h", sa.String(length=200), nullable=True))
    op.create_table(
        "feedback_steps",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("resident_id", sa.String(length=32), nullable=False),
        sa.Column(
            "channel",
            sa.Enum(
                "calls",
                "steps",
                "power",
                "light",
                "motion",
                name="channel",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("hours", sa.Float(), nullable=False),
        sa.Column("finding", sa.String(length=32), nullable=False),
        sa.Column("incident_id", sa.String(length=32), nullable=True),
        sa.Column("assessment_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", anbu.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("reverted_at", anbu.db.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("reverted_why", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["resident_id"],
            ["residents.id"],
            name=op.f("fk_feedback_steps_resident_id_residents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feedback_steps")),
    )
    with op.batch_alter_table("feedback_steps", schema=None) as batch_op:
        batch_op.create_index(
            "ix_feedback_steps_resident", ["resident_id", "reverted_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("feedback_steps", schema=None) as batch_op:
        batch_op.drop_index("ix_feedback_steps_resident")
    op.drop_table("feedback_steps")
    with op.batch_alter_table("monitoring_profiles", schema=None) as batch_op:
        batch_op.drop_column("widen_h")
