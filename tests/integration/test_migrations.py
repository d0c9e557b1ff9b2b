"""The Alembic migrations build exactly the schema the code declares, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from omniretail.kernel import Kernel
from omniretail.storage import migrate
from omniretail.storage.tables import metadata


async def test_migrated_schema_matches_the_tables(kernel: Kernel) -> None:
    assert await migrate.is_current(kernel.db)

    def diff(sync_conn: object) -> list[object]:
        context = MigrationContext.configure(sync_conn, opts={"compare_type": True})  # type: ignore[arg-type]
        return list(compare_metadata(context, metadata))

    async with kernel.db.read() as conn:
        differences = await conn.run_sync(diff)
    assert differences == []


async def test_upgrade_is_idempotent(kernel: Kernel) -> None:
    await migrate.upgrade(kernel.db)
    await migrate.upgrade(kernel.db)
    assert await migrate.current_revision(kernel.db) == migrate.head_revision()


def test_the_head_read_without_alembic_is_alembics_head() -> None:
    """Start-up compares the database with a head read from the migration files (no Alembic
    import when nothing is to do); it must be the head Alembic itself computes."""
    assert migrate.shipped_head() == migrate.head_revision() is not None


async def test_hot_path_indexes_are_as_declared(kernel: Kernel) -> None:
    """What ``compare_metadata`` does not compare: an index's WHERE. The events indexes by
    customer, order and cart hold only rows that have one; ``stock_levels.changed_us`` (written
    by every sale) has no index."""
    async with kernel.db.read() as conn:
        if kernel.db.is_sqlite:
            rows = await conn.execute(
                text(
                    "SELECT name, sql FROM sqlite_master"
                    " WHERE type = 'index' AND tbl_name IN ('events', 'stock_levels')"
                )
            )
        else:
            rows = await conn.execute(
                text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename IN ('events', 'stock_levels')")
            )
        defs = {name: " ".join(str(sql or "").split()) for name, sql in rows}
    for name in ("customer", "order", "cart"):
        where = defs[f"ix_events_{name}"].partition(" WHERE ")[2].strip("()")
        assert where == f"{name}_id IS NOT NULL", defs[f"ix_events_{name}"]
    assert not [sql for sql in defs.values() if "changed_us" in sql]
