"""Set-based statements for the ledger's batch jobs: many rows, one statement each.

The nightly expiry writes hundreds of transactions, entries, lot updates and balance
moves per batch. Built as model instances and compiled by the ORM, that costs far more
client CPU than the rows do (a 500-branch CASE for the balances alone). Here each step is
one statement whose rows travel as a few parameters: PostgreSQL arrays (``unnest``), or
one JSON array on SQLite (``json_each``). The rules stay in ``members.ledger``: these
functions only write what it decided, inside its transaction and under its locks.

Only the two databases the project runs on are supported (DESIGN.md: SQLite embedded,
PostgreSQL at scale).
"""

import json
from datetime import datetime

from django.db import connection

from core.bulk_sql import pg_execute
from members.models import Account, Entry, Lot, PointsTransaction


def _postgres() -> bool:
    return connection.vendor == "postgresql"


def _table(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _when(moment: datetime):
    """A datetime as the backend stores it (SQLite: Django's UTC text form)."""
    return moment if _postgres() else connection.ops.adapt_datetimefield_value(moment)


def transactions_insert(*, rows: list[tuple[str, str, str, int, int, str]], at: datetime) -> dict[str, int]:
    """Insert transactions ``(key, request_hash, kind, member_id, points, reason)`` created
    ``at``, each with no merchant, store or reference; {key: new id}."""
    if not rows:
        return {}
    columns = "idempotency_key, request_hash, kind, member_id, points, reason, shortfall, reference, public_note, created_at"
    if _postgres():
        found = pg_execute(
            f"INSERT INTO {_table(PointsTransaction)} ({columns}) "
            "SELECT k, h, kd, m, p, r, 0, '', '', %b FROM unnest(%b::varchar[], %b::varchar[], %b::varchar[], "
            "%b::bigint[], %b::bigint[], %b::varchar[]) AS t(k, h, kd, m, p, r) RETURNING id, idempotency_key",
            [at, *(list(column) for column in zip(*rows, strict=True))], fetch=True,
        )
    else:
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {_table(PointsTransaction)} ({columns}) "
                "SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, 0, '', '', %s "
                "FROM json_each(%s) RETURNING id, idempotency_key",
                [_when(at), json.dumps(rows)],
            )
            found = cursor.fetchall()
    return {key: pk for pk, key in found}


def entries_insert(*, rows: list[tuple[int, int, int, int | None, int]], at: datetime) -> None:
    """Insert entries ``(transaction_id, account_id, amount, lot_id or None, member_id)`` created ``at``."""
    if not rows:
        return
    columns = "transaction_id, account_id, amount, lot_id, member_id, created_at"
    if _postgres():
        pg_execute(
            f"INSERT INTO {_table(Entry)} ({columns}) "
            "SELECT t, a, amt, l, m, %b FROM unnest(%b::bigint[], %b::bigint[], %b::bigint[], %b::bigint[], "
            "%b::bigint[]) AS e(t, a, amt, l, m)",
            [at, *(list(column) for column in zip(*rows, strict=True))],
        )
        return
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {_table(Entry)} ({columns}) "
            "SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, %s FROM json_each(%s)",
            [_when(at), json.dumps(rows)],
        )


def lots_empty(*, lot_ids: list[int]) -> None:
    """Set ``remaining`` to 0 on these lots."""
    if not lot_ids:
        return
    if _postgres():
        pg_execute(f"UPDATE {_table(Lot)} SET remaining = 0 WHERE id = ANY(%b::bigint[])", [lot_ids])
        return
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {_table(Lot)} SET remaining = 0 WHERE id IN (SELECT value FROM json_each(%s))", [json.dumps(lot_ids)])


def balances_add(*, deltas: dict[int, int]) -> None:
    """Add ``delta`` to the balance of each account ``{account_id: delta}``."""
    if not deltas:
        return
    table = _table(Account)
    if _postgres():
        pg_execute(
            f"UPDATE {table} AS a SET balance = a.balance + d.delta "
            "FROM unnest(%b::bigint[], %b::bigint[]) AS d(id, delta) WHERE a.id = d.id",
            [list(deltas), list(deltas.values())],
        )
        return
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET balance = balance + d.delta "
            "FROM (SELECT value ->> 0 AS id, value ->> 1 AS delta FROM json_each(%s)) AS d "
            f"WHERE {table}.id = d.id",
            [json.dumps(list(deltas.items()))],
        )
