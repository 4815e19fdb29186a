"""escalation: officials, chains, incidents and their log, SMS outbox, inbound SMS, findings

Revision ID: 0004_escalation
Revises: 0003_scheduling
Create Date: 2026-11-25 12:54:36.383063
"""

from __future__ import annotations

import sqlalchemy as sa

from anbu.db.migrations import helpers as mig

revision = "0004_escalation"
down_revision = "0003_scheduling"
branch_labels = None
depends_on = None

_FINDING = "safe visited hospitalised died false_alarm"


def upgrade() -> None:
    mig.create_table(
        "sms_inbound",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("message_id", sa.String(length=64), nullable=True),
        sa.Column("sender", sa.String(length=24), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        mig.timestamp("received_at"),
        mig.id_column("incident_id", nullable=True),
        unique=[["message_id"]],
    )
    mig.create_table(
        "sms_outbox",
        mig.id_column("id"),
        sa.Column("reference", sa.String(length=64), nullable=False),
        mig.id_column("incident_id", nullable=True),
        mig.id_column("official_id", nullable=True),
        sa.Column("to", sa.String(length=16), nullable=False),
        sa.Column("sender", sa.String(length=16), nullable=False),
        mig.enum("kind", "smskind", "SMS LMS"),
        sa.Column("subject", sa.String(length=100), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("ack_timeout_s", sa.Integer(), nullable=True),
        mig.enum("status", "outboxstatus", "pending sending sent failed"),
        sa.Column("attempts", sa.Integer(), nullable=False),
        mig.timestamp("next_attempt_at"),
        sa.Column("claim_token", sa.String(length=32), nullable=True),
        mig.timestamp("claimed_at", nullable=True),
        sa.Column("provider", sa.String(length=20), nullable=True),
        sa.Column("provider_message_id", sa.String(length=100), nullable=True),
        sa.Column("refused_by", sa.String(length=100), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        mig.timestamp("created_at"),
        mig.timestamp("sent_at", nullable=True),
        mig.enum(
            "delivery",
            "deliverystatus",
            "delivered undeliverable buffered accepted rejected",
            nullable=True,
        ),
        mig.timestamp("delivery_at", nullable=True),
        mig.timestamp("accepted_report_at", nullable=True),
        unique=[["reference"]],
        indexes=[
            ("ix_sms_outbox_due", ["status", "next_attempt_at"]),
            ("ix_sms_outbox_incident", ["incident_id"]),
        ],
    )
    mig.create_table(
        "escalation_chains",
        mig.id_column("id"),
        sa.Column("district_id", sa.Integer(), nullable=False),
        sa.Column("dong", sa.String(length=50), nullable=False),
        mig.timestamp("created_at"),
        mig.timestamp("updated_at"),
        foreign_keys=[mig.References("district_id", "districts")],
        unique=[["district_id", "dong"]],
    )
    mig.create_table(
        "officials",
        mig.id_column("id"),
        sa.Column("district_id", sa.Integer(), nullable=False),
        sa.Column("dong", sa.String(length=50), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("phone", sa.String(length=16), nullable=False),
        mig.enum("role", "officialrole", "dong gu centre"),
        sa.Column("active", sa.Boolean(), nullable=False),
        mig.timestamp("created_at"),
        foreign_keys=[mig.References("district_id", "districts")],
        indexes=[("ix_officials_district_dong", ["district_id", "dong"]), "phone"],
    )
    mig.create_table(
        "escalation_steps",
        mig.id_column("id"),
        mig.id_column("chain_id"),
        sa.Column("position", sa.Integer(), nullable=False),
        mig.id_column("official_id"),
        sa.Column("ack_timeout_s", sa.Integer(), nullable=False),
        sa.Column("duty_days", sa.String(length=7), nullable=False),
        sa.Column("duty_start_min", sa.Integer(), nullable=False),
        sa.Column("duty_end_min", sa.Integer(), nullable=False),
        sa.Column("duty_on_holidays", sa.Boolean(), nullable=False),
        foreign_keys=[
            mig.References("chain_id", "escalation_chains", ondelete="CASCADE"),
            mig.References("official_id", "officials"),
        ],
        unique=[["chain_id", "position"]],
    )
    mig.create_table(
        "incidents",
        mig.id_column("id"),
        mig.id_column("checkin_id"),
        mig.id_column("resident_id"),
        sa.Column("district_id", sa.Integer(), nullable=False),
        mig.enum(
            "outcome", "outcome", "ok help callback no_response unreachable declined invalid_number"
        ),
        mig.enum("urgency", "urgency", "urgent normal"),
        mig.enum("status", "incidentstatus", "open acknowledged exhausted"),
        sa.Column("code", sa.String(length=8), nullable=False),
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.Column("step_position", sa.Integer(), nullable=True),
        sa.Column("step_count", sa.Integer(), nullable=False),
        mig.id_column("current_message_id", nullable=True),
        mig.timestamp("ack_due_at", nullable=True),
        mig.timestamp("case_closed_at"),
        mig.timestamp("opened_at"),
        mig.timestamp("acknowledged_at", nullable=True),
        mig.id_column("acknowledged_by", nullable=True),
        mig.enum("ack_channel", "ackchannel", "sms link", nullable=True),
        mig.enum("finding", "finding", _FINDING, nullable=True),
        sa.Column("finding_note", sa.Text(), nullable=True),
        mig.timestamp("finding_at", nullable=True),
        mig.timestamp("closed_at", nullable=True),
        foreign_keys=[
            mig.References("acknowledged_by", "officials"),
            mig.References("checkin_id", "checkins"),
            mig.References("district_id", "districts"),
            mig.References("resident_id", "residents"),
        ],
        unique=[["checkin_id"], ["token"]],
        indexes=[
            ("ix_incidents_code_status", ["code", "status"]),
            "district_id",
            "resident_id",
            ("ix_incidents_status_due", ["status", "ack_due_at"]),
        ],
    )
    mig.create_table(
        "incident_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        mig.id_column("incident_id"),
        mig.timestamp("at"),
        mig.enum(
            "kind",
            "incidenteventkind",
            "opened queued sent delivered failed escalated acknowledged finding exhausted"
            " no_chain reply",
        ),
        mig.id_column("official_id", nullable=True),
        mig.id_column("message_id", nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        foreign_keys=[mig.References("incident_id", "incidents", ondelete="CASCADE")],
        indexes=[("ix_incident_events_incident_at", ["incident_id", "at"])],
    )
    mig.create_table(
        "resident_findings",
        mig.id_column("id"),
        mig.id_column("resident_id"),
        mig.id_column("incident_id"),
        mig.id_column("official_id", nullable=True),
        mig.enum("finding", "finding", _FINDING),
        sa.Column("note", sa.Text(), nullable=False),
        mig.timestamp("at"),
        foreign_keys=[
            mig.References("incident_id", "incidents"),
            mig.References("resident_id", "residents"),
        ],
        indexes=[("ix_resident_findings_resident_at", ["resident_id", "at"])],
    )


def downgrade() -> None:
    mig.drop_table("resident_findings", "ix_resident_findings_resident_at")
    mig.drop_table("incident_events", "ix_incident_events_incident_at")
    mig.drop_table(
        "incidents",
        "ix_incidents_status_due",
        "ix_incidents_resident_id",
        "ix_incidents_district_id",
        "ix_incidents_code_status",
    )
    mig.drop_table("escalation_steps")
    mig.drop_table("officials", "ix_officials_phone", "ix_officials_district_dong")
    mig.drop_table("escalation_chains")
    mig.drop_table("sms_outbox", "ix_sms_outbox_incident", "ix_sms_outbox_due")
    mig.drop_table("sms_inbound")
