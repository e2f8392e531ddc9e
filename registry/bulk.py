"""Bulk writes for many rows at once: the database's own bulk path, not the ORM's unit of work.

* :func:`bulk_insert`, for loads of tens of thousands of rows (a synthetic town, a municipal
  list): COPY on PostgreSQL, executemany on SQLite.
* :func:`stage`, a temporary table of keys for a set-based lookup (an import's municipal
  references and phones, joined to ``person`` in one statement): COPY on PostgreSQL.
* :func:`among`, ``column IN (values)`` for a batch's lookups: one array parameter on
  PostgreSQL (``= ANY``), so the statement's text, its conversion and its plan do not change
  with the number of values; an IN list on SQLite.
* :func:`bulk_update` and :func:`bulk_upsert`, for the dispatcher's hot path (a batch of sends
  recorded): one statement for the whole batch, over one JSON array of the rows
  (``json_array_elements`` on PostgreSQL, ``json_each`` on SQLite). Values go through each
  column type's own bind processor once per value, and values shared by every row once per
  call; SQLAlchemy's executemany would process every parameter of every row and cost several
  times the database's own work.

The ORM's unit of work is the right tool for a person at a time. Rows are plain dicts keyed by
column name, every row with the same keys; the caller's transaction is used and nothing is
committed.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Collection, Mapping, Sequence
from datetime import date, datetime, time
from decimal import Decimal
from enum import Enum
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Column, ColumnElement, MetaData, Table, any_, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session
from sqlalchemy.schema import CreateTable

from registry.db import Base

if TYPE_CHECKING:
    import psycopg


def table_of(model: type[Base]) -> Table:
    return cast(Table, model.__table__)


def among(session: Session, column: Any, values: Collection[Any]) -> ColumnElement[bool]:
    """``column IN (values)``: on PostgreSQL ``column = ANY(:array)``, one parameter however
    many values (an IN list's text differs with every length, so psycopg converts it and the
    server plans it each time, and a prepared statement is never reused). On SQLite an IN list:
    the caller keeps each list under SQLite's parameter limit."""
    if session.get_bind().dialect.name == "postgresql":
        array = bindparam(None, list(values), type_=ARRAY(column.type), unique=True)
        return cast("ColumnElement[bool]", column == any_(array))
    return cast("ColumnElement[bool]", column.in_(list(values)))


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
    keys = list(rows[0].keys())  # every row has the same keys
    values = _tuples(table, session.get_bind().dialect, rows, keys)
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
    names = ", ".join(f'"{name}"' for name in (["id", *keys] if return_ids else keys))
    get = operator.itemgetter(*keys)
    values = [get(row) for row in rows] if len(keys) > 1 else [(row[keys[0]],) for row in rows]
    columns = [_plain_column(column) for column in zip(*values, strict=True)]
    if return_ids:
        columns.insert(0, ids)
    raw = cast("psycopg.Connection[Any]", session.connection().connection.dbapi_connection)
    with raw.cursor() as cursor, cursor.copy(f'COPY "{table.name}" ({names}) FROM STDIN') as copy:
        write = copy.write_row
        for row in zip(*columns, strict=True):
            write(row)
    return ids


