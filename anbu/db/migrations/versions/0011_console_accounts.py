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

import anbu.db.base

revision = "0011_console_accounts"
down_revision = "0010_net_sip_status"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "console_accounts",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("login", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column(
            "role",
            sa.Enum(
                "official",
                "district_admin",
                "analyst",
                name="consolerole",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("district_id", sa.Integer(), nullable=True),
        sa.Column("dong", sa.String(length=50), nullable=False),
        sa.Column("official_id", sa.String(length=32), nullable=True),
        sa.Column("password_hash", sa.String(length=200), nullable=True),
        sa.Column("invite_hash", sa.String(length=64), nullable=True),
        sa.Column("invite_expires_at", anbu.db.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        sa.Column("locked_at", anbu.db.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", anbu.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("last_login_at", anbu.db.base.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["district_id"],
            ["districts.id"],
            name=op.f("fk_console_accounts_district_id_districts"),
        ),
        sa.ForeignKeyConstraint(
            ["official_id"],
            ["officials.id"],
            name=op.f("fk_console_accounts_official_id_officials"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_accounts")),
        sa.UniqueConstraint("login", name=op.f("uq_console_accounts_login")),
        sa.UniqueConstraint("invite_hash", name=op.f("uq_console_accounts_invite_hash")),
    )
    op.create_table(
        "console_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("csrf", sa.String(length=64), nullable=False),
        sa.Column("created_at", anbu.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", anbu.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("client", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["console_accounts.id"],
            name=op.f("fk_console_sessions_account_id_console_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_sessions")),
    )
    with op.batch_alter_table("console_sessions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_console_sessions_account_id"), ["account_id"], unique=False
        )

    op.create_index(
        "ix_residents_district_name", "residents", ["district_id", "name", "id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_residents_district_name", table_name="residents")
    with op.batch_alter_table("console_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_console_sessions_account_id"))
    op.drop_table("console_sessions")
    op.drop_table("console_accounts")
