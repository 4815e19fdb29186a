"""scheduling: programs, overrides, holds, do-not-call, routines, workers, claims, self-tests

Revision ID: 0003_scheduling
Revises: 0002_signals
Create Date: 2026-11-25 12:40:48.742228
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import anbu.db.base

revision = "0003_scheduling"
down_revision = "0002_signals"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dispatcher_workers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(length=100), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", anbu.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("stopped_at", anbu.db.base.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dispatcher_workers")),
    )
    op.create_table(
        "do_not_call",
        sa.Column("phone", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", anbu.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("phone", name=op.f("pk_do_not_call")),
    )
    op.create_table(
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
        sa.Column("created_at", anbu.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", anbu.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_programs")),
        sa.UniqueConstraint("name", name=op.f("uq_programs_name")),
    )
    op.create_table(
        "self_test_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("started_at", anbu.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("ended_at", anbu.db.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("result", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_self_test_runs")),
    )
    op.create_table(
        "call_holds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("resident_id", sa.String(length=32), nullable=False),
        sa.Column("starts_at", anbu.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("ends_at", anbu.db.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", anbu.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["resident_id"],
            ["residents.id"],
            name=op.f("fk_call_holds_resident_id_residents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_call_holds")),
    )
    with op.batch_alter_table("call_holds", schema=None) as batch_op:
        batch_op.create_index("ix_call_holds_resident", ["resident_id", "starts_at"], unique=False)

    op.create_table(
        "resident_schedules",
        sa.Column("resident_id", sa.String(length=32), nullable=False),
        sa.Column("program_id", sa.Integer(), nullable=True),
        sa.Column("start_min", sa.Integer(), nullable=True),
        sa.Column("end_min", sa.Integer(), nullable=True),
        sa.Column("weekdays", sa.String(length=7), nullable=True),
        sa.Column("call_on_holidays", sa.Boolean(), nullable=True),
        sa.Column("tz", sa.String(length=64), nullable=True),
        sa.Column("updated_at", anbu.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["program_id"], ["programs.id"], name=op.f("fk_resident_schedules_program_id_programs")
        ),
        sa.ForeignKeyConstraint(
            ["resident_id"],
            ["residents.id"],
            name=op.f("fk_resident_schedules_resident_id_residents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("resident_id", name=op.f("pk_resident_schedules")),
    )
    op.create_table(
        "routine_schedules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("resident_id", sa.String(length=32), nullable=False),
        sa.Column("weekday", sa.Integer(), nullable=False),
        sa.Column("time_min", sa.Integer(), nullable=False),
        sa.Column("tz", sa.String(length=64), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("last_slot_at", anbu.db.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("created_at", anbu.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["resident_id"],
            ["residents.id"],
            name=op.f("fk_routine_schedules_resident_id_residents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_routine_schedules")),
        sa.UniqueConstraint(
            "resident_id", "weekday", "time_min", name=op.f("uq_routine_schedules_resident_id")
        ),
    )
    op.create_table(
        "attempt_claims",
        sa.Column("attempt_id", sa.String(length=32), nullable=False),
        sa.Column("worker_id", sa.Integer(), nullable=False),
        sa.Column("claimed_at", anbu.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["attempt_id"],
            ["call_attempts.id"],
            name=op.f("fk_attempt_claims_attempt_id_call_attempts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["worker_id"],
            ["dispatcher_workers.id"],
            name=op.f("fk_attempt_claims_worker_id_dispatcher_workers"),
        ),
        sa.PrimaryKeyConstraint("attempt_id", name=op.f("pk_attempt_claims")),
    )
    with op.batch_alter_table("attempt_claims", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_attempt_claims_worker_id"), ["worker_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("attempt_claims", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_attempt_claims_worker_id"))

    op.drop_table("attempt_claims")
    op.drop_table("routine_schedules")
    op.drop_table("resident_schedules")
    with op.batch_alter_table("call_holds", schema=None) as batch_op:
        batch_op.drop_index("ix_call_holds_resident")

    op.drop_table("call_holds")
    op.drop_table("self_test_runs")
    op.drop_table("programs")
    op.drop_table("do_not_call")
    op.drop_table("dispatcher_workers")
