"""Bulk inserts for loads of tens of thousands of rows: COPY on PostgreSQL, executemany on SQLite.

The ORM's unit of work is the right tool for a person at a time; a synthetic town of 100,000
people or a municipal list needs the database's own bulk path. Rows are plain dicts keyed by
column name; the caller's transaction is used and nothing is committed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from enum import Enum
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Table, insert, text
from sqlalchemy.orm import Session

from registry.db import Base

if TYPE_CHECKING:
    import psycopg


def table_of(model: type[Base]) -> Table:
    return cast(Table, model.__table__)


def bulk_insert(
    session: Session,
    model: type[Base],
    rows: Sequence[Mapping[str, Any]],
    *,
    return_ids: bool = False,
) -> list[int]:
    """Insert ``rows`` into ``model``'s table; with ``return_ids``, their new ids in row order."""
    if not rows:
        return []
    table = table_of(model)
    if session.get_bind().dialect.name == "postgresql":
        return _copy(session, table, rows, return_ids=return_ids)
    if return_ids:
        # Core executemany with RETURNING batches through "insertmanyvalues"; the ORM's bulk
        # path would split the batches wherever a value is None, which is quadratic.
        statement = insert(table).returning(table.c.id, sort_by_parameter_order=True)
        return list(session.scalars(statement, rows).all())
    session.execute(insert(table), rows)
    return []


def _copy(
    session: Session, table: Table, rows: Sequence[Mapping[str, Any]], *, return_ids: bool
) -> list[int]:
    """COPY FROM STDIN; ids are drawn from the table's sequence first so that they are known."""
    ids: list[int] = []
    if return_ids:
        ids = list(
            session.scalars(
                text(
                    "SELECT nextval(pg_get_serial_sequence(:table, 'id')) FROM generate_series(1, :n)"
                ),
                {"table": table.name, "n": len(rows)},
            )
        )
    keys = list(rows[0].keys())  # every row has the same keys
    columns = ["id", *keys] if return_ids else keys
    names = ", ".join(f'"{name}"' for name in columns)
    raw = cast("psycopg.Connection[Any]", session.connection().connection.dbapi_connection)
    with raw.cursor() as cursor, cursor.copy(f'COPY "{table.name}" ({names}) FROM STDIN') as copy:
        for position, row in enumerate(rows):
            values = [_plain(row[key]) for key in keys]
            copy.write_row([ids[position], *values] if return_ids else values)
    return ids


def _plain(value: Any) -> Any:
    """What COPY's text format takes: enum values, JSON as text, the rest as psycopg adapts it."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    return value