def stage(
    session: Session, name: str, columns: Sequence[Column[Any]], rows: Sequence[Sequence[Any]]
) -> Table:
    """A temporary table ``name`` holding exactly ``rows`` (emptied first), to join with in
    the caller's transaction; PostgreSQL drops it at commit. Values go as they are (text,
    numbers): no column type converts them."""
    dialect = session.get_bind().dialect
    table = Table(name, MetaData(), *(c._copy() for c in columns), prefixes=["TEMPORARY"])
    create = str(CreateTable(table, if_not_exists=True).compile(dialect=dialect))
    if dialect.name == "postgresql":
        create += " ON COMMIT DROP"
    connection = session.connection()
    connection.exec_driver_sql(create)
    connection.exec_driver_sql(f'DELETE FROM "{name}"')
    if not rows:
        return table
    names = ", ".join(f'"{column.name}"' for column in table.columns)
    raw = connection.connection.dbapi_connection
    assert raw is not None
    if dialect.name == "postgresql":
        pg = cast("psycopg.Connection[Any]", raw)
        with pg.cursor() as cursor:
            with cursor.copy(f'COPY "{name}" ({names}) FROM STDIN') as copy:
                for row in rows:
                    copy.write_row(row)
            cursor.execute(f'ANALYZE "{name}"')  # the planner joins by the row count it sees
        return table
    marks = ", ".join("?" for _ in table.columns)
    lite = raw.cursor()
    try:
        lite.executemany(f'INSERT INTO "{name}" ({names}) VALUES ({marks})', rows)
    finally:
        lite.close()
    return table


def bulk_update(
    session: Session,
    model: type[Base],
    rows: Sequence[Mapping[str, Any]],
    *,
    key: str = "id",
    same: Mapping[str, Any] | None = None,
) -> None:
    """``UPDATE`` the row whose ``key`` column equals ``row[key]`` for each of ``rows``: the
    row's other values, and ``same`` (values shared by every row)."""
    if not rows:
        return
    table = table_of(model)
    dialect = session.get_bind().dialect
    own = [name for name in rows[0] if name != key]
    shared = _processed_shared(table, dialect, dict(same or {}))
    quote = dialect.identifier_preparer.quote
    source, fields = _json_source(table, dialect, [*own, key])
    assignments = [f"{quote(name)} = {fields[name]}" for name in own]
    assignments += [f"{quote(name)} = {_mark(dialect, f's_{name}')}" for name in same or {}]
    sql = (
        f"UPDATE {quote(table.name)} SET {', '.join(assignments)} FROM {source} "
        f"WHERE {quote(table.name)}.{quote(key)} = {fields[key]}"
    )
    rows_json = _json_rows(table, dialect, rows, [*own, key])
    session.connection().exec_driver_sql(sql, {**shared, "rows": rows_json})


def bulk_upsert(
    session: Session,
    model: type[Base],
    rows: Sequence[Mapping[str, Any]],
    *,
    conflict: Sequence[str],
) -> None:
    """``INSERT`` ``rows``; a row whose ``conflict`` columns exist already updates its other
    columns instead. No two rows may share their ``conflict`` values (PostgreSQL refuses to
    update one row twice in one statement)."""
    if not rows:
        return
    table = table_of(model)
    dialect = session.get_bind().dialect
    names = list(rows[0])
    quote = dialect.identifier_preparer.quote
    source, fields = _json_source(table, dialect, names)
    # "WHERE true": without it SQLite would read ON CONFLICT as part of the SELECT's join.
    sql = (
        f"INSERT INTO {quote(table.name)} ({', '.join(quote(name) for name in names)}) "
        f"SELECT {', '.join(fields[name] for name in names)} FROM {source} WHERE true "
        f"ON CONFLICT ({', '.join(quote(name) for name in conflict)}) DO UPDATE SET "
        + ", ".join(f"{quote(n)} = excluded.{quote(n)}" for n in names if n not in conflict)
    )
    session.connection().exec_driver_sql(sql, {"rows": _json_rows(table, dialect, rows, names)})


def _json_rows(
    table: Table, dialect: Dialect, rows: Sequence[Mapping[str, Any]], names: Sequence[str]
) -> str:
    """The rows as one JSON array of arrays: one parameter, built and parsed in C. Row by row,
    SQLite's executemany would let go of the interpreter lock and take it back at every row
    (competing with the event loop hundreds of times a batch), and psycopg would dump one
    array element at a time in Python. Values are as their columns' types bind them; dates
    and times travel as ISO text, which both databases read back."""
    return json.dumps(_tuples(table, dialect, rows, names), ensure_ascii=False, default=_json_text)


def _json_text(value: Any) -> str:
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"no JSON form for {type(value).__name__}")


