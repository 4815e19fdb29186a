"""scheduling: programs, overrides, holds, do-not-call, routines, workers, claims, self-tests

Revision ID: 0003_scheduling
Revises: 0002_signals
Create Date: 2026-11-25 12:40:48.742228
"""

from __future__ import annotations

import sqlalchemy as sa

from anbu.db.migrations import helpers as mig

revision = "0003_scheduling"
down_revision = "0002_signals"
branch_labels = None
depends_on = None


def upgrade() -> None:
    mig.create_table(
        "dispatcher_workers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(length=100), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        mig.timestamp("started_at"),
        mig.timestamp("stopped_at", nullable=True),
    )
    mig.create_table(
        "do_not_call",
        sa.Column("phone", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        mig.timestamp("created_at"),
        primary_key=["phone"],
    )
    mig.create_table(
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
        mig.timestamp("created_at"),
        mig.timestamp("updated_at"),
        unique=[["name"]],
    )
    mig.create_table(
        "self_test_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        mig.timestamp("started_at"),
        mig.timestamp("ended_at", nullable=True),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("result", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
    )
    mig.create_table(
        "call_holds",
        sa.Column("id", sa.Integer(), nullable=False),
        mig.id_column("resident_id"),
        mig.timestamp("starts_at"),
        mig.timestamp("ends_at", nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        mig.timestamp("created_at"),
        foreign_keys=[mig.References("resident_id", "residents", ondelete="CASCADE")],
        indexes=[("ix_call_holds_resident", ["resident_id", "starts_at"])],
    )
    mig.create_table(
        "resident_schedules",
        mig.id_column("resident_id"),
        sa.Column("program_id", sa.Integer(), nullable=True),
        sa.Column("start_min", sa.Integer(), nullable=True),
        sa.Column("end_min", sa.Integer(), nullable=True),
        sa.Column("weekdays", sa.String(length=7), nullable=True),
        sa.Column("call_on_holidays", sa.Boolean(), nullable=True),
        sa.Column("tz", sa.String(length=64), nullable=True),
        mig.timestamp("updated_at"),
        primary_key=["resident_id"],
        foreign_keys=[
            mig.References("program_id", "programs"),
            mig.References("resident_id", "residents", ondelete="CASCADE"),
        ],
    )
    mig.create_table(
        "routine_schedules",
        sa.Column("id", sa.Integer(), nullable=False),
        mig.id_column("resident_id"),
        sa.Column("weekday", sa.Integer(), nullable=False),
        sa.Column("time_min", sa.Integer(), nullable=False),
        sa.Column("tz", sa.String(length=64), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        mig.timestamp("last_slot_at", nullable=True),
        mig.timestamp("created_at"),
        foreign_keys=[mig.References("resident_id", "residents", ondelete="CASCADE")],
        unique=[["resident_id", "weekday", "time_min"]],
    )
    mig.create_table(
        "attempt_claims",
        mig.id_column("attempt_id"),
        sa.Column("worker_id", sa.Integer(), nullable=False),
        mig.timestamp("claimed_at"),
        primary_key=["attempt_id"],
        foreign_keys=[
            mig.References("attempt_id", "call_attempts", ondelete="CASCADE"),
            mig.References("worker_id", "dispatcher_workers"),
        ],
        indexes=["worker_id"],
    )


def downgrade() -> None:
    mig.drop_table("attempt_claims", "ix_attempt_claims_worker_id")
    mig.drop_table("routine_schedules")
    mig.drop_table("resident_schedules")
    mig.drop_table("call_holds", "ix_call_holds_resident")
    mig.drop_table("self_test_runs")
    mig.drop_table("programs")
    mig.drop_table("do_not_call")
    mig.drop_table("dispatcher_workers")
