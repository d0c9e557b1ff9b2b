"""hot-path indexes: stock_levels.changed_us unindexed, events indexes partial

Every sale updates ``stock_levels.changed_us``; indexed, each update also wrote index entries
(and on PostgreSQL was never a HOT update). Incremental publishing scans the table for it instead.
``ix_events_customer`` becomes partial (customer_id IS NOT NULL): adopting a guest cart's events
at checkout (``customer_id IS NULL`` by cart) was planned as a scan of every guest event in it.
``ix_events_order`` and ``ix_events_cart`` hold only the events about an order, about a cart.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22 22:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_PARTIAL = ("customer", "order", "cart")


def upgrade() -> None:
    with op.batch_alter_table("stock_levels", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_stock_levels_changed_us"))
    with op.batch_alter_table("events", schema=None) as batch_op:
        for name in _PARTIAL:
            only = sa.text(f"{name}_id IS NOT NULL")
            batch_op.drop_index(batch_op.f(f"ix_events_{name}"))
            batch_op.create_index(
                batch_op.f(f"ix_events_{name}"),
                [f"{name}_id", "seq"],
                unique=False,
                postgresql_where=only,
                sqlite_where=only,
            )


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        for name in _PARTIAL:
            batch_op.drop_index(batch_op.f(f"ix_events_{name}"))
            batch_op.create_index(batch_op.f(f"ix_events_{name}"), [f"{name}_id", "seq"], unique=False)
    with op.batch_alter_table("stock_levels", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_stock_levels_changed_us"), ["changed_us"], unique=False)
