"""signals: monitoring profiles, holds, devices, events, baselines, device tasks, assessments

Revision ID: 0002_signals
Revises: 0001_spine
Create Date: 2026-11-25 12:41:40.058318

The sweep reads signal_states and devices through their due-time indexes (quiet_due_at,
stale_due_at); signal_events is unique on (source, event_id) so a resent batch inserts nothing.
"""

from __future__ import annotations

import sqlalchemy as sa

from anbu.db.migrations import helpers as mig

revision = "0002_signals"
down_revision = "0001_spine"
branch_labels = None
depends_on = None

_LEVEL = "none concern caution serious"


def upgrade() -> None:
    mig.create_table(
        "signal_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.String(length=128), nullable=False),
        mig.id_column("resident_id"),
        sa.Column("device_id", sa.String(length=64), nullable=True),
        mig.enum("kind", "signalkind", "call call_count power light steps door motion heartbeat"),
        mig.timestamp("at"),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("attrs", sa.JSON(), nullable=True),
        mig.timestamp("received_at"),
        unique=[["source", "event_id"]],
        indexes=[("ix_signal_events_resident_at", ["resident_id", "at"])],
    )
    mig.create_table(
        "devices",
        mig.id_column("id"),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        mig.id_column("resident_id"),
        mig.enum("kind", "devicekind", "plug app motion_sensor door_sensor"),
        sa.Column("expected_interval_s", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("online", sa.Boolean(), nullable=False),
        mig.timestamp("last_seen_at", nullable=True),
        mig.timestamp("stale_due_at", nullable=True),
        mig.timestamp("created_at"),
        foreign_keys=[mig.References("resident_id", "residents")],
        unique=[["device_id"]],
        indexes=["resident_id", "stale_due_at"],
    )
    mig.create_table(
        "monitoring_holds",
        mig.id_column("id"),
        mig.id_column("resident_id"),
        mig.timestamp("starts_at"),
        mig.timestamp("ends_at"),
        mig.enum("reason", "holdreason", "hospital travel other"),
        sa.Column("note", sa.String(length=200), nullable=False),
        mig.timestamp("created_at"),
        foreign_keys=[mig.References("resident_id", "residents", ondelete="CASCADE")],
        indexes=[("ix_monitoring_holds_resident_ends", ["resident_id", "ends_at"])],
    )
    mig.create_table(
        "monitoring_profiles",
        mig.id_column("resident_id"),
        mig.enum("tier", "tier", "calls app iot"),
        mig.enum("category", "riskcategory", "very_high high medium low very_low"),
        sa.Column("window_h_override", sa.Float(), nullable=True),
        sa.Column("consent_call_records", sa.Boolean(), nullable=False),
        sa.Column("consent_app", sa.Boolean(), nullable=False),
        sa.Column("consent_iot", sa.Boolean(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        mig.enum("level", "level", _LEVEL),
        mig.timestamp("level_since", nullable=True),
        mig.timestamp("created_at"),
        mig.timestamp("updated_at"),
        primary_key=["resident_id"],
        foreign_keys=[mig.References("resident_id", "residents", ondelete="CASCADE")],
        indexes=["level"],
    )
    mig.create_table(
        "risk_assessments",
        mig.id_column("id"),
        mig.id_column("resident_id"),
        mig.enum("level", "level", _LEVEL),
        mig.enum("previous_level", "level", _LEVEL),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("explanation", sa.Text(), nullable=False),
        mig.id_column("checkin_id", nullable=True),
        mig.timestamp("assessed_at"),
        foreign_keys=[mig.References("resident_id", "residents", ondelete="CASCADE")],
        indexes=[("ix_risk_assessments_resident_at", ["resident_id", "assessed_at"])],
    )
    mig.create_table(
        "signal_states",
        mig.id_column("resident_id"),
        mig.enum("channel", "channel", "calls steps power light motion"),
        sa.Column("days", sa.Integer(), nullable=False),
        sa.Column("hourly", sa.JSON(), nullable=False),
        sa.Column("ring", sa.JSON(), nullable=False),
        sa.Column("ring_end", sa.Integer(), nullable=True),
        sa.Column("first_hour", sa.Integer(), nullable=True),
        mig.timestamp("last_activity_at", nullable=True),
        mig.timestamp("last_event_at", nullable=True),
        sa.Column("last_value", sa.Float(), nullable=True),
        mig.timestamp("quiet_due_at", nullable=True),
        mig.timestamp("updated_at"),
        primary_key=["resident_id", "channel"],
        foreign_keys=[mig.References("resident_id", "residents", ondelete="CASCADE")],
        indexes=["quiet_due_at"],
    )
    mig.create_table(
        "device_tasks",
        mig.id_column("id"),
        mig.id_column("device_pk"),
        mig.id_column("resident_id"),
        mig.enum("kind", "deviceissuekind", "stale offline"),
        mig.enum("status", "taskstatus", "open resolved"),
        sa.Column("detail", sa.Text(), nullable=False),
        mig.timestamp("opened_at"),
        mig.timestamp("resolved_at", nullable=True),
        sa.Column("resolution", sa.String(length=200), nullable=True),
        foreign_keys=[
            mig.References("device_pk", "devices"),
            mig.References("resident_id", "residents"),
        ],
        indexes=[
            ("ix_device_tasks_device_status", ["device_pk", "status"]),
            "resident_id",
            "status",
        ],
    )


def downgrade() -> None:
    mig.drop_table(
        "device_tasks",
        "ix_device_tasks_status",
        "ix_device_tasks_resident_id",
        "ix_device_tasks_device_status",
    )
    mig.drop_table("signal_states", "ix_signal_states_quiet_due_at")
    mig.drop_table("risk_assessments", "ix_risk_assessments_resident_at")
    mig.drop_table("monitoring_profiles", "ix_monitoring_profiles_level")
    mig.drop_table("monitoring_holds", "ix_monitoring_holds_resident_ends")
    mig.drop_table("devices", "ix_devices_stale_due_at", "ix_devices_resident_id")
    mig.drop_table("signal_events", "ix_signal_events_resident_at")
