"""net: call_attempts.sip_status, what the far end's SIP said

The attempt's result is read from the far end's last SIP status (480 phone off, 404 no such
number, ...) as much as from the Q.850 cause; keeping the status on the attempt lets an official
or an administrator see what the network actually said. See anbu.domain.calls.

Revision ID: 0010_net_sip_status
Revises: 0009_report_feedback
Create Date: 2026-12-02 11:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa

from anbu.db.migrations import helpers as mig

revision = "0010_net_sip_status"
down_revision = "0009_report_feedback"
branch_labels = None
depends_on = None


def upgrade() -> None:
    mig.add_columns("call_attempts", sa.Column("sip_status", sa.Integer(), nullable=True))


def downgrade() -> None:
    mig.drop_columns("call_attempts", "sip_status")
