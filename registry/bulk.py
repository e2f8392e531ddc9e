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

from sqlalchemy import Table, text
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
    return _executemany(session, table, rows, return_ids=return_ids)


def _executemany(
    session: Session, table: Table, rows: Sequence[Mapping[str, Any]], *, return_ids: bool
) -> list[int]:
    """SQLite: the driver's executemany with values converted by each column type's own bind
    processor, computed once per column rather than once per row as a Core execute would.

    New ids are consecutive: the first insert takes SQLite's write lock for the rest of the
    transaction, so nobody else can insert in between; a check confirms it.
    """
    dialect = session.get_bind().dialect
    keys = list(rows[0].keys())  # every row has the same keys
    processors = [table.c[key].type.bind_processor(dialect) for key in keys]
    values = [
        tuple(
            value if process is None or value is None else process(value)
            for value, process in zip((row[key] for key in keys), processors, strict=True)
        )
        for row in rows
    ]
    names = ", ".join(f'"{key}"' for key in keys)
    marks = ", ".join("?" for _ in keys)
    sql = f'INSERT INTO "{table.name}" ({names}) VALUES ({marks})'
    raw = session.connection().connection.dbapi_connection
    assert raw is not None
    cursor = raw.cursor()
    try:
        if not return_ids:
            cursor.executemany(sql, values)
            return []
        cursor.execute(sql, values[0])
        first = cursor.lastrowid
        cursor.executemany(sql, values[1:])
        cursor.execute(f'SELECT max(id) FROM "{table.name}"')
        found = cursor.fetchone()
        last = found[0] if found else None
    finally:
        cursor.close()
    if first is None or last != first + len(values) - 1:
        raise RuntimeError(f"ids of {table.name} were not consecutive during a bulk insert")
    return list(range(first, last + 1))


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
