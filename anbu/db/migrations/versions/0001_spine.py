"""spine: districts, api keys, residents, check-ins, call attempts

Revision ID: 0001_spine
Revises:
Create Date: 2026-11-25 12:33:33.554076
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import anbu.db.base

revision = "0001_spine"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("is_admin", sa.Boolean(), nullable=False),
        sa.Column("created_at", anbu.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", anbu.db.base.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
    )
    op.create_table(
        "districts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("created_at", anbu.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_districts")),
        sa.UniqueConstraint("code", name=op.f("uq_districts_code")),
    )
    op.create_table(
        "api_key_districts",
        sa.Column("api_key_id", sa.Integer(), nullable=False),
        sa.Column("district_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["api_key_id"],
            ["api_keys.id"],
            name=op.f("fk_api_key_districts_api_key_id_api_keys"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["district_id"],
            ["districts.id"],
            name=op.f("fk_api_key_districts_district_id_districts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("api_key_id", "district_id", name=op.f("pk_api_key_districts")),
    )
    op.create_table(
        "residents",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("district_id", sa.Integer(), nullable=False),
        sa.Column("external_ref", sa.String(length=64), nullable=True),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("phone", sa.String(length=16), nullable=False),
        sa.Column("dong", sa.String(length=50), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", anbu.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", anbu.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["district_id"], ["districts.id"], name=op.f("fk_residents_district_id_districts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_residents")),
        sa.UniqueConstraint("district_id", "external_ref", name=op.f("uq_residents_district_id")),
    )
    with op.batch_alter_table("residents", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_residents_district_id"), ["district_id"], unique=False)

    op.create_table(
        "checkins",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("resident_id", sa.String(length=32), nullable=False),
        sa.Column(
            "source",
            sa.Enum(
                "api",
                "signal",
                "routine",
                "self_test",
                name="checkinsource",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "dialing",
                "completed",
                "exhausted",
                "cancelled",
                name="checkinstatus",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column(
            "outcome",
            sa.Enum(
                "ok",
                "help",
                "callback",
                "no_response",
                "unreachable",
                "declined",
                "invalid_number",
                name="outcome",
                native_enum=False,
                length=32,
            ),
            nullable=True,
        ),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("created_at", anbu.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", anbu.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("closed_at", anbu.db.base.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["resident_id"], ["residents.id"], name=op.f("fk_checkins_resident_id_residents")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_checkins")),
    )
    with op.batch_alter_table("checkins", schema=None) as batch_op:
        batch_op.create_index(
            "ix_checkins_resident_status", ["resident_id", "status"], unique=False
        )

    op.create_table(
        "call_attempts",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("checkin_id", sa.String(length=32), nullable=False),
        sa.Column("attempt_no", sa.Integer(), nullable=False),
        sa.Column("channel_id", sa.String(length=64), nullable=False),
        sa.Column("number", sa.String(length=16), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "scheduled",
                "dialing",
                "finished",
                "unknown",
                name="attemptstatus",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column(
            "result",
            sa.Enum(
                "answered",
                "no_answer",
                "busy",
                "congestion",
                "rejected",
                "unreachable",
                "failed",
                name="callresult",
                native_enum=False,
                length=32,
            ),
            nullable=True,
        ),
        sa.Column(
            "reply",
            sa.Enum(
                "ok",
                "help",
                "callback",
                "no_response",
                "hung_up",
                name="reply",
                native_enum=False,
                length=32,
            ),
            nullable=True,
        ),
        sa.Column("hangup_cause", sa.Integer(), nullable=True),
        sa.Column("keys", sa.String(length=32), nullable=False),
        sa.Column("transcript", sa.Text(), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("scheduled_for", anbu.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("originated_at", anbu.db.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("answered_at", anbu.db.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("ended_at", anbu.db.base.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["checkin_id"], ["checkins.id"], name=op.f("fk_call_attempts_checkin_id_checkins")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_call_attempts")),
        sa.UniqueConstraint("channel_id", name=op.f("uq_call_attempts_channel_id")),
        sa.UniqueConstraint("checkin_id", "attempt_no", name=op.f("uq_call_attempts_checkin_id")),
    )
    with op.batch_alter_table("call_attempts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_call_attempts_checkin_id"), ["checkin_id"], unique=False
        )
        batch_op.create_index("ix_call_attempts_due", ["status", "scheduled_for"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("call_attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_call_attempts_due")
        batch_op.drop_index(batch_op.f("ix_call_attempts_checkin_id"))

    op.drop_table("call_attempts")
    with op.batch_alter_table("checkins", schema=None) as batch_op:
        batch_op.drop_index("ix_checkins_resident_status")

    op.drop_table("checkins")
    with op.batch_alter_table("residents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_residents_district_id"))

    op.drop_table("residents")
    op.drop_table("api_key_districts")
    op.drop_table("districts")
    op.drop_table("api_keys")
