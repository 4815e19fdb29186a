"""voice_accessibility: a resident's voice profile (louder, slower, one more ask)

Revision ID: 0012_voice_accessibility
Revises: 0012_evidence_findings_id_scope
Create Date: 2026-12-04 21:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from anbu.db.migrations import helpers as mig

revision = "0012_voice_accessibility"
down_revision = "0012_evidence_findings_id_scope"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "resident_voice",
        mig.id_column("resident_id"),
        sa.Column("gain_db", sa.Float(), nullable=False),
        sa.Column("tempo", sa.Float(), nullable=False),
        sa.Column("extra_repeats", sa.Integer(), nullable=False),
        mig.timestamp("updated_at"),
        # Unnamed, as this revision was released (PostgreSQL named them itself); create_table
        # would name them.
        sa.ForeignKeyConstraint(["resident_id"], ["residents.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("resident_id"),
    )


def downgrade() -> None:
    op.drop_table("resident_voice")
