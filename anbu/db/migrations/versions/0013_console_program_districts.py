"""console: calling programmes per district

``programs.district_id`` (NULL: a shared programme, every district may use it) and
``programs.replaces_id`` (a district's own programme standing in for a shared one in that
district). Existing programmes become shared: nothing a resident follows changes until a
district edits its copy (anbu.domain.program_scope).

Revision ID: 0013_console_program_districts
Revises: 0012_voice_accessibility
Create Date: 2026-12-05 00:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_console_program_districts"
down_revision = "0012_voice_accessibility"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Both columns NULL for every existing row: each stays a shared programme, as before.
    with op.batch_alter_table("programs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("district_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("replaces_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_programs_district_id_districts"), "districts", ["district_id"], ["id"]
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_programs_replaces_id_programs"), "programs", ["replaces_id"], ["id"]
        )
        batch_op.create_index(batch_op.f("ix_programs_district_id"), ["district_id"], unique=False)
        batch_op.create_index(
            "ux_programs_district_replaces", ["district_id", "replaces_id"], unique=True
        )


def downgrade() -> None:
    # A district's own programmes cannot become shared ones silently: residents on them go
    # back to the default programme, then the rows go.
    op.execute(
        "UPDATE resident_schedules SET program_id = NULL WHERE program_id IN"
        " (SELECT id FROM programs WHERE district_id IS NOT NULL)"
    )
    op.execute("DELETE FROM programs WHERE district_id IS NOT NULL")
    with op.batch_alter_table("programs", schema=None) as batch_op:
        batch_op.drop_index("ux_programs_district_replaces")
        batch_op.drop_index(batch_op.f("ix_programs_district_id"))
        batch_op.drop_constraint(batch_op.f("fk_programs_replaces_id_programs"), type_="foreignkey")
        batch_op.drop_constraint(
            batch_op.f("fk_programs_district_id_districts"), type_="foreignkey"
        )
        batch_op.drop_column("replaces_id")
        batch_op.drop_column("district_id")
