"""nodes_attempt_node: every call attempt records the engine node that dialed it

Several Asterisk nodes: crash recovery asks the attempt's own node whether its channel still
exists (anbu.settings.NodeSettings, scheduler.dispatcher). NULL for attempts dialed before.

Revision ID: 0012_nodes_attempt_node
Revises: 0011_console_accounts
Create Date: 2026-12-04 21:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa

from anbu.db.migrations import helpers as mig

revision = "0012_nodes_attempt_node"
down_revision = "0011_console_accounts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    mig.add_columns("call_attempts", sa.Column("node", sa.String(length=32), nullable=True))


def downgrade() -> None:
    mig.drop_columns("call_attempts", "node")
