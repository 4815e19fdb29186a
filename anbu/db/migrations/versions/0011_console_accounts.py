"""console_accounts: officials' console accounts and their server-side sessions

Passwords are stored as argon2id hashes, session cookies and invitation links as SHA-256.
See anbu.console.accounts. Also ix_residents_district_name: the console's resident list,
by name within a district.

Revision ID: 0011_console_accounts
Revises: 0010_net_sip_status
Create Date: 2026-12-02 12:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from anbu.db.migrations import helpers as mig

revision = "0011_console_accounts"
down_revision = "0010_net_sip_status"
branch_labels = None
depends_on = None


def upgrade() -> None:
    mig.create_table(
        "console_accounts",
        mig.id_column("id"),
        sa.Column("login", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        mig.enum("role", "consolerole", "official district_admin analyst"),
        sa.Column("district_id", sa.Integer(), nullable=True),
        sa.Column("dong", sa.String(length=50), nullable=False),
        mig.id_column("official_id", nullable=True),
        sa.Column("password_hash", sa.String(length=200), nullable=True),
        sa.Column("invite_hash", sa.String(length=64), nullable=True),
        mig.timestamp("invite_expires_at", nullable=True),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        mig.timestamp("locked_at", nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        mig.timestamp("created_at"),
        mig.timestamp("last_login_at", nullable=True),
        foreign_keys=[
            mig.References("district_id", "districts"),
            mig.References("official_id", "officials"),
        ],
        unique=[["login"], ["invite_hash"]],
    )
    mig.create_table(
        "console_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        mig.id_column("account_id"),
        sa.Column("csrf", sa.String(length=64), nullable=False),
        mig.timestamp("created_at"),
        mig.timestamp("last_seen_at"),
        sa.Column("client", sa.String(length=64), nullable=False),
        foreign_keys=[mig.References("account_id", "console_accounts", ondelete="CASCADE")],
        indexes=["account_id"],
    )

    op.create_index(
        "ix_residents_district_name", "residents", ["district_id", "name", "id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_residents_district_name", table_name="residents")
    mig.drop_table("console_sessions", "ix_console_sessions_account_id")
    mig.drop_table("console_accounts")
