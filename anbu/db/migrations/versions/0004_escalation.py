"""escalation: officials, chains, incidents and their log, SMS outbox, inbound SMS, findings

Revision ID: 0004_escalation
Revises: 0003_scheduling
Create Date: 2026-11-25 12:54:36.383063
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import anbu.db.base

revision = "0004_escalation"
down_revision = "0003_scheduling"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sms_inbound",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("message_id", sa.String(length=64), nullable=True),
        sa.Column("sender", sa.String(length=24), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("received_at", anbu.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("incident_id", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sms_inbound")),
        sa.UniqueConstraint("message_id", name=op.f("uq_sms_inbound_message_id")),
    )
    op.create_table(
        "sms_outbox",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("reference", sa.String(length=64), nullable=False),
        sa.Column("incident_id", sa.String(length=32), nullable=True),
        sa.Column("official_id", sa.String(length=32), nullable=True),
        sa.Column("to", sa.String(length=16), nullable=False),
        sa.Column("sender", sa.String(length=16), nullable=False),
        sa.Column(
            "kind",
            sa.Enum("SMS", "LMS", name="smskind", native_enum=False, length=32),
            nullable=False,
        ),
        sa.Column("subject", sa.String(length=100), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("ack_timeout_s", sa.Integer(), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "sending",
                "sent",
                "failed",
                name="outboxstatus",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", anbu.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("claim_token", sa.String(length=32), nullable=True),
        sa.Column("claimed_at", anbu.db.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("provider", sa.String(length=20), nullable=True),
        sa.Column("provider_message_id", sa.String(length=100), nullable=True),
        sa.Column("refused_by", sa.String(length=100), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", anbu.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("sent_at", anbu.db.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column(
            "delivery",
            sa.Enum(
                "delivered",
                "undeliverable",
                "buffered",
                "accepted",
                "rejected",
                name="deliverystatus",
                native_enum=False,
                length=32,
            ),
            nullable=True,
        ),
        sa.Column("delivery_at", anbu.db.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("accepted_report_at", anbu.db.base.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sms_outbox")),
        sa.UniqueConstraint("reference", name=op.f("uq_sms_outbox_reference")),
    )
    with op.batch_alter_table("sms_outbox", schema=None) as batch_op:
        batch_op.create_index("ix_sms_outbox_due", ["status", "next_attempt_at"], unique=False)
        batch_op.create_index("ix_sms_outbox_incident", ["incident_id"], unique=False)

    op.create_table(
        "escalation_chains",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("district_id", sa.Integer(), nullable=False),
        sa.Column("dong", sa.String(length=50), nullable=False),
        sa.Column("created_at", anbu.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", anbu.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["district_id"],
            ["districts.id"],
            name=op.f("fk_escalation_chains_district_id_districts"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_escalation_chains")),
        sa.UniqueConstraint("district_id", "dong", name=op.f("uq_escalation_chains_district_id")),
    )
    op.create_table(
        "officials",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("district_id", sa.Integer(), nullable=False),
        sa.Column("dong", sa.String(length=50), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("phone", sa.String(length=16), nullable=False),
        sa.Column(
            "role",
            sa.Enum("dong", "gu", "centre", name="officialrole", native_enum=False, length=32),
            nullable=False,
        ),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", anbu.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["district_id"], ["districts.id"], name=op.f("fk_officials_district_id_districts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_officials")),
    )
    with op.batch_alter_table("officials", schema=None) as batch_op:
        batch_op.create_index("ix_officials_district_dong", ["district_id", "dong"], unique=False)
        batch_op.create_index(batch_op.f("ix_officials_phone"), ["phone"], unique=False)

    op.create_table(
        "escalation_steps",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("chain_id", sa.String(length=32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("official_id", sa.String(length=32), nullable=False),
        sa.Column("ack_timeout_s", sa.Integer(), nullable=False),
        sa.Column("duty_days", sa.String(length=7), nullable=False),
        sa.Column("duty_start_min", sa.Integer(), nullable=False),
        sa.Column("duty_end_min", sa.Integer(), nullable=False),
        sa.Column("duty_on_holidays", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["chain_id"],
            ["escalation_chains.id"],
            name=op.f("fk_escalation_steps_chain_id_escalation_chains"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["official_id"],
            ["officials.id"],
            name=op.f("fk_escalation_steps_official_id_officials"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_escalation_steps")),
        sa.UniqueConstraint("chain_id", "position", name=op.f("uq_escalation_steps_chain_id")),
    )
    op.create_table(
        "incidents",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("checkin_id", sa.String(length=32), nullable=False),
        sa.Column("resident_id", sa.String(length=32), nullable=False),
        sa.Column("district_id", sa.Integer(), nullable=False),
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
            nullable=False,
        ),
        sa.Column(
            "urgency",
            sa.Enum("urgent", "normal", name="urgency", native_enum=False, length=32),
            nullable=False,
        ),
        sa.Column(
            "status",
            sa.Enum(
                "open",
                "acknowledged",
                "exhausted",
                name="incidentstatus",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("code", sa.String(length=8), nullable=False),
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.Column("step_position", sa.Integer(), nullable=True),
        sa.Column("step_count", sa.Integer(), nullable=False),
        sa.Column("current_message_id", sa.String(length=32), nullable=True),
        sa.Column("ack_due_at", anbu.db.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("case_closed_at", anbu.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("opened_at", anbu.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("acknowledged_at", anbu.db.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_by", sa.String(length=32), nullable=True),
        sa.Column(
            "ack_channel",
            sa.Enum("sms", "link", name="ackchannel", native_enum=False, length=32),
            nullable=True,
        ),
        sa.Column(
            "finding",
            sa.Enum(
                "safe",
                "visited",
                "hospitalised",
                "died",
                "false_alarm",
                name="finding",
                native_enum=False,
                length=32,
            ),
            nullable=True,
        ),
        sa.Column("finding_note", sa.Text(), nullable=True),
        sa.Column("finding_at", anbu.db.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("closed_at", anbu.db.base.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["acknowledged_by"],
            ["officials.id"],
            name=op.f("fk_incidents_acknowledged_by_officials"),
        ),
        sa.ForeignKeyConstraint(
            ["checkin_id"], ["checkins.id"], name=op.f("fk_incidents_checkin_id_checkins")
        ),
        sa.ForeignKeyConstraint(
            ["district_id"], ["districts.id"], name=op.f("fk_incidents_district_id_districts")
        ),
        sa.ForeignKeyConstraint(
            ["resident_id"], ["residents.id"], name=op.f("fk_incidents_resident_id_residents")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incidents")),
        sa.UniqueConstraint("checkin_id", name=op.f("uq_incidents_checkin_id")),
        sa.UniqueConstraint("token", name=op.f("uq_incidents_token")),
    )
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.create_index("ix_incidents_code_status", ["code", "status"], unique=False)
        batch_op.create_index(batch_op.f("ix_incidents_district_id"), ["district_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_incidents_resident_id"), ["resident_id"], unique=False)
        batch_op.create_index("ix_incidents_status_due", ["status", "ack_due_at"], unique=False)

    op.create_table(
        "incident_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("incident_id", sa.String(length=32), nullable=False),
        sa.Column("at", anbu.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "opened",
                "queued",
                "sent",
                "delivered",
                "failed",
                "escalated",
                "acknowledged",
                "finding",
                "exhausted",
                "no_chain",
                "reply",
                name="incidenteventkind",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("official_id", sa.String(length=32), nullable=True),
        sa.Column("message_id", sa.String(length=32), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_incident_events_incident_id_incidents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incident_events")),
    )
    with op.batch_alter_table("incident_events", schema=None) as batch_op:
        batch_op.create_index("ix_incident_events_incident_at", ["incident_id", "at"], unique=False)

    op.create_table(
        "resident_findings",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("resident_id", sa.String(length=32), nullable=False),
        sa.Column("incident_id", sa.String(length=32), nullable=False),
        sa.Column("official_id", sa.String(length=32), nullable=True),
        sa.Column(
            "finding",
            sa.Enum(
                "safe",
                "visited",
                "hospitalised",
                "died",
                "false_alarm",
                name="finding",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("at", anbu.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_resident_findings_incident_id_incidents"),
        ),
        sa.ForeignKeyConstraint(
            ["resident_id"],
            ["residents.id"],
            name=op.f("fk_resident_findings_resident_id_residents"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_resident_findings")),
    )
    with op.batch_alter_table("resident_findings", schema=None) as batch_op:
        batch_op.create_index(
            "ix_resident_findings_resident_at", ["resident_id", "at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("resident_findings", schema=None) as batch_op:
        batch_op.drop_index("ix_resident_findings_resident_at")

    op.drop_table("resident_findings")
    with op.batch_alter_table("incident_events", schema=None) as batch_op:
        batch_op.drop_index("ix_incident_events_incident_at")

    op.drop_table("incident_events")
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.drop_index("ix_incidents_status_due")
        batch_op.drop_index(batch_op.f("ix_incidents_resident_id"))
        batch_op.drop_index(batch_op.f("ix_incidents_district_id"))
        batch_op.drop_index("ix_incidents_code_status")

    op.drop_table("incidents")
    op.drop_table("escalation_steps")
    with op.batch_alter_table("officials", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_officials_phone"))
        batch_op.drop_index("ix_officials_district_dong")

    op.drop_table("officials")
    op.drop_table("escalation_chains")
    with op.batch_alter_table("sms_outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_sms_outbox_incident")
        batch_op.drop_index("ix_sms_outbox_due")

    op.drop_table("sms_outbox")
    op.drop_table("sms_inbound")
