"""api_access: API key scopes, expiry, last use and webhook; the append-only access log;
the outcome webhooks' outbox

Revision ID: 0006_api_access
Revises: 0005_status_due
Create Date: 2026-12-02 11:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from anbu.db.migrations import helpers as mig

revision = "0006_api_access"
down_revision = "0005_status_due"
branch_labels = None
depends_on = None


def upgrade() -> None:
    mig.add_columns(
        "api_keys",
        sa.Column("scopes", sa.String(length=64), nullable=False, server_default="read,write"),
        mig.timestamp("expires_at", nullable=True),
        mig.timestamp("last_used_at", nullable=True),
        sa.Column("webhook_url", sa.String(length=2000), nullable=True),
        sa.Column("webhook_secret", sa.String(length=64), nullable=True),
    )
    keys = sa.table("api_keys", sa.column("is_admin", sa.Boolean()), sa.column("scopes"))
    op.execute(keys.update().where(keys.c.is_admin.is_(True)).values(scopes="read,write,admin"))

    mig.create_table(
        "webhook_outbox",
        mig.id_column("id"),
        mig.id_column("event_id"),
        sa.Column("api_key_id", sa.Integer(), nullable=False),
        sa.Column("event_type", sa.String(length=40), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        mig.timestamp("next_attempt_at"),
        sa.Column("claim_token", sa.String(length=32), nullable=True),
        mig.timestamp("claimed_at", nullable=True),
        mig.timestamp("created_at"),
        mig.timestamp("delivered_at", nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        foreign_keys=[mig.References("api_key_id", "api_keys", ondelete="CASCADE")],
        unique=[["event_id", "api_key_id"]],
    )
    op.create_index(
        "ix_webhook_outbox_due", "webhook_outbox", ["status", "next_attempt_at"], unique=False
    )

    mig.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        mig.timestamp("at"),
        sa.Column("actor_kind", sa.String(length=32), nullable=False),
        sa.Column("actor_id", sa.String(length=64), nullable=False),
        sa.Column("actor_name", sa.String(length=100), nullable=False),
        sa.Column("client", sa.String(length=64), nullable=False),
        sa.Column("method", sa.String(length=8), nullable=False),
        sa.Column("route", sa.String(length=200), nullable=False),
        sa.Column("resource_type", sa.String(length=32), nullable=False),
        sa.Column("resource_id", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("district_id", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.String(length=100), nullable=False),
    )
    op.create_index("ix_audit_log_resource", "audit_log", ["resource_type", "resource_id", "id"])
    op.create_index("ix_audit_log_actor", "audit_log", ["actor_kind", "actor_id", "id"])
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    if op.get_bind().dialect.name == "postgresql":
        # Append-only, enforced by the server: no UPDATE, no TRUNCATE; DELETE only from the
        # retention purge (it sets anbu.audit_purge for its own transaction) and only for rows
        # older than 30 days, whatever the configured keep says.
        op.execute(
            """
            CREATE FUNCTION anbu_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF TG_OP = 'DELETE' THEN
                    IF coalesce(current_setting('anbu.audit_purge', true), '') = 'on'
                       AND OLD.at < now() - interval '30 days' THEN
                        RETURN OLD;
                    END IF;
                END IF;
                RAISE EXCEPTION 'audit_log is append-only (% refused)', TG_OP
                    USING ERRCODE = 'insufficient_privilege';
            END $$
            """
        )
        op.execute(
            "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log"
            " FOR EACH ROW EXECUTE FUNCTION anbu_audit_append_only()"
        )
        op.execute(
            "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log"
            " FOR EACH STATEMENT EXECUTE FUNCTION anbu_audit_append_only()"
        )
    else:
        # SQLite: UPDATE is refused here too; DELETE is guarded by code only (see
        # anbu.db.models_audit for why).
        op.execute(
            "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log"
            " BEGIN SELECT RAISE(ABORT, 'audit_log is append-only (UPDATE refused)'); END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log")
        op.execute("DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log")
        op.execute("DROP FUNCTION IF EXISTS anbu_audit_append_only()")
    op.drop_table("audit_log")
    op.drop_index("ix_webhook_outbox_due", table_name="webhook_outbox")
    op.drop_table("webhook_outbox")
    mig.drop_columns(
        "api_keys", "webhook_secret", "webhook_url", "last_used_at", "expires_at", "scopes"
    )
