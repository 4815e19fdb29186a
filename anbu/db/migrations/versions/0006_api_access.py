"""api_access: API key scopes, expiry and last use

Revision ID: 0006_api_access
Revises: 0005_status_due
Create Date: 2026-12-02 11:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import anbu.db.base

revision = "0006_api_access"
down_revision = "0005_status_due"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("scopes", sa.String(length=64), nullable=False, server_default="read,write")
        )
        batch_op.add_column(
            sa.Column("expires_at", anbu.db.base.UtcDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("last_used_at", anbu.db.base.UtcDateTime(timezone=True), nullable=True)
        )
    keys = sa.table("api_keys", sa.column("is_admin", sa.Boolean()), sa.column("scopes"))
    op.execute(keys.update().where(keys.c.is_admin.is_(True)).values(scopes="read,write,admin"))


def downgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("last_used_at")
        batch_op.drop_column("expires_at")
        batch_op.drop_column("scopes")
