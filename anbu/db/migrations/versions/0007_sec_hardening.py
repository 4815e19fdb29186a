"""sec_hardening: SMS reply tries and lockout, hashed single-use ack links, finding amendments

- ``incidents.sms_failures``: wrong codes replied for the incident (lockout);
- ``sms_inbound.outcome``: what each reply did (wrong tries per number are counted from it);
- ``ack_links``: one link per SMS, only the SHA-256 of its token stored, with an expiry and
  the time it was used. Existing incidents' plain tokens move here hashed (their links keep
  working until 72 hours after the incident opened) and ``incidents.token`` is dropped;
- ``finding_amendments``: a finding changed after it was recorded (who, when, before, after).

Revision ID: 0007_sec_hardening
Revises: 0006_api_access
Create Date: 2026-12-02 11:00:00.000000
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid

import sqlalchemy as sa
from alembic import op

import anbu.db.base
from anbu.db.migrations import helpers as mig

revision = "0007_sec_hardening"
down_revision = "0006_api_access"
branch_labels = None
depends_on = None

_TS = anbu.db.base.UtcDateTime(timezone=True)
_FINDING = "safe visited hospitalised died false_alarm"


def upgrade() -> None:
    mig.add_columns(
        "incidents", sa.Column("sms_failures", sa.Integer(), nullable=False, server_default="0")
    )
    with op.batch_alter_table("sms_inbound", schema=None) as batch_op:
        batch_op.add_column(sa.Column("outcome", sa.String(length=24), nullable=True))
        batch_op.create_index("ix_sms_inbound_sender_at", ["sender", "received_at"], unique=False)

    links = mig.create_table(
        "ack_links",
        mig.id_column("id"),
        mig.id_column("incident_id"),
        mig.id_column("official_id", nullable=True),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        mig.timestamp("created_at"),
        mig.timestamp("expires_at"),
        mig.timestamp("used_at", nullable=True),
        foreign_keys=[mig.References("incident_id", "incidents", ondelete="CASCADE")],
        unique=[["token_hash"]],
    )
    op.create_index(op.f("ix_ack_links_incident_id"), "ack_links", ["incident_id"])
    mig.create_table(
        "finding_amendments",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        mig.id_column("incident_id"),
        mig.id_column("link_id", nullable=True),
        mig.id_column("official_id", nullable=True),
        mig.timestamp("at"),
        mig.enum("finding_before", "finding", _FINDING, nullable=True),
        mig.enum("finding_after", "finding", _FINDING),
        sa.Column("note_before", sa.Text(), nullable=False),
        sa.Column("note_after", sa.Text(), nullable=False),
        foreign_keys=[mig.References("incident_id", "incidents", ondelete="CASCADE")],
    )
    op.create_index(
        op.f("ix_finding_amendments_incident_id"), "finding_amendments", ["incident_id"]
    )

    # Existing plain tokens: hashed into ack_links, then the plain column goes.
    incidents = sa.table(
        "incidents",
        sa.column("id", sa.String),
        sa.column("token", sa.String),
        sa.column("opened_at", _TS),
        sa.column("acknowledged_at", _TS),
        sa.column("ack_channel", sa.String),
    )
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(
            incidents.c.id,
            incidents.c.token,
            incidents.c.opened_at,
            incidents.c.acknowledged_at,
            incidents.c.ack_channel,
        )
    ).all()
    if rows:
        op.bulk_insert(
            links,
            [
                {
                    "id": uuid.uuid4().hex,
                    "incident_id": r.id,
                    "official_id": None,
                    "token_hash": hashlib.sha256(r.token.encode()).hexdigest(),
                    "created_at": r.opened_at,
                    "expires_at": r.opened_at + dt.timedelta(hours=72),
                    "used_at": r.acknowledged_at if r.ack_channel == "link" else None,
                }
                for r in rows
            ],
        )
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.drop_constraint("uq_incidents_token", type_="unique")
        batch_op.drop_column("token")


def downgrade() -> None:
    # Plain tokens cannot be recovered from their hashes: old links stop working (new random
    # tokens fill the column).
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("token", sa.String(length=64), nullable=True))
    incidents = sa.table("incidents", sa.column("id", sa.String), sa.column("token", sa.String))
    bind = op.get_bind()
    for (incident_id,) in bind.execute(sa.select(incidents.c.id)).all():
        bind.execute(
            incidents.update().where(incidents.c.id == incident_id).values(token=uuid.uuid4().hex)
        )
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.alter_column("token", existing_type=sa.String(length=64), nullable=False)
        batch_op.create_unique_constraint("uq_incidents_token", ["token"])
    op.drop_index(op.f("ix_finding_amendments_incident_id"), table_name="finding_amendments")
    op.drop_table("finding_amendments")
    op.drop_index(op.f("ix_ack_links_incident_id"), table_name="ack_links")
    op.drop_table("ack_links")
    with op.batch_alter_table("sms_inbound", schema=None) as batch_op:
        batch_op.drop_index("ix_sms_inbound_sender_at")
        batch_op.drop_column("outcome")
    mig.drop_columns("incidents", "sms_failures")
