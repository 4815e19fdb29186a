"""spine: districts, api keys, residents, check-ins, call attempts

Revision ID: 0001_spine
Revises:
Create Date: 2026-11-25 12:33:33.554076
"""

from __future__ import annotations

import sqlalchemy as sa

from anbu.db.migrations.helpers import References, create_table, drop_table, enum, timestamp

revision = "0001_spine"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("is_admin", sa.Boolean(), nullable=False),
        timestamp("created_at"),
        timestamp("revoked_at", nullable=True),
        unique=[["key_hash"]],
    )
    create_table(
        "districts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        timestamp("created_at"),
        unique=[["code"]],
    )
    create_table(
        "api_key_districts",
        sa.Column("api_key_id", sa.Integer(), nullable=False),
        sa.Column("district_id", sa.Integer(), nullable=False),
        primary_key=["api_key_id", "district_id"],
        foreign_keys=[
            References("api_key_id", "api_keys", ondelete="CASCADE"),
            References("district_id", "districts", ondelete="CASCADE"),
        ],
    )
    create_table(
        "residents",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("district_id", sa.Integer(), nullable=False),
        sa.Column("external_ref", sa.String(length=64), nullable=True),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("phone", sa.String(length=16), nullable=False),
        sa.Column("dong", sa.String(length=50), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        timestamp("created_at"),
        timestamp("updated_at"),
        foreign_keys=[References("district_id", "districts")],
        unique=[["district_id", "external_ref"]],
        indexes=["district_id"],
    )
    create_table(
        "checkins",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("resident_id", sa.String(length=32), nullable=False),
        enum("source", "checkinsource", "api signal routine self_test"),
        sa.Column("reason", sa.Text(), nullable=False),
        enum("status", "checkinstatus", "pending dialing completed exhausted cancelled"),
        enum(
            "outcome",
            "outcome",
            "ok help callback no_response unreachable declined invalid_number",
            nullable=True,
        ),
        sa.Column("priority", sa.Integer(), nullable=False),
        timestamp("created_at"),
        timestamp("updated_at"),
        timestamp("closed_at", nullable=True),
        foreign_keys=[References("resident_id", "residents")],
        indexes=[("ix_checkins_resident_status", ["resident_id", "status"])],
    )
    create_table(
        "call_attempts",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("checkin_id", sa.String(length=32), nullable=False),
        sa.Column("attempt_no", sa.Integer(), nullable=False),
        sa.Column("channel_id", sa.String(length=64), nullable=False),
        sa.Column("number", sa.String(length=16), nullable=False),
        enum("status", "attemptstatus", "scheduled dialing finished unknown"),
        enum(
            "result",
            "callresult",
            "answered no_answer busy congestion rejected unreachable failed",
            nullable=True,
        ),
        enum("reply", "reply", "ok help callback no_response hung_up", nullable=True),
        sa.Column("hangup_cause", sa.Integer(), nullable=True),
        sa.Column("keys", sa.String(length=32), nullable=False),
        sa.Column("transcript", sa.Text(), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=True),
        timestamp("scheduled_for"),
        timestamp("originated_at", nullable=True),
        timestamp("answered_at", nullable=True),
        timestamp("ended_at", nullable=True),
        foreign_keys=[References("checkin_id", "checkins")],
        unique=[["channel_id"], ["checkin_id", "attempt_no"]],
        indexes=["checkin_id", ("ix_call_attempts_due", ["status", "scheduled_for"])],
    )


def downgrade() -> None:
    drop_table("call_attempts", "ix_call_attempts_due", "ix_call_attempts_checkin_id")
    drop_table("checkins", "ix_checkins_resident_status")
    drop_table("residents", "ix_residents_district_id")
    drop_table("api_key_districts")
    drop_table("districts")
    drop_table("api_keys")
