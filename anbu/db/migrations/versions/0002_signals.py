"""signals: monitoring profiles, holds, devices, events, baselines, device tasks, assessments

Revision ID: 0002_signals
Revises: 0001_spine
Create Date: 2026-11-25 12:41:40.058318

The sweep reads signal_states and devices through their due-time indexes (quiet_due_at,
stale_due_at); signal_events is unique on (source, event_id) so a resent batch inserts nothing.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import anbu.db.base

revision = "0002_signals"
down_revision = "0001_spine"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "signal_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column("resident_id", sa.String(length=32), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=True),
        sa.Column(
            "kind",
            sa.Enum(
                "call",
                "call_count",
                "power",
                "light",
                "steps",
                "door",
                "motion",
                "heartbeat",
                name="signalkind",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("at", anbu.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("attrs", sa.JSON(), nullable=True),
        sa.Column("received_at", anbu.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signal_events")),
        sa.UniqueConstraint("source", "event_id", name=op.f("uq_signal_events_source")),
    )
    with op.batch_alter_table("signal_events", schema=None) as batch_op:
        batch_op.create_index("ix_signal_events_resident_at", ["resident_id", "at"], unique=False)

    op.create_table(
        "devices",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("resident_id", sa.String(length=32), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "plug",
                "app",
                "motion_sensor",
                "door_sensor",
                name="devicekind",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("expected_interval_s", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("online", sa.Boolean(), nullable=False),
        sa.Column("last_seen_at", anbu.db.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("stale_due_at", anbu.db.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("created_at", anbu.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["resident_id"], ["residents.id"], name=op.f("fk_devices_resident_id_residents")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_devices")),
        sa.UniqueConstraint("device_id", name=op.f("uq_devices_device_id")),
    )
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_devices_resident_id"), ["resident_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_devices_stale_due_at"), ["stale_due_at"], unique=False)

    op.create_table(
        "monitoring_holds",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("resident_id", sa.String(length=32), nullable=False),
        sa.Column("starts_at", anbu.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("ends_at", anbu.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column(
            "reason",
            sa.Enum("hospital", "travel", "other", name="holdreason", native_enum=False, length=32),
            nullable=False,
        ),
        sa.Column("note", sa.String(length=200), nullable=False),
        sa.Column("created_at", anbu.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["resident_id"],
            ["residents.id"],
            name=op.f("fk_monitoring_holds_resident_id_residents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_monitoring_holds")),
    )
    with op.batch_alter_table("monitoring_holds", schema=None) as batch_op:
        batch_op.create_index(
            "ix_monitoring_holds_resident_ends", ["resident_id", "ends_at"], unique=False
        )

    op.create_table(
        "monitoring_profiles",
        sa.Column("resident_id", sa.String(length=32), nullable=False),
        sa.Column(
            "tier",
            sa.Enum("calls", "app", "iot", name="tier", native_enum=False, length=32),
            nullable=False,
        ),
        sa.Column(
            "category",
            sa.Enum(
                "very_high",
                "high",
                "medium",
                "low",
                "very_low",
                name="riskcategory",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("window_h_override", sa.Float(), nullable=True),
        sa.Column("consent_call_records", sa.Boolean(), nullable=False),
        sa.Column("consent_app", sa.Boolean(), nullable=False),
        sa.Column("consent_iot", sa.Boolean(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column(
            "level",
            sa.Enum(
                "none", "concern", "caution", "serious", name="level", native_enum=False, length=32
            ),
            nullable=False,
        ),
        sa.Column("level_since", anbu.db.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("created_at", anbu.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", anbu.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["resident_id"],
            ["residents.id"],
            name=op.f("fk_monitoring_profiles_resident_id_residents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("resident_id", name=op.f("pk_monitoring_profiles")),
    )
    with op.batch_alter_table("monitoring_profiles", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_monitoring_profiles_level"), ["level"], unique=False)

    op.create_table(
        "risk_assessments",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("resident_id", sa.String(length=32), nullable=False),
        sa.Column(
            "level",
            sa.Enum(
                "none", "concern", "caution", "serious", name="level", native_enum=False, length=32
            ),
            nullable=False,
        ),
        sa.Column(
            "previous_level",
            sa.Enum(
                "none", "concern", "caution", "serious", name="level", native_enum=False, length=32
            ),
            nullable=False,
        ),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("explanation", sa.Text(), nullable=False),
        sa.Column("checkin_id", sa.String(length=32), nullable=True),
        sa.Column("assessed_at", anbu.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["resident_id"],
            ["residents.id"],
            name=op.f("fk_risk_assessments_resident_id_residents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_risk_assessments")),
    )
    with op.batch_alter_table("risk_assessments", schema=None) as batch_op:
        batch_op.create_index(
            "ix_risk_assessments_resident_at", ["resident_id", "assessed_at"], unique=False
        )

    op.create_table(
        "signal_states",
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
        sa.Column("days", sa.Integer(), nullable=False),
        sa.Column("hourly", sa.JSON(), nullable=False),
        sa.Column("ring", sa.JSON(), nullable=False),
        sa.Column("ring_end", sa.Integer(), nullable=True),
        sa.Column("first_hour", sa.Integer(), nullable=True),
        sa.Column("last_activity_at", anbu.db.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("last_event_at", anbu.db.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("last_value", sa.Float(), nullable=True),
        sa.Column("quiet_due_at", anbu.db.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("updated_at", anbu.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["resident_id"],
            ["residents.id"],
            name=op.f("fk_signal_states_resident_id_residents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("resident_id", "channel", name=op.f("pk_signal_states")),
    )
    with op.batch_alter_table("signal_states", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_signal_states_quiet_due_at"), ["quiet_due_at"], unique=False
        )

    op.create_table(
        "device_tasks",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("device_pk", sa.String(length=32), nullable=False),
        sa.Column("resident_id", sa.String(length=32), nullable=False),
        sa.Column(
            "kind",
            sa.Enum("stale", "offline", name="deviceissuekind", native_enum=False, length=32),
            nullable=False,
        ),
        sa.Column(
            "status",
            sa.Enum("open", "resolved", name="taskstatus", native_enum=False, length=32),
            nullable=False,
        ),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("opened_at", anbu.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", anbu.db.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("resolution", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["device_pk"], ["devices.id"], name=op.f("fk_device_tasks_device_pk_devices")
        ),
        sa.ForeignKeyConstraint(
            ["resident_id"], ["residents.id"], name=op.f("fk_device_tasks_resident_id_residents")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_device_tasks")),
    )
    with op.batch_alter_table("device_tasks", schema=None) as batch_op:
        batch_op.create_index(
            "ix_device_tasks_device_status", ["device_pk", "status"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_device_tasks_resident_id"), ["resident_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_device_tasks_status"), ["status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("device_tasks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_device_tasks_status"))
        batch_op.drop_index(batch_op.f("ix_device_tasks_resident_id"))
        batch_op.drop_index("ix_device_tasks_device_status")

    op.drop_table("device_tasks")
    with op.batch_alter_table("signal_states", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_signal_states_quiet_due_at"))

    op.drop_table("signal_states")
    with op.batch_alter_table("risk_assessments", schema=None) as batch_op:
        batch_op.drop_index("ix_risk_assessments_resident_at")

    op.drop_table("risk_assessments")
    with op.batch_alter_table("monitoring_profiles", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_monitoring_profiles_level"))

    op.drop_table("monitoring_profiles")
    with op.batch_alter_table("monitoring_holds", schema=None) as batch_op:
        batch_op.drop_index("ix_monitoring_holds_resident_ends")

    op.drop_table("monitoring_holds")
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_devices_stale_due_at"))
        batch_op.drop_index(batch_op.f("ix_devices_resident_id"))

    op.drop_table("devices")
    with op.batch_alter_table("signal_events", schema=None) as batch_op:
        batch_op.drop_index("ix_signal_events_resident_at")

    op.drop_table("signal_events")
