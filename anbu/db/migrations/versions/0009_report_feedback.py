"""report_feedback: per-person widening from officials' findings

monitoring_profiles.widen_h holds the widening in force ("calls=24,power=48"); feedback_steps
keeps every step with the finding that made it, so each can be shown and reverted.

Revision ID: 0009_report_feedback
Revises: 0008_perf_baseline_binary
Create Date: 2026-12-02 11:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa

from anbu.db.migrations import helpers as mig

revision = "0009_report_feedback"
down_revision = "0008_perf_baseline_binary"
branch_labels = None
depends_on = None


def upgrade() -> None:
    mig.add_columns(
        "monitoring_profiles", sa.Column("widen_h", sa.String(length=200), nullable=True)
    )
    mig.create_table(
        "feedback_steps",
        mig.id_column("id"),
        mig.id_column("resident_id"),
        mig.enum("channel", "channel", "calls steps power light motion"),
        sa.Column("hours", sa.Float(), nullable=False),
        sa.Column("finding", sa.String(length=32), nullable=False),
        mig.id_column("incident_id", nullable=True),
        mig.id_column("assessment_id", nullable=True),
        mig.timestamp("created_at"),
        mig.timestamp("reverted_at", nullable=True),
        sa.Column("reverted_why", sa.String(length=200), nullable=True),
        foreign_keys=[mig.References("resident_id", "residents", ondelete="CASCADE")],
        indexes=[("ix_feedback_steps_resident", ["resident_id", "reverted_at"])],
    )


def downgrade() -> None:
    mig.drop_table("feedback_steps", "ix_feedback_steps_resident")
    mig.drop_columns("monitoring_profiles", "widen_h")
