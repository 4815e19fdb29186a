"""evidence: findings counted per district and rule; event and device ids namespaced per district

- ``rule_findings``: officials' findings counted per district, channel and rule. Grading reads
  it to tighten a lone LOW on a channel whose alerts officials found to be noise
  (anbu.domain.feedback.strict_low_channels).
- ``devices.district_id`` (the owner's district) and unique (district_id, device_id) instead of
  a globally unique device_id: two districts may register the same vendor id.
- ``signal_events.event_id`` is stored qualified by the resident's district
  (``<district id>/<id as sent>``, anbu.risk.ingest.stored_event_id), so the unique
  (source, event_id) deduplicates within a district only; the stored rows are rewritten so.

Revision ID: 0012_evidence_findings_id_scope
Revises: 0012_nodes_attempt_node
Create Date: 2026-12-04 21:50:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from anbu.db.migrations import helpers as mig

revision = "0012_evidence_findings_id_scope"
down_revision = "0012_nodes_attempt_node"
branch_labels = None
depends_on = None

# An event whose resident is gone (events carry no foreign key) goes to district "0".
_QUALIFIED = (
    "COALESCE((SELECT CAST(r.district_id AS VARCHAR(12)) FROM residents r"
    " WHERE r.id = signal_events.resident_id), '0') || '/' || event_id"
)


def _event_id_length(old: int, new: int) -> None:
    with op.batch_alter_table("signal_events", schema=None) as batch_op:
        batch_op.alter_column(
            "event_id",
            existing_type=sa.String(length=old),
            type_=sa.String(length=new),
            existing_nullable=False,
        )


def upgrade() -> None:
    mig.create_table(
        "rule_findings",
        sa.Column("district_id", sa.Integer(), nullable=False),
        mig.enum("channel", "channel", "calls steps power light motion"),
        sa.Column("rule", sa.String(length=16), nullable=False),
        sa.Column("false_alarms", sa.Integer(), nullable=False),
        sa.Column("true_alarms", sa.Integer(), nullable=False),
        mig.timestamp("updated_at"),
        primary_key=["district_id", "channel", "rule"],
        foreign_keys=[mig.References("district_id", "districts", ondelete="CASCADE")],
    )

    mig.add_columns("devices", sa.Column("district_id", sa.Integer(), nullable=True))
    op.execute(
        "UPDATE devices SET district_id ="
        " (SELECT r.district_id FROM residents r WHERE r.id = devices.resident_id)"
    )
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.alter_column("district_id", existing_type=sa.Integer(), nullable=False)
        batch_op.drop_constraint("uq_devices_device_id", type_="unique")
        batch_op.create_unique_constraint(
            batch_op.f("uq_devices_district_id"), ["district_id", "device_id"]
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_devices_district_id_districts"), "districts", ["district_id"], ["id"]
        )

    _event_id_length(128, 160)
    op.execute(f"UPDATE signal_events SET event_id = {_QUALIFIED}")


def downgrade() -> None:
    bind = op.get_bind()
    slash = "INSTR(event_id, '/')" if bind.dialect.name == "sqlite" else "STRPOS(event_id, '/')"
    # Back to global ids: strip the district qualifier (fails on a pair of districts that
    # used the same id, which the old schema cannot hold).
    op.execute(f"UPDATE signal_events SET event_id = SUBSTR(event_id, {slash} + 1)")
    _event_id_length(160, 128)
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_devices_district_id_districts"), type_="foreignkey")
        batch_op.drop_constraint(batch_op.f("uq_devices_district_id"), type_="unique")
        batch_op.create_unique_constraint("uq_devices_device_id", ["device_id"])
        batch_op.drop_column("district_id")
    op.drop_table("rule_findings")
