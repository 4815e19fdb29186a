"""evidence_rule_findings: officials' findings counted per district, channel and rule

Grading reads it to tighten a lone LOW on a channel whose alerts officials found to be noise
(anbu.domain.feedback.strict_low_channels).

Revision ID: 0012_evidence_rule_findings
Revises: 0011_console_accounts
Create Date: 2026-12-04 21:50:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import anbu.db.base

revision = "0012_evidence_rule_findings"
down_revision = "0011_console_accounts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rule_findings",
        sa.Column("district_id", sa.Integer(), nullable=False),
        sa.Column(
            "channel",
            sa.Enum(
                "calls",
                "steps",
                "power",
                "light",
                "motion",
                name="channel",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("rule", sa.String(length=16), nullable=False),
        sa.Column("false_alarms", sa.Integer(), nullable=False),
        sa.Column("true_alarms", sa.Integer(), nullable=False),
        sa.Column("updated_at", anbu.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["district_id"],
            ["districts.id"],
            name=op.f("fk_rule_findings_district_id_districts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("district_id", "channel", "rule", name=op.f("pk_rule_findings")),
    )


def downgrade() -> None:
    op.drop_table("rule_findings")
