"""escalation: officials, chains, incidents and their log, SMS outbox, inbound SMS, findings

Revision ID: 0004_escalation
Revises: 0003_scheduling
Create Date: 2026-11-25 12:54:36.383063
"""

from __future__ import annotations

import sqlalchemy as sa

from anbu.db.migrations.helpers import References, create_table, drop_table, enum, timestamp

revision = "0004_escalation"
down_revision = "0003_scheduling"
branch_labels = None
depends_on = None

_FINDING = "safe visited hospitalised died false_alarm"


def upgrade() -> None:
    create_table(
        "sms_inbound",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("message_id", sa.String(length=64), nullable=True),
        sa.Column("sender", sa.String(length=24), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        timestamp("received_at"),
        sa.Column("incident_id", sa.String(length=32), nullable=True),
        unique=[["message_id"]],
    )
    create_table(
        "sms_outbox",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("reference", sa.String(length=64), nullable=False),
        sa.Column("incident_id", sa.String(length=32), nullable=True),
        sa.Column("official_id", sa.String(length=32), nullable=True),
        sa.Column("to", sa.String(length=16), nullable=False),
        sa.Column("sender", sa.String(length=16), nullable=False),
        enum("kind", "smskind", "SMS LMS"),
        sa.Column("subject", sa.String(length=100), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("ack_timeout_s", sa.Integer(), nullable=True),
        enum("status", "outboxstatus", "pending sending sent failed"),
        sa.Column("attempts", sa.Integer(), nullable=False),
        timestamp("next_attempt_at"),
        sa.Column("claim_token", sa.String(length=32), nullable=True),
        timestamp("claimed_at", nullable=True),
        sa.Column("provider", sa.String(length=20), nullable=True),
        sa.Column("provider_message_id", sa.String(length=100), nullable=True),
        sa.Column("refused_by", sa.String(length=100), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        timestamp("created_at"),
        timestamp("sent_at", nullable=True),
        enum(
            "delivery",
            "deliverystatus",
            "delivered undeliverable buffered accepted rejected",
            nullable=True,
        ),
        timestamp("delivery_at", nullable=True),
        timestamp("accepted_report_at", nullable=True),
        unique=[["reference"]],
        indexes=[
            ("ix_sms_outbox_due", ["status", "next_attempt_at"]),
            ("ix_sms_outbox_incident", ["incident_id"]),
        ],
    )
    create_table(
        "escalation_chains",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("district_id", sa.Integer(), nullable=False),
        sa.Column("dong", sa.String(length=50), nullable=False),
        timestamp("created_at"),
        timestamp("updated_at"),
        foreign_keys=[References("district_id", "districts")],
        unique=[["district_id", "dong"]],
    )
    create_table(
        "officials",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("district_id", sa.Integer(), nullable=False),
        sa.Column("dong", sa.String(length=50), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("phone", sa.String(length=16), nullable=False),
        enum("role", "officialrole", "dong gu centre"),
        sa.Column("active", sa.Boolean(), nullable=False),
        timestamp("created_at"),
        foreign_keys=[References("district_id", "districts")],
        indexes=[("ix_officials_district_dong", ["district_id", "dong"]), "phone"],
    )
    create_table(
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
        foreign_keys=[
            References("chain_id", "escalation_chains", ondelete="CASCADE"),
            References("official_id", "officials"),
        ],
        unique=[["chain_id", "position"]],
    )
    create_table(
        "incidents",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("checkin_id", sa.String(length=32), nullable=False),
        sa.Column("resident_id", sa.String(length=32), nullable=False),
        sa.Column("district_id", sa.Integer(), nullable=False),
        enum(
            "outcome", "outcome", "ok help callback no_response unreachable declined invalid_number"
        ),
        enum("urgency", "urgency", "urgent normal"),
        enum("status", "incidentstatus", "open acknowledged exhausted"),
        sa.Column("code", sa.String(length=8), nullable=False),
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.Column("step_position", sa.Integer(), nullable=True),
        sa.Column("step_count", sa.Integer(), nullable=False),
        sa.Column("current_message_id", sa.String(length=32), nullable=True),
        timestamp("ack_due_at", nullable=True),
        timestamp("case_closed_at"),
        timestamp("opened_at"),
        timestamp("acknowledged_at", nullable=True),
        sa.Column("acknowledged_by", sa.String(length=32), nullable=True),
        enum("ack_channel", "ackchannel", "sms link", nullable=True),
        enum("finding", "finding", _FINDING, nullable=True),
        sa.Column("finding_note", sa.Text(), nullable=True),
        timestamp("finding_at", nullable=True),
        timestamp("closed_at", nullable=True),
        foreign_keys=[
            References("acknowledged_by", "officials"),
            References("checkin_id", "checkins"),
            References("district_id", "districts"),
            References("resident_id", "residents"),
        ],
        unique=[["checkin_id"], ["token"]],
        indexes=[
            ("ix_incidents_code_status", ["code", "status"]),
            "district_id",
            "resident_id",
            ("ix_incidents_status_due", ["status", "ack_due_at"]),
        ],
    )
    create_table(
        "incident_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("incident_id", sa.String(length=32), nullable=False),
        timestamp("at"),
        enum(
            "kind",
            "incidenteventkind",
            "opened queued sent delivered failed escalated acknowledged finding exhausted"
            " no_chain reply",
        ),
        sa.Column("official_id", sa.String(length=32), nullable=True),
        sa.Column("message_id", sa.String(length=32), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        foreign_keys=[References("incident_id", "incidents", ondelete="CASCADE")],
        indexes=[("ix_incident_events_incident_at", ["incident_id", "at"])],
    )
    create_table(
        "resident_findings",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("resident_id", sa.String(length=32), nullable=False),
        sa.Column("incident_id", sa.String(length=32), nullable=False),
        sa.Column("official_id", sa.String(length=32), nullable=True),
        enum("finding", "finding", _FINDING),
        sa.Column("note", sa.Text(), nullable=False),
        timestamp("at"),
        foreign_keys=[
            References("incident_id", "incidents"),
            References("resident_id", "residents"),
        ],
        indexes=[("ix_resident_findings_resident_at", ["resident_id", "at"])],
    )


def downgrade() -> None:
    drop_table("resident_findings", "ix_resident_findings_resident_at")
    drop_table("incident_events", "ix_incident_events_incident_at")
    drop_table(
        "incidents",
        "ix_incidents_status_due",
        "ix_incidents_resident_id",
        "ix_incidents_district_id",
        "ix_incidents_code_status",
    )
    drop_table("escalation_steps")
    drop_table("officials", "ix_officials_phone", "ix_officials_district_dong")
    drop_table("escalation_chains")
    drop_table("sms_outbox", "ix_sms_outbox_incident", "ix_sms_outbox_due")
    drop_table("sms_inbound")
