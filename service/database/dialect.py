"""What SQLite and PostgreSQL spell differently in the stores' statements: an insert that meets a key already there."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite


def insert(dialect: sa.Dialect, table: sa.Table) -> Any:
    """The dialect's own INSERT of `table`, which says what to do on a key already there (`on_conflict_do_*`)."""
    return (postgresql.insert if dialect.name == "postgresql" else sqlite.insert)(table)


def upsert(
    dialect: sa.Dialect, table: sa.Table, key: tuple[str, ...], replace: tuple[str, ...] = (), add: tuple[str, ...] = ()
) -> Any:
    """Insert, or on a key already there: set the `replace` columns to the new values, add to the `add` ones."""
    statement = insert(dialect, table)
    changes = {name: statement.excluded[name] for name in replace}
    changes |= {name: table.c[name] + statement.excluded[name] for name in add}
    return statement.on_conflict_do_update(index_elements=list(key), set_=changes)