def _json_source(
    table: Table, dialect: Dialect, names: Sequence[str]
) -> tuple[str, dict[str, str]]:
    """The rows of :func:`_json_rows` as a FROM item ``v``, and each name's field in a row of
    it (on PostgreSQL, cast back to its column's type)."""
    if dialect.name == "postgresql":
        fields = {
            name: f"(v.value ->> {index})::{table.c[name].type.compile(dialect=dialect)}"
            for index, name in enumerate(names)
        }
        return "json_array_elements(%(rows)s::json) AS v", fields
    fields = {name: f"json_extract(v.value, '$[{index}]')" for index, name in enumerate(names)}
    return "json_each(:rows) AS v", fields


def _mark(dialect: Dialect, name: str) -> str:
    return f"%({name})s" if dialect.name == "postgresql" else f":{name}"


def _tuples(
    table: Table, dialect: Dialect, rows: Sequence[Mapping[str, Any]], names: Sequence[str]
) -> list[tuple[Any, ...]]:
    """Each row's values for ``names``, as its columns' types bind them (only the columns whose
    type converts anything pay for a conversion)."""
    get = operator.itemgetter(*names)
    values = [get(row) for row in rows] if len(names) > 1 else [(row[names[0]],) for row in rows]
    processors = [
        (index, process)
        for index, name in enumerate(names)
        if (process := _bind_processor(table, name, dialect)) is not None
    ]
    if not processors or not values:
        return values
    columns: list[Sequence[Any]] = list(zip(*values, strict=True))
    for index, process in processors:
        columns[index] = _converted(columns[index], process)
    return list(zip(*columns, strict=True))


def _converted(column: Sequence[Any], process: Any) -> list[Any]:
    """A column's values converted by ``process``. Most such columns repeat a few values (an
    enum, the batch's one timestamp, an audit entry's details): each distinct value is
    converted once. A JSON list or object is told apart from others by its ``repr``."""
    try:
        distinct = set(column)
    except TypeError:  # a JSON list or object among them
        pass
    else:
        converted_once = {value: None if value is None else process(value) for value in distinct}
        return list(map(converted_once.__getitem__, column))
    done: dict[Any, Any] = {}
    shaped: dict[str, Any] = {}
    by_id: dict[int, Any] = {}  # one list or object shared by many rows: its repr once
    converted: list[Any] = []
    append = converted.append
    for item in column:
        if item is None:
            append(None)
        elif isinstance(item, list | dict):
            if (seen := by_id.get(id(item))) is not None:
                append(seen)
                continue
            shape = repr(item)
            if shape not in shaped:
                shaped[shape] = process(item)
            by_id[id(item)] = shaped[shape]
            append(shaped[shape])
        else:
            try:
                append(done[item])
            except KeyError:
                done[item] = value = process(item)
                append(value)
            except TypeError:  # another value that is not hashable
                append(process(item))
    return converted


def _bind_processor(table: Table, name: str, dialect: Dialect) -> Any:
    # The type as this dialect implements it: a TypeDecorator's own ``bind_processor`` would
    # leave out its implementation's conversion (SQLite's DATETIME to text, for one).
    return table.c[name].type.dialect_impl(dialect).bind_processor(dialect)


def _processed_shared(table: Table, dialect: Dialect, shared: Mapping[str, Any]) -> dict[str, Any]:
    values = _tuples(table, dialect, [shared], list(shared))[0] if shared else ()
    return {f"s_{name}": value for name, value in zip(shared, values, strict=True)}


def _plain_column(column: Sequence[Any]) -> Sequence[Any]:
    """:func:`_plain` over a column, each distinct value once (see :func:`_converted`)."""
    if not any(issubclass(kind, Enum | list | dict) for kind in set(map(type, column))):
        return column
    return _converted(column, _plain)


def _plain(value: Any) -> Any:
    """What COPY's text format takes: enum values, JSON as text, the rest as psycopg adapts it."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    return value
