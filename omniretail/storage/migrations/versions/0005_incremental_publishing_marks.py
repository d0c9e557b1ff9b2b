"""incremental publishing: stock change marks and run watermarks

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 15:05:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("stock_levels", schema=None) as batch_op:
        batch_op.add_column(sa.Column("changed_us", sa.BigInteger(), server_default="0", nullable=False))
        batch_op.create_index(batch_op.f("ix_stock_levels_changed_us"), ["changed_us"], unique=False)
    with op.batch_alter_table("publication_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("mode", sa.String(length=12), nullable=True))
        batch_op.add_column(sa.Column("catalog_revision", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("stock_mark_us", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("settings_hash", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("publication_runs", schema=None) as batch_op:
        batch_op.drop_column("settings_hash")
        batch_op.drop_column("stock_mark_us")
        batch_op.drop_column("catalog_revision")
        batch_op.drop_column("mode")
    with op.batch_alter_table("stock_levels", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_stock_levels_changed_us"))
        batch_op.drop_column("changed_us")
