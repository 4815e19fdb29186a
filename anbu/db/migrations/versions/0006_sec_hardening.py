"""sec_hardening: SMS reply tries and lockout, hashed single-use ack links, finding amendments

- ``incidents.sms_failures``: wrong codes replied for the incident (lockout);
- ``sms_inbound.outcome``: what each reply did (wrong tries per number are counted from it).

Revision ID: 0006_sec_hardening
Revises: 0005_status_due
Create Date: 2026-12-02 11:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_sec_hardening"
down_revision = "0005_status_due"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("sms_failures", sa.Integer(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("sms_inbound", schema=None) as batch_op:
        batch_op.add_column(sa.Column("outcome", sa.String(length=24), nullable=True))
        batch_op.create_index("ix_sms_inbound_sender_at", ["sender", "received_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("sms_inbound", schema=None) as batch_op:
        batch_op.drop_index("ix_sms_inbound_sender_at")
        batch_op.drop_column("outcome")
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.drop_column("sms_failures")
