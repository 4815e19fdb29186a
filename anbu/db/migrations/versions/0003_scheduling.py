"""scheduling: programs, overrides, holds, do-not-call, routines, workers, claims, self-tests

Revision ID: 0003_scheduling
Revises: 0002_signals
Create Date: 2026-11-25 12:40:48.742228
"""

from __future__ import annotations

import sqlalchemy as sa

from anbu.db.migrations.helpers import References, create_table, drop_table, timestamp

revision = "0003_scheduling"
down_revision = "0002_signals"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_table(
        "dispatcher_workers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(length=100), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        timestamp("started_at"),
        timestamp("stopped_at", nullable=True),
    )
    create_table(
        "do_not_call",
        sa.Column("phone", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        timestamp("created_at"),
        primary_key=["phone"],
    )
    create_table(
        "programs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("interval_s", sa.Integer(), nullable=False),
        sa.Column("busy_interval_s", sa.Integer(), nullable=False),
        sa.Column("failure_interval_s", sa.Integer(), nullable=False),
        sa.Column("max_callbacks", sa.Integer(), nullable=False),
        sa.Column("callback_delay_s", sa.Integer(), nullable=False),
        sa.Column("tz", sa.String(length=64), nullable=False),
        sa.Column("start_min", sa.Integer(), nullable=False),
        sa.Column("end_min", sa.Integer(), nullable=False),
        sa.Column("weekdays", sa.String(length=7), nullable=False),
        sa.Column("call_on_holidays", sa.Boolean(), nullable=False),
        sa.Column("severe_start_min", sa.Integer(), nullable=False),
        sa.Column("severe_end_min", sa.Integer(), nullable=False),
        timestamp("created_at"),
        timestamp("updated_at"),
        unique=[["name"]],
    )
    create_table(
        "self_test_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        timestamp("started_at"),
        timestamp("ended_at", nullable=True),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("result", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
    )
    create_table(
        "call_holds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("resident_id", sa.String(length=32), nullable=False),
        timestamp("starts_at"),
        timestamp("ends_at", nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        timestamp("created_at"),
        foreign_keys=[References("resident_id", "residents", ondelete="CASCADE")],
        indexes=[("ix_call_holds_resident", ["resident_id", "starts_at"])],
    )
    create_table(
        "resident_schedules",
        sa.Column("resident_id", sa.String(length=32), nullable=False),
        sa.Column("program_id", sa.Integer(), nullable=True),
        sa.Column("start_min", sa.Integer(), nullable=True),
        sa.Column("end_min", sa.Integer(), nullable=True),
        sa.Column("weekdays", sa.String(length=7), nullable=True),
        sa.Column("call_on_holidays", sa.Boolean(), nullable=True),
        sa.Column("tz", sa.String(length=64), nullable=True),
        timestamp("updated_at"),
        primary_key=["resident_id"],
        foreign_keys=[
            References("program_id", "programs"),
            References("resident_id", "residents", ondelete="CASCADE"),
        ],
    )
    create_table(
        "routine_schedules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("resident_id", sa.String(length=32), nullable=False),
        sa.Column("weekday", sa.Integer(), nullable=False),
        sa.Column("time_min", sa.Integer(), nullable=False),
        sa.Column("tz", sa.String(length=64), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        timestamp("last_slot_at", nullable=True),
        timestamp("created_at"),
        foreign_keys=[References("resident_id", "residents", ondelete="CASCADE")],
        unique=[["resident_id", "weekday", "time_min"]],
    )
    create_table(
        "attempt_claims",
        sa.Column("attempt_id", sa.String(length=32), nullable=False),
        sa.Column("worker_id", sa.Integer(), nullable=False),
        timestamp("claimed_at"),
        primary_key=["attempt_id"],
        foreign_keys=[
            References("attempt_id", "call_attempts", ondelete="CASCADE"),
            References("worker_id", "dispatcher_workers"),
        ],
        indexes=["worker_id"],
    )


def downgrade() -> None:
    drop_table("attempt_claims", "ix_attempt_claims_worker_id")
    drop_table("routine_schedules")
    drop_table("resident_schedules")
    drop_table("call_holds", "ix_call_holds_resident")
    drop_table("self_test_runs")
    drop_table("programs")
    drop_table("do_not_call")
    drop_table("dispatcher_workers")
