"""Periodic review of role grants: when and by whom each grant was last reviewed.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("role_grants") as batch:
        batch.add_column(sa.Column("reviewed_at", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("reviewed_by", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("role_grants") as batch:
        batch.drop_column("reviewed_by")
        batch.drop_column("reviewed_at")
