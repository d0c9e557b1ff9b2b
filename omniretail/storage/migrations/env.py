"""Alembic environment. Run through ``omniretail db upgrade`` (or ``omniretail.storage.migrate``),
which hands over a live connection; plain ``alembic`` with ``-x url=...`` works too."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from omniretail.storage.tables import metadata

config = context.config


def _run(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=metadata,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("alembic: pass -x url=<sync database url>")
    engine = create_engine(url)
    with engine.begin() as conn:
        _run(conn)
