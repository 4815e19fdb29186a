"""status_due: signal_states.quiet_due_at becomes status_due_at

The sweep's per-channel index key now says when time alone could change a channel's status (it
can turn LOW long before it can turn QUIET), not only when it could turn quiet. See
anbu.domain.risk.status_due_at.

Revision ID: 0005_status_due
Revises: 0004_escalation
Create Date: 2026-11-25 15:00:00.000000
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from alembic import op

import anbu.db.base
from anbu.db.migrations import helpers as mig

revision = "0005_status_due"
down_revision = "0004_escalation"
branch_labels = None
depends_on = None


def _rename_due_column(old: str, new: str) -> None:
    """``signal_states.<old>`` renamed ``<new>``, its index (``ix_signal_states_<column>``) with
    it. Two batches: SQLite's batch mode (a table copy) cannot index a column renamed in the
    same batch."""
    with op.batch_alter_table("signal_states", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f(f"ix_signal_states_{old}"))
        batch_op.alter_column(old, new_column_name=new)
    mig.create_indexes("signal_states", new)


def upgrade() -> None:
    _rename_due_column("quiet_due_at", "status_due_at")
    # The old values (last activity + window) can be later than the new due time, so keeping them
    # would hide residents who turned LOW in between until their next event. Recomputing here
    # would tie this migration to today's domain code. Instead every row is due now (earlier is
    # always safe): the next sweep grades its resident and stores the real due time it computes
    # (anbu.risk.sweep refreshes the due times of its candidates).
    states = sa.table(
        "signal_states", sa.column("status_due_at", anbu.db.base.UtcDateTime(timezone=True))
    )
    op.execute(states.update().values(status_due_at=dt.datetime.now(dt.UTC)))


def downgrade() -> None:
    # A status due time is never later than the quiet due time it replaces, so the old sweep
    # reading it as quiet_due_at only grades some residents earlier than it had to.
    _rename_due_column("status_due_at", "quiet_due_at")
