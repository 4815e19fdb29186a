"""spine: districts, api keys, residents, check-ins, call attempts

Revision ID: 0001_spine
Revises:
Create Date: 2026-11-25 12:33:33.554076
"""

from __future__ import annotations

import sqlalchemy as sa

from anbu.db.migrations import helpers as mig

revision = "0001_spine"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    mig.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("is_admin", sa.Boolean(), nullable=False),
        mig.timestamp("created_at"),
        mig.timestamp("revoked_at", nullable=True),
        unique=[["key_hash"]],
    )
    mig.create_table(
        "districts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        mig.timestamp("created_at"),
        unique=[["code"]],
    )
    mig.create_table(
        "api_key_districts",
        sa.Column("api_key_id", sa.Integer(), nullable=False),
        sa.Column("district_id", sa.Integer(), nullable=False),
        primary_key=["api_key_id", "district_id"],
        foreign_keys=[
            mig.References("api_key_id", "api_keys", ondelete="CASCADE"),
            mig.References("district_id", "districts", ondelete="CASCADE"),
        ],
    )
    mig.create_table(
        "residents",
        mig.id_column("id"),
        sa.Column("district_id", sa.Integer(), nullable=False),
        sa.Column("external_ref", sa.String(length=64), nullable=True),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("phone", sa.String(length=16), nullable=False),
        sa.Column("dong", sa.String(length=50), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        mig.timestamp("created_at"),
        mig.timestamp("updated_at"),
        foreign_keys=[mig.References("district_id", "districts")],
        unique=[["district_id", "external_ref"]],
        indexes=["district_id"],
    )
    mig.create_table(
        "checkins",
        mig.id_column("id"),
        mig.id_column("resident_id"),
        mig.enum("source", "checkinsource", "api signal routine self_test"),
        sa.Column("reason", sa.Text(), nullable=False),
        mig.enum("status", "checkinstatus", "pending dialing completed exhausted cancelled"),
        mig.enum(
            "outcome",
            "outcome",
            "ok help callback no_response unreachable declined invalid_number",
            nullable=True,
        ),
        sa.Column("priority", sa.Integer(), nullable=False),
        mig.timestamp("created_at"),
        mig.timestamp("updated_at"),
        mig.timestamp("closed_at", nullable=True),
        foreign_keys=[mig.References("resident_id", "residents")],
        indexes=[("ix_checkins_resident_status", ["resident_id", "status"])],
    )
    mig.create_table(
        "call_attempts",
        mig.id_column("id"),
        mig.id_column("checkin_id"),
        sa.Column("attempt_no", sa.Integer(), nullable=False),
        sa.Column("channel_id", sa.String(length=64), nullable=False),
        sa.Column("number", sa.String(length=16), nullable=False),
        mig.enum("status", "attemptstatus", "scheduled dialing finished unknown"),
        mig.enum(
            "result",
            "callresult",
            "answered no_answer busy congestion rejected unreachable failed",
            nullable=True,
        ),
        mig.enum("reply", "reply", "ok help callback no_response hung_up", nullable=True),
        sa.Column("hangup_cause", sa.Integer(), nullable=True),
        sa.Column("keys", sa.String(length=32), nullable=False),
        sa.Column("transcript", sa.Text(), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=True),
        mig.timestamp("scheduled_for"),
        mig.timestamp("originated_at", nullable=True),
        mig.timestamp("answered_at", nullable=True),
        mig.timestamp("ended_at", nullable=True),
        foreign_keys=[mig.References("checkin_id", "checkins")],
        unique=[["channel_id"], ["checkin_id", "attempt_no"]],
        indexes=["checkin_id", ("ix_call_attempts_due", ["status", "scheduled_for"])],
    )


def downgrade() -> None:
    mig.drop_table("call_attempts", "ix_call_attempts_due", "ix_call_attempts_checkin_id")
    mig.drop_table("checkins", "ix_checkins_resident_status")
    mig.drop_table("residents", "ix_residents_district_id")
    mig.drop_table("api_key_districts")
    mig.drop_table("districts")
    mig.drop_table("api_keys")
