"""Many rows of one model in one INSERT, without building model instances.

Django's ``bulk_create`` builds an instance per row and prepares every value through the
field API: for the nightly jobs' batches (thousands of coupons, pushes, targets) that
client CPU costs several times what the database spends writing them. ``rows_insert``
takes plain dicts and sends each column as one parameter: a PostgreSQL array
(``unnest``), or one JSON array for all rows on SQLite (``json_each``). Columns left out
take the field's default (``auto_now_add``: the time of the call), as ``bulk_create``
would; a column without one must be given.

Only the two databases the project runs on are supported (DESIGN.md: SQLite embedded,
PostgreSQL at scale). No signals are sent and ``save()`` is not called: use it for
models that have neither.
"""

import json
from datetime import date, datetime

from django.db import connection, models
from django.utils import timezone


def _postgres() -> bool:
    return connection.vendor == "postgresql"


class _Column:
    def __init__(self, field: models.Field, now: datetime, postgres: bool):
        self.field, self.name, self.postgres = field, field.attname, postgres
        self.column = connection.ops.quote_name(field.column)
        self.is_json = isinstance(field, models.JSONField)
        self.sql_type = "jsonb" if self.is_json else field.db_type(connection)
        self.now = now if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False) else None
        # As Django: a default, else NULL, else "" for a text column; anything else must be given.
        self.required = self.now is None and not (field.has_default() or field.null or field.empty_strings_allowed)

    def value(self, row: dict):
        if self.name in row:
            value = row[self.name]
        elif self.required:
            raise KeyError(f"{self.field.model.__name__}.{self.name} has no default: give it")
        elif self.now is not None:
            value = self.now
        else:
            value = self.field.get_default()
        if value is None:
            return None
        if self.is_json:
            return json.dumps(value, cls=self.field.encoder)
        if self.postgres:
            return value
        if isinstance(value, datetime):
            return connection.ops.adapt_datetimefield_value(value)
        if isinstance(value, date):
            return value.isoformat()
        if isinstance(value, bool):
            return int(value)
        return value


def rows_insert(
    model: type[models.Model], rows: list[dict], *, returning: tuple[str, ...] = (), ignore_conflicts: bool = False,
) -> list[tuple]:
    """Insert ``rows`` (dicts by attribute name: ``member_id``, not ``member``); the
    ``returning`` columns of each inserted row (in no promised order). With
    ``ignore_conflicts`` a row that would break a unique constraint is skipped."""
    if not rows:
        return []
    now = timezone.now()
    postgres = _postgres()
    columns = [_Column(field, now, postgres) for field in model._meta.concrete_fields if not field.primary_key]
    table = connection.ops.quote_name(model._meta.db_table)
    names = ", ".join(column.column for column in columns)
    values = [[column.value(row) for column in columns] for row in rows]
    conflict = " WHERE true ON CONFLICT DO NOTHING" if ignore_conflicts else ""
    back = (" RETURNING " + ", ".join(connection.ops.quote_name(model._meta.get_field(name).column) for name in returning)
            if returning else "")
    if postgres:
        arrays = ", ".join(f"%b::{column.sql_type}[]" for column in columns)  # %b: sent in binary
        return pg_execute(
            f"INSERT INTO {table} ({names}) SELECT * FROM unnest({arrays}){conflict}{back}",
            [list(column_values) for column_values in zip(*values, strict=True)], fetch=bool(returning),
        )
    with connection.cursor() as cursor:
        picks = ", ".join(f"value ->> {i}" for i in range(len(columns)))
        cursor.execute(f"INSERT INTO {table} ({names}) SELECT {picks} FROM json_each(%s){conflict}{back}", [json.dumps(values)])
        return cursor.fetchall() if returning else []


def pg_execute(sql: str, params: list, *, fetch: bool = False) -> list[tuple]:
    """Run ``sql`` on PostgreSQL with its parameters bound by the server.

    Django's cursor binds on the client: psycopg then quotes every element of an array
    into the statement's text, which costs more CPU than the database spends on the rows.
    A plain psycopg cursor on the same connection (so in the same transaction) sends
    each array as one parameter instead, in binary where the statement says ``%b``.
    """
    import psycopg

    connection.ensure_connection()
    # Wrapped as Django wraps its own cursors: its errors (IntegrityError …), query
    # logging, execute wrappers and the tests' query counts see this statement too.
    with connection._prepare_cursor(psycopg.Cursor(connection.connection)) as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if fetch else []
