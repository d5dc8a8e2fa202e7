"""The nightly jobs on a large database, each beside bare SQL doing the same row work, in one run.

    .venv/bin/python bench/jobs.py                     # 500,000 members and lots, 100,000 due (about 5 minutes)
    .venv/bin/python bench/jobs.py --quick             # smoke test: 100,000 members and lots (about a minute)
    .venv/bin/python bench/jobs.py --members 1000000   # the issue's size: 200,000 due lots (10 to 16 minutes)
    .venv/bin/python bench/jobs.py --members 1000000 --campaign-members 0   # …and the campaign to every lapsed one

Each also runs a wake-up campaign to ``--campaign-members`` lapsed members (default
10,000; --quick 2,000; 0: all of them, some 60 % of the members). Measured when it was
added, campaign_run() delivered one member at a time (about 16 statements each, 40 to
100 members a second): a few minutes more than the times above, hours for every lapsed
member of a million.

On a fresh PostgreSQL database (``--db``, dropped and recreated, dropped again at the
end unless ``--keep``), migrated, with bench/ledger.py's plaza and merchants (``seed``),
it bulk-loads in SQL (INSERT … SELECT generate_series, not the ORM) ``--members``
members, each with a wallet, and ``--lots`` lots spread over them, ``--due-share`` of
which are past their expiry; every lot is credited by a grant transaction with its two
entries (the promotions account's debit, the wallet's credit naming the lot) and each
wallet's balance is the sum of its lots, so the ledger's invariants hold before the
first job runs. Then, one after the other, each after a CHECKPOINT:

1. **Expiry.** The database is copied (``CREATE DATABASE … TEMPLATE``, ``--bare-db``).
   In the copy a bare SQL script expires every due lot in one transaction: the due lots
   into a temporary table (with transaction ids drawn from the sequence), INSERT …
   SELECT of the transactions (the same idempotency keys and request hashes as the
   service writes) and of both entries of each, UPDATE of the lots to remaining 0,
   UPDATE of the wallets from an aggregate. In the original,
   ``members.tasks.points_expire_due()`` does the same, set-based, 500 lots a
   transaction (``members.ledger.points_expire_due_batch``). Printed: both times, the
   ratio, and the issue's aim, expiry within 3× of the bare statements.
2. **Segment tagging.** Visits are bulk-loaded for ``--visitors`` of the members,
   ``--visits`` each on average, over the last 18 months: check-ins, purchases,
   payments and (never a visit) redemptions; a share of the visitors are regulars, a
   purchase in each of their last calendar months, so the loyal segment is not empty.
   A bare INSERT … SELECT computes every active member's segment, 12-month spend and
   high-value tag with the rules of members/segments.py's docstring into a scratch
   table shaped as ``members_membersegment`` (its indexes too); then
   ``members.segments.segments_tag()`` tags the same members from the same instant.
3. **Wake-up campaign.** A mall campaign for the lapsed segment (as just tagged), holdout
   10 %, a mall-funded coupon and a push. Its audience is the ``--campaign-members``
   lapsed members of lowest id (0: every lapsed member): they are given a plaza of their
   own as the plaza they last visited, and the campaign names it, so the audience is a
   filter of the campaign as staff would set it. A bare script, in one transaction,
   draws the same audience (active, lapsed, that plaza, outside the cooldown) and the
   same holdout (the SHA-256 of ``<campaign>:<member>``, computed in SQL) into a
   temporary table with the ids of its coupons and pushes drawn from the sequences, then
   INSERT … SELECTs the coupons, their events, the pushes, their inbox copies and the
   targets, and UPDATEs the template's issued count — into scratch tables shaped as the
   real ones (``LIKE … INCLUDING ALL``: indexes, unique and check constraints; not the
   foreign keys). Then ``coupons.campaigns.campaign_run()`` runs the campaign. Printed:
   both times, the ratio, and the issue's aim, the campaign within 5× of the bare
   statements; and the delivery tasks the service queued for its pushes (one a push,
   django-q2's broker: rows of ``django_q_ormq`` here), which the bare script leaves to
   the outbox's sweep.

Timings are information, never a failure. The checks are: the service expired exactly
the lots that were due; it and the bare script wrote the same expiry (the same
transactions by key, hash and points, the same entries, lots and balances); the
ledger's invariants hold afterwards (bench/ledger.py's ``ledger_check``, with exactly
one expiry transaction per due lot); the service and the bare statement agree on
every member's segment, tag and spend; and the campaign's service and bare script
targeted the same members in the same groups, each treated one with one coupon and one
push, the holdout with none. A failed check exits with status 1.

The run prints the time each side took, its rows a second, the ratio, and where the
service's time went: time in its SQL statements, the client's CPU (Python, Django,
psycopg), the CPU of its PostgreSQL backend, and its statements grouped by shape with
their count and time. Progress goes to stderr, results to stdout; bench/README.md has
the flags and how long each size takes.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the project, importable from bench/

from bench._common import PgServer, cpu_busy, django_env, in_django, log, manage  # noqa: E402
from bench.api import cpu_of  # noqa: E402
from bench.ledger import report_check, seed  # noqa: E402

AIM_EXPIRY_RATIO = 3.0  # the aim: the expiry job within 3× of bare statements doing its row work
AIM_CAMPAIGN_RATIO = 5.0  # …and a wake-up campaign within 5×
CAMPAIGN_HOLDOUT_PCT = 10
CAMPAIGN_COOLDOWN_DAYS = 90
MERCHANTS = 8
BANNED_EVERY = 200  # every 200th member is banned: no segment, whatever their visits
REGULAR_SHARE = 0.15  # of the visitors: a purchase in each of their last calendar months (loyal, given 3)
VISIT_DAYS = 548  # 18 months
OTHERS_BUSY_WARNING = 0.20
STATEMENT_SHAPES_SHOWN = 8
SEGMENT_ORDER = ("lapsed", "loyal", "occasional", "one_time", "potential")


# --- in the Django children --------------------------------------------------------------


def world_seed() -> dict:
    """bench/ledger.py's plaza and merchants (one store each), and what the bulk load and
    the bare statements need to know of the settings and the system accounts."""
    from django.conf import settings

    from members.models import Account, Plaza, Store
    from members.services import tier_entry

    seed(members=0, merchants=MERCHANTS)
    accounts = dict(Account.objects.filter(member__isnull=True, merchant__isnull=True).values_list("kind", "pk"))
    return {
        "plaza": Plaza.objects.get(code="bench").pk,
        "stores": list(Store.objects.order_by("pk").values_list("pk", flat=True)),
        "tier": tier_entry().pk,
        "promotions": accounts[Account.Kind.PROMOTIONS],
        "time_zone": settings.TIME_ZONE,
        "lapsed_days": settings.LAPSED_AFTER_DAYS,
        "loyal_months": getattr(settings, "SEGMENT_LOYAL_MONTHS", 3),
        "occasional_min_visits": getattr(settings, "SEGMENT_OCCASIONAL_MIN_VISITS", 2),
        "high_value_share_pct": getattr(settings, "SEGMENT_HIGH_VALUE_SHARE_PCT", 20),
    }


def _statement_shape(sql: str) -> str:
    """A statement by what it does: its verb, its table, and for a SELECT its first columns."""
    verb = sql.split(None, 1)[0].upper() if sql.strip() else "?"
    table = re.search(r'(?:FROM|INTO|UPDATE) "(\w+)"', sql)
    shape = f"{verb} {table.group(1) if table else '…'}"
    if verb == "SELECT":
        columns = re.findall(r'"\w+"\."(\w+)"', sql.split(" FROM ", 1)[0])
        shape += f" ({', '.join(columns[:2])}{', …' if len(columns) > 2 else ''})"
    return shape + (" FOR UPDATE" if "FOR UPDATE" in sql else "")


def _timed_job(job) -> dict:
    """``job()`` timed from the client: wall, its CPU, its backend's CPU, and its statements
    by shape (count and time in SQL: the round trip, the server and the driver)."""
    from django.db import connection

    connection.ensure_connection()  # the connection is not the job's
    backend = connection.connection.info.backend_pid
    by_sql: dict[str, list] = {}  # shaped once the job is over: the wrapper should cost the job little

    def timed(execute, sql, params, many, context):
        start = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            entry = by_sql.setdefault(sql, [0, 0.0])
            entry[0] += 1
            entry[1] += time.perf_counter() - start

    server0 = cpu_of([backend]).get(backend)
    cpu0, start = time.process_time(), time.perf_counter()
    with connection.execute_wrapper(timed):
        result = job()
    wall = time.perf_counter() - start
    client_cpu = time.process_time() - cpu0
    server1 = cpu_of([backend]).get(backend)
    shapes: dict[str, list] = {}
    for sql, (n, seconds) in by_sql.items():
        entry = shapes.setdefault(_statement_shape(sql), [0, 0.0])
        entry[0] += n
        entry[1] += seconds
    return {
        "result": result, "seconds": wall, "client_cpu": client_cpu,
        "statements": sum(n for n, _ in shapes.values()), "in_sql": sum(s for _, s in shapes.values()),
        "shapes": sorted(((shape, n, s) for shape, (n, s) in shapes.items()), key=lambda x: -x[2]),
        "server_cpu": server1 - server0 if server0 is not None and server1 is not None else None,
    }


def expire_job() -> dict:
    from members import tasks

    timed = _timed_job(tasks.points_expire_due)
    timed["expired"] = timed.pop("result")
    timed["batch"] = tasks.EXPIRE_BATCH
    return timed


def segments_job(*, as_of: str) -> dict:
    from members import segments

    timed = _timed_job(lambda: segments.segments_tag(at=datetime.fromisoformat(as_of)))
    summary = timed.pop("result")
    timed.update(
        batches=summary.batches, threshold_fen=summary.high_value_threshold_fen,
        sizes={name: (size.members, size.high_value_members) for name, size in summary.sizes.items()},
    )
    return timed


def campaign_setup(*, own_plaza: bool) -> dict:
    """The wake-up campaign as staff would make it (active, for the lapsed, a mall coupon),
    with a plaza of its own to narrow the audience to; what the bare script needs of it."""
    from datetime import timedelta

    from django.utils import timezone

    from coupons.models import Campaign, CouponTemplate
    from members import services
    from members.pushes import FIRST_ATTEMPT_GRACE

    plaza = services.plaza_create(code="bench-wake", name="bench wake-up plaza") if own_plaza else None
    template = CouponTemplate.objects.create(
        name="bench 新品尝鲜券", kind=CouponTemplate.Kind.CASH_OFF, face_value_fen=3_000, min_spend_fen=10_000,
        valid_days=30, funded_by=CouponTemplate.FundedBy.MALL,
    )
    campaign = Campaign.objects.create(
        name="bench wake-up", template=template, segments=["lapsed"], plaza=plaza, holdout_pct=CAMPAIGN_HOLDOUT_PCT,
        cooldown_days=CAMPAIGN_COOLDOWN_DAYS, starts_at=timezone.now() - timedelta(minutes=1), status=Campaign.Status.ACTIVE,
        message_title="好久不见，送你一张新品尝鲜券", message_body="商场上新了！满100减30，30天内有效。",
    )
    return {
        "campaign": campaign.pk, "template": template.pk, "plaza": plaza.pk if plaza else None,
        "holdout_units": CAMPAIGN_HOLDOUT_PCT * 100, "cooldown": CAMPAIGN_COOLDOWN_DAYS, "valid_days": template.valid_days,
        "title": campaign.message_title, "body": campaign.message_body, "grace_seconds": FIRST_ATTEMPT_GRACE.total_seconds(),
    }


def campaign_job(*, campaign_id: int, at: str) -> dict:
    from coupons import campaigns
    from coupons.models import Campaign

    campaign = Campaign.objects.get(pk=campaign_id)
    timed = _timed_job(lambda: campaigns.campaign_run(campaign=campaign, at=datetime.fromisoformat(at)))
    summary = timed.pop("result")
    timed.update(targeted=summary.targeted, holdout=summary.holdout, issued=summary.issued, refused=summary.refused)
    return timed


def ledger_invariants(expected: dict[str, int]) -> tuple[dict[str, int], list[str]]:
    from bench.ledger import ledger_check

    return ledger_check(expected)


# --- the bulk load (SQL, in the parent) ---------------------------------------------------

# Lot k (1 … lots) belongs to member i = (k - 1) % members + 1; its points, 1–1,000, and
# whether it is due are functions of k, so every statement below derives the same lots.
# Due lots expired 1–30 days ago, the others expire within the year: any instant between
# the load and the job sees the same due set.
LOTS_SQL = """
CREATE TEMPORARY TABLE bench_lots ON COMMIT DROP AS
SELECT k, (k - 1) %% %(members)s + 1 AS i, 1 + k * 7907 %% 1000 AS amount,
       CASE WHEN k * 7919 %% 10000 < %(due_bp)s
            THEN now() - make_interval(days => (1 + k %% 30)::int, secs => (k %% 86400)::float8)
            ELSE now() + make_interval(days => (1 + k %% 365)::int, secs => (k %% 86400)::float8) END AS expires_at
FROM generate_series(1, %(lots)s::bigint) k
"""

LOAD_SQL = [
    # Sequential member numbers, not Luhn-valid ones: no job reads them.
    """
    INSERT INTO members_member (id, member_no, nickname, gender, status, join_channel, created_at, join_plaza_id, tier_id,
                                tier_spend_fen, tier_spend_months)
    SELECT %(m0)s + i, lpad((%(m0)s + i)::text, 12, '0'), '', '',
           CASE WHEN i %% %(banned_every)s = 0 THEN 'banned' ELSE 'active' END, 'pos',
           now() - make_interval(secs => (i * 7919 %% (730 * 86400))::float8), %(plaza)s, %(tier)s, 0, '{}'::jsonb
    FROM generate_series(1, %(members)s::bigint) i
    """,
    """
    INSERT INTO members_account (id, kind, balance, rolled_up_entry_id, created_at, member_id)
    SELECT %(a0)s + i, 'wallet', coalesce(s.total, 0), 0, now(), %(m0)s + i
    FROM generate_series(1, %(members)s::bigint) i
    LEFT JOIN (SELECT i, sum(amount) AS total FROM bench_lots GROUP BY i) s USING (i)
    """,
    """
    INSERT INTO members_pointstransaction (id, idempotency_key, request_hash, kind, points, shortfall, reason, reference,
                                           created_at, member_id)
    SELECT %(t0)s + k, 'bench:grant:' || k, encode(sha256(convert_to('bench:grant:' || k, 'UTF8')), 'hex'), 'grant',
           amount, 0, 'bench opening balance', '', expires_at - interval '365 days', %(m0)s + i
    FROM bench_lots
    """,
    """
    INSERT INTO members_lot (id, amount, remaining, expires_at, created_at, account_id, member_id, transaction_id, status)
    SELECT %(l0)s + k, amount, amount, expires_at, expires_at - interval '365 days', %(a0)s + i, %(m0)s + i, %(t0)s + k,
           'available'
    FROM bench_lots
    """,
    # A grant's two legs: the promotions account pays, the wallet's leg names the lot.
    """
    INSERT INTO members_entry (id, amount, created_at, account_id, lot_id, member_id, transaction_id)
    SELECT %(e0)s + 2 * k - 1 + leg, CASE leg WHEN 0 THEN -amount ELSE amount END, expires_at - interval '365 days',
           CASE leg WHEN 0 THEN %(promotions)s ELSE %(a0)s + i END, CASE leg WHEN 1 THEN %(l0)s + k END,
           %(m0)s + i, %(t0)s + k
    FROM bench_lots CROSS JOIN LATERAL generate_series(0, 1) leg
    """,
]

TABLES = {"m0": "members_member", "a0": "members_account", "t0": "members_pointstransaction", "l0": "members_lot",
          "e0": "members_entry"}

# Visitors: --visitors of the members, 1 … 2 × --visits - 1 visits each (--visits on
# average). Regulars buy once in each of their last calendar months (local time), the
# others come at any time in 18 months: a check-in, a purchase, a payment or a redemption
# (not a visit, and not a purchase: the rules must leave it out).
VISITS_SQL = """
WITH visitors AS MATERIALIZED (
    SELECT %(m0)s + i AS member_id, u < %(regular_cut)s AS regular, 1 + floor(random() * %(spread)s)::int AS n
    FROM (SELECT i, random() AS u FROM generate_series(1, %(members)s::bigint) i) drawn
    WHERE u < %(visitor_share)s
),
drawn AS MATERIALIZED (
    SELECT v.member_id, v.regular, j, random() AS r_kind, random() AS r_time, random() AS r_amount, random() AS r_store
    FROM visitors v CROSS JOIN LATERAL generate_series(1, v.n) j
),
kinds AS (
    SELECT *, CASE WHEN regular THEN 'purchase' WHEN r_kind < 0.3 THEN 'checkin' WHEN r_kind < 0.7 THEN 'purchase'
                   WHEN r_kind < 0.9 THEN 'payment' ELSE 'redemption' END AS kind
    FROM drawn
)
INSERT INTO members_visit (kind, amount_fen, occurred_at, member_id, plaza_id, store_id)
SELECT kind, CASE kind WHEN 'checkin' THEN 0 ELSE 1000 + floor(r_amount * 49000)::bigint END,
       CASE WHEN regular
            THEN (date_trunc('month', now() AT TIME ZONE %(tz)s::text) - make_interval(months => j))
                 AT TIME ZONE %(tz)s::text + make_interval(secs => 86400 + r_time * 26 * 86400)
            ELSE now() - make_interval(secs => r_time * %(visit_days)s * 86400) END,
       member_id, %(plaza)s, CASE WHEN kind <> 'checkin' THEN (%(stores)s::bigint[])[1 + floor(r_store * %(n_stores)s)::int] END
FROM kinds
"""


# --- the bare statements ------------------------------------------------------------------

# The same row work as points_expire_due, in one transaction: the same keys (expire_key:
# the lot and its local expiry date), the same request hashes, the same two legs.
EXPIRE_SQL = [
    """
    CREATE TEMPORARY TABLE bench_due ON COMMIT DROP AS
    SELECT id AS lot_id, member_id, account_id, remaining, status, expires_at,
           nextval(pg_get_serial_sequence('members_pointstransaction', 'id')) AS txn_id
    FROM members_lot WHERE remaining > 0 AND expires_at <= now()
    """,
    """
    INSERT INTO members_pointstransaction (id, idempotency_key, request_hash, kind, points, shortfall, reason, reference,
                                           created_at, member_id)
    SELECT txn_id, 'expire:' || lot_id || ':' || to_char(expires_at AT TIME ZONE %(tz)s::text, 'YYYY-MM-DD'),
           encode(sha256(convert_to('{"lot":' || lot_id || ',"op":"expire"}', 'UTF8')), 'hex'), 'expire',
           -remaining, 0, 'lot ' || lot_id || ' expired', '', now(), member_id
    FROM bench_due
    """,
    """
    INSERT INTO members_entry (amount, created_at, account_id, lot_id, member_id, transaction_id)
    SELECT CASE leg WHEN 0 THEN -remaining ELSE remaining END, now(),
           CASE WHEN leg = 1 THEN %(expired)s WHEN status = 'available' THEN account_id ELSE %(pending)s END,
           CASE leg WHEN 0 THEN lot_id END, member_id, txn_id
    FROM bench_due CROSS JOIN LATERAL generate_series(0, 1) leg
    """,
    "UPDATE members_lot l SET remaining = 0 FROM bench_due d WHERE l.id = d.lot_id",
    """
    UPDATE members_account a SET balance = a.balance - s.points
    FROM (SELECT account_id, sum(remaining) AS points FROM bench_due WHERE status = 'available' GROUP BY account_id) s
    WHERE a.id = s.account_id
    """,
]

# What an expiry wrote, as order-free sums of row hashes (ids aside: the two sides number
# their rows differently), to compare the service's database with the bare script's.
EXPIRY_DIGEST_SQL = """
SELECT (SELECT count(*) FROM members_pointstransaction WHERE kind = 'expire'),
       (SELECT sum(hashtextextended(concat_ws(' ', idempotency_key, request_hash, points, member_id, reason), 0))
        FROM members_pointstransaction WHERE kind = 'expire'),
       (SELECT sum(hashtextextended(concat_ws(' ', t.idempotency_key, e.account_id, e.lot_id, e.member_id, e.amount), 0))
        FROM members_entry e JOIN members_pointstransaction t ON t.id = e.transaction_id WHERE t.kind = 'expire'),
       (SELECT sum(hashtextextended(concat_ws(' ', id, remaining), 0)) FROM members_lot),
       (SELECT sum(hashtextextended(concat_ws(' ', id, balance), 0)) FROM members_account)
"""
DIGEST_PARTS = ("expiry transactions (count)", "expiry transactions (key, hash, points, member, reason)",
                "their entries", "lots' remaining", "account balances")

# members/segments.py's rules, written again from its docstring: every active member's
# segment in order of precedence, its 12-month spend, and the high-value tag (the spend of
# the ceil(N × share / 100)-th biggest of N spenders, ties in). Loyal: a purchase in each
# of the last complete local calendar months, counted as distinct months.
SEGMENTS_SQL = """
INSERT INTO bench_segment (member_id, segment, high_value, spend_12m_fen, run_id, computed_at)
WITH rules AS (
    SELECT %(as_of)s::timestamptz AS as_of,
           %(as_of)s::timestamptz - make_interval(days => %(lapsed_days)s::int) AS lapsed_at,
           %(as_of)s::timestamptz - interval '365 days' AS year_ago,
           (date_trunc('month', %(as_of)s::timestamptz AT TIME ZONE %(tz)s::text) - make_interval(months => %(loyal_months)s::int))
               AT TIME ZONE %(tz)s::text AS loyal_from,
           date_trunc('month', %(as_of)s::timestamptz AT TIME ZONE %(tz)s::text) AT TIME ZONE %(tz)s::text AS loyal_until
),
tallies AS (
    SELECT m.id,
           coalesce(max(v.occurred_at) FILTER (WHERE v.kind IN ('checkin', 'purchase', 'payment')), m.created_at) AS last_seen,
           count(*) FILTER (WHERE v.kind IN ('checkin', 'purchase', 'payment') AND v.occurred_at > r.year_ago) AS visits_12m,
           count(*) FILTER (WHERE v.kind IN ('purchase', 'payment')) AS purchases_ever,
           coalesce(sum(v.amount_fen) FILTER (WHERE v.kind IN ('purchase', 'payment') AND v.occurred_at > r.year_ago), 0)
               AS spend_12m,
           count(DISTINCT date_trunc('month', v.occurred_at AT TIME ZONE %(tz)s::text)) FILTER (
               WHERE v.kind IN ('purchase', 'payment') AND v.occurred_at >= r.loyal_from AND v.occurred_at < r.loyal_until
           ) AS loyal_months
    FROM members_member m CROSS JOIN rules r
    LEFT JOIN members_visit v ON v.member_id = m.id AND v.occurred_at <= r.as_of
    WHERE m.status = 'active'
    GROUP BY m.id
),
threshold AS (
    SELECT min(spend_12m) AS fen
    FROM (SELECT spend_12m, row_number() OVER (ORDER BY spend_12m DESC) AS rank FROM tallies WHERE spend_12m > 0) ranked
    WHERE rank <= (SELECT (count(*) * %(share)s::int + 99) / 100 FROM tallies WHERE spend_12m > 0)
)
SELECT t.id,
       CASE WHEN t.last_seen <= r.lapsed_at THEN 'lapsed'
            WHEN t.loyal_months = %(loyal_months)s::int THEN 'loyal'
            WHEN t.visits_12m >= %(min_visits)s::int OR t.purchases_ever >= 2 THEN 'occasional'
            WHEN t.purchases_ever = 1 THEN 'one_time'
            ELSE 'potential' END,
       coalesce(t.spend_12m >= h.fen, false), t.spend_12m, 0, now()
FROM tallies t CROSS JOIN rules r CROSS JOIN threshold h
"""

SEGMENTS_DIFF_SQL = """
SELECT count(*) FILTER (WHERE s.member_id IS NULL), count(*) FILTER (WHERE b.member_id IS NULL),
       count(*) FILTER (WHERE s.segment <> b.segment), count(*) FILTER (WHERE s.high_value <> b.high_value),
       count(*) FILTER (WHERE s.spend_12m_fen <> b.spend_12m_fen)
FROM members_membersegment s FULL JOIN bench_segment b USING (member_id)
"""
SEGMENTS_DIFF_PARTS = ("members only the bare statement tagged", "members only the service tagged",
                       "segments that differ", "high-value tags that differ", "12-month spends that differ")
SEGMENTS_EXAMPLES_SQL = """
SELECT member_id, s.segment, b.segment, s.high_value, b.high_value, s.spend_12m_fen, b.spend_12m_fen
FROM members_membersegment s FULL JOIN bench_segment b USING (member_id)
WHERE s.segment IS DISTINCT FROM b.segment OR s.high_value IS DISTINCT FROM b.high_value
   OR s.spend_12m_fen IS DISTINCT FROM b.spend_12m_fen
ORDER BY member_id LIMIT 5
"""


# The wake-up campaign's row work, in one transaction, into scratch tables shaped as the
# real ones: the audience and the holdout draw (coupons.campaigns.holdout_drawn: the first
# 8 bytes of SHA-256("<campaign>:<member>") as an unsigned big-endian integer, mod 10,000,
# under holdout % × 100; PostgreSQL reads the 8 bytes as a signed bigint, and 2^64 mod
# 10,000 is 1,616), then the coupons and their events, the template's count, the pushes
# and their inbox copies, and the targets linked to both.
CAMPAIGN_SCRATCH = {
    "bench_campaigntarget": "coupons_campaigntarget", "bench_coupon": "coupons_coupon",
    "bench_couponevent": "coupons_couponevent", "bench_push": "members_push", "bench_inboxmessage": "members_inboxmessage",
    "bench_coupontemplate": "coupons_coupontemplate",
}
CAMPAIGN_PLAZA_SQL = """
UPDATE members_member SET last_visit_plaza_id = %(plaza)s
WHERE id IN (SELECT member_id FROM members_membersegment WHERE segment = 'lapsed' ORDER BY member_id LIMIT %(cap)s)
"""
CAMPAIGN_SQL = [
    """
    CREATE TEMPORARY TABLE bench_drawn ON COMMIT DROP AS
    SELECT member_id, holdout,
           CASE WHEN NOT holdout THEN nextval(pg_get_serial_sequence('bench_coupon', 'id')) END AS coupon_id,
           CASE WHEN NOT holdout THEN nextval(pg_get_serial_sequence('bench_push', 'id')) END AS push_id
    FROM (
        SELECT member_id, ((h %% 10000) + 10000 + CASE WHEN h < 0 THEN 1616 ELSE 0 END) %% 10000 < %(holdout_units)s AS holdout
        FROM (
            SELECT m.id AS member_id,
                   ('x' || substr(encode(sha256(convert_to(%(campaign)s::text || ':' || m.id, 'UTF8')), 'hex'), 1, 16))
                       ::bit(64)::bigint AS h
            FROM members_member m JOIN members_membersegment s ON s.member_id = m.id
            WHERE m.status = 'active' AND s.segment = 'lapsed' {plaza_filter}
              AND NOT EXISTS (SELECT 1 FROM bench_campaigntarget t WHERE t.member_id = m.id
                              AND (t.campaign_id = %(campaign)s OR t.targeted_at > %(at)s - make_interval(days => %(cooldown)s)))
        ) hashed
    ) drawn
    """,
    """
    INSERT INTO bench_coupon (id, template_id, member_id, seq, code, status, valid_from, valid_until, issued_via, issue_key,
                              created_at)
    SELECT coupon_id, %(template)s, member_id, 1, upper(substr(md5(coupon_id::text || random()::text), 1, 16)), 'issued',
           %(at)s, %(at)s + make_interval(days => %(valid_days)s), 'campaign', 'campaign:' || %(campaign)s || ':' || member_id,
           %(at)s
    FROM bench_drawn WHERE NOT holdout
    """,
    """
    INSERT INTO bench_couponevent (coupon_id, kind, detail, created_at)
    SELECT coupon_id, 'issued', jsonb_build_object('via', 'campaign', 'campaign_id', %(campaign)s), %(at)s
    FROM bench_drawn WHERE NOT holdout
    """,
    """
    UPDATE bench_coupontemplate SET issued_count = issued_count + (SELECT count(*) FROM bench_drawn WHERE NOT holdout)
    WHERE id = %(template)s
    """,
    """
    INSERT INTO bench_push (id, member_id, event, event_key, title, body, link, data, status, channel, recipient, payload,
                            attempts, next_attempt_at, last_error, created_at)
    SELECT push_id, member_id, 'wake_up', 'campaign:' || %(campaign)s || ':' || member_id, %(title)s, %(body)s, '',
           jsonb_build_object('campaign_id', %(campaign)s, 'coupon_id', coupon_id), 'pending', '', '', '{}', 0,
           now() + make_interval(secs => %(grace_seconds)s), '', now()
    FROM bench_drawn WHERE NOT holdout
    """,
    """
    INSERT INTO bench_inboxmessage (member_id, push_id, title, body, link, created_at)
    SELECT member_id, push_id, %(title)s, %(body)s, '', now() FROM bench_drawn WHERE NOT holdout
    """,
    """
    INSERT INTO bench_campaigntarget (campaign_id, member_id, "group", targeted_at, coupon_id, push_id, refused)
    SELECT %(campaign)s, member_id, CASE WHEN holdout THEN 'holdout' ELSE 'treated' END, %(at)s, coupon_id, push_id, ''
    FROM bench_drawn
    """,
]
# What the service wrote against what the bare script wrote: the targets and their groups,
# and a coupon and a push for each treated target (the holdout with neither).
CAMPAIGN_DIFF_SQL = """
SELECT (SELECT count(*) FROM coupons_campaigntarget a FULL JOIN bench_campaigntarget b USING (member_id)
        WHERE a.member_id IS NULL OR b.member_id IS NULL OR a."group" <> b."group"),
       (SELECT count(*) FROM coupons_campaigntarget WHERE "group" = 'treated' AND (coupon_id IS NULL OR push_id IS NULL)),
       (SELECT count(*) FROM coupons_campaigntarget WHERE "group" = 'holdout' AND (coupon_id IS NOT NULL OR push_id IS NOT NULL)),
       (SELECT count(*) FROM coupons_campaigntarget WHERE "group" = 'treated')
           - (SELECT count(*) FROM coupons_coupon WHERE issued_via = 'campaign'),
       (SELECT count(*) FROM coupons_campaigntarget WHERE "group" = 'treated')
           - (SELECT count(*) FROM members_push WHERE event = 'wake_up')
"""
CAMPAIGN_DIFF_PARTS = ("members targeted by one side only, or in another group", "treated targets without a coupon or a push",
                       "holdout targets with a coupon or a push", "treated targets less campaign coupons",
                       "treated targets less wake-up pushes")


# --- in the parent ------------------------------------------------------------------------


@dataclass
class Side:
    """One side of a comparison, timed from its client."""

    seconds: float
    statements: int
    client_cpu: float | None = None
    server_cpu: float | None = None
    in_sql: float | None = None  # the service: time inside its statements, round trips included
    shapes: list[tuple[str, int, float]] = field(default_factory=list)  # the service: (shape, count, seconds)


@dataclass
class Run:
    version: str = ""
    load_at_start: tuple[float, float, float] = (0.0, 0.0, 0.0)
    others_busy: list[float] = field(default_factory=list)
    load_seconds: dict[str, float] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    due: int = 0
    database_bytes: int = 0  # after the ledger's load; the bare copy is as big
    expire_bare: Side | None = None
    expire_app: Side | None = None
    expired: int | None = None
    expire_batch: int = 0
    segments_bare: Side | None = None
    segments_app: Side | None = None
    segments_batches: int = 0
    segment_sizes_app: dict[str, tuple[int, int]] = field(default_factory=dict)
    segment_sizes_bare: dict[str, tuple[int, int]] = field(default_factory=dict)
    threshold_app: int | None = None
    threshold_bare: int | None = None
    campaign_bare: Side | None = None
    campaign_app: Side | None = None
    campaign_targets: int = 0  # the service's: both groups
    campaign_holdout: int = 0
    campaign_issued: int = 0
    campaign_lapsed: int = 0  # the lapsed segment the audience was taken from
    campaign_queued: int | None = None  # delivery tasks the service queued (django-q2's ORM broker)


def timed_sql(server: PgServer, database: str, statements: list[str], params: dict) -> Side:
    """``statements`` in one transaction, timed from BEGIN to COMMIT, with the CPU of the backend."""
    with server._connect(database) as conn:
        backend = conn.info.backend_pid
        server0 = cpu_of([backend]).get(backend)
        start = time.perf_counter()
        with conn.transaction():
            for sql in statements:
                conn.execute(sql, params)
        seconds = time.perf_counter() - start
        server1 = cpu_of([backend]).get(backend)
    return Side(seconds=seconds, statements=len(statements),
                server_cpu=server1 - server0 if server0 is not None and server1 is not None else None)


def query(server: PgServer, database: str, sql: str, params: dict | None = None) -> list[tuple]:
    with server._connect(database) as conn:
        return conn.execute(sql, params).fetchall()


def bulk_load(server: PgServer, database: str, args, world: dict) -> dict[str, float]:
    """Members, wallets, grant transactions, lots and entries, set-based. Foreign keys are
    checked row by row at commit unless the role may turn their triggers off (a superuser:
    replica mode, as ``pg_restore --disable-triggers``): the rows are consistent by
    construction, and the ledger check after the run reads them all."""
    import psycopg

    timings = {}
    with server._connect(database) as conn:
        try:
            conn.execute("SET session_replication_role = replica")
        except psycopg.errors.InsufficientPrivilege:
            log("  (not a superuser: foreign keys are checked as the rows load, which takes longer)")
        start = time.perf_counter()
        with conn.transaction():
            bases = {name: conn.execute(f"SELECT coalesce(max(id), 0) FROM {table}").fetchone()[0] for name, table in TABLES.items()}
            params = bases | world | {
                "members": args.members, "lots": args.lots, "due_bp": round(args.due_share * 10000), "banned_every": BANNED_EVERY,
            }
            conn.execute(LOTS_SQL, params)
            for sql, table in zip(LOAD_SQL, TABLES.values(), strict=True):
                began = time.perf_counter()
                conn.execute(sql, params)
                timings[table] = time.perf_counter() - began
                log(f"  {table}: {timings[table]:.1f} s")
            for table in TABLES.values():
                conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
        timings["ledger, all told"] = time.perf_counter() - start
    return timings


def load_visits(server: PgServer, database: str, args, world: dict) -> float:
    with server._connect(database) as conn:
        start = time.perf_counter()
        with conn.transaction():
            member_base = conn.execute("SELECT min(id) - 1 FROM members_member").fetchone()[0]
            conn.execute("SELECT setseed(0.42)")  # the same visits every run
            conn.execute(VISITS_SQL, {
                "m0": member_base, "members": args.members, "visitor_share": args.visitors,
                "regular_cut": args.visitors * REGULAR_SHARE, "spread": 2 * args.visits - 1, "tz": world["time_zone"],
                "visit_days": VISIT_DAYS, "plaza": world["plaza"], "stores": world["stores"], "n_stores": len(world["stores"]),
            })
        return time.perf_counter() - start


def execute(server: PgServer, database: str, sql: str, params: dict) -> None:
    with server._connect(database) as conn:
        conn.execute(sql, params)


def _ormq_rows(server: PgServer, database: str) -> int | None:
    """Tasks waiting in django-q2's ORM broker; None when REDIS_URL makes Redis the broker."""
    if os.environ.get("REDIS_URL"):
        return None
    return query(server, database, "SELECT count(*) FROM django_q_ormq")[0][0]


def copy_database(server: PgServer, source: str, target: str) -> None:
    """``target`` as a copy of ``source``, files copied (PostgreSQL 15's default logs every page)."""
    server.drop(target)
    strategy = " STRATEGY FILE_COPY" if int(server.setting("server_version_num")) >= 150000 else ""
    with server._connect() as conn:
        conn.execute(f'CREATE DATABASE "{target}" TEMPLATE "{source}"{strategy}')


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="The nightly jobs (expiry, segment tagging, a wake-up campaign) beside bare SQL doing the same row work."
    )
    parser.add_argument("--members", type=int, help="members, each with a wallet (default 500000; --quick 100000)")
    parser.add_argument("--lots", type=int, help="lots, spread over the members (default: as many as members)")
    parser.add_argument("--due-share", type=float, default=0.2, help="share of the lots past their expiry (default %(default)s)")
    parser.add_argument("--visitors", type=float, default=0.6, help="share of the members with visits (default %(default)s)")
    parser.add_argument("--visits", type=int, default=3, help="visits per visitor on average, over 18 months (default %(default)s)")
    parser.add_argument(
        "--campaign-members", type=int,
        help="the wake-up campaign's audience: this many of the lapsed members (default 10000; --quick 2000; "
        "0: every lapsed member)",
    )
    parser.add_argument("--quick", action="store_true", help="smoke test: 100,000 members and lots")
    parser.add_argument(
        "--server", default=os.environ.get("BENCH_PG_SERVER", "postgres://postgres@127.0.0.1:5432"),
        help="PostgreSQL server, as postgres://user[:password]@host:port (default $BENCH_PG_SERVER or %(default)s)",
    )
    parser.add_argument("--db", default="o2o_bench_jobs", help="the service's database: dropped and recreated (default %(default)s)")
    parser.add_argument("--bare-db", default="o2o_bench_jobs_bare", help="the copy the bare expiry runs in: dropped and recreated (default %(default)s)")
    parser.add_argument("--keep", action="store_true", help="keep both databases afterwards")
    args = parser.parse_args(argv)
    if args.members is None:
        args.members = 100_000 if args.quick else 500_000
    if args.lots is None:
        args.lots = args.members
    if args.campaign_members is None:
        args.campaign_members = 2_000 if args.quick else 10_000
    if args.campaign_members < 0:
        parser.error("--campaign-members must be 0 (every lapsed member) or more")
    if args.members < 1 or args.lots < 1 or args.visits < 1:
        parser.error("--members, --lots and --visits must be 1 or more")
    if not 0 <= args.due_share <= 1 or not 0 <= args.visitors <= 1:
        parser.error("--due-share and --visitors are shares, 0 to 1")
    own = urlsplit(os.environ.get("DATABASE_URL", "")).path.lstrip("/")
    for database in (args.db, args.bare_db):
        if database in {"postgres", own} or database.startswith("template"):
            parser.error(f"refusing to drop {database!r}: a system database or this environment's DATABASE_URL")
    if args.db == args.bare_db:
        parser.error("--db and --bare-db must differ")
    return args


def _side(timed: dict) -> Side:
    return Side(seconds=timed["seconds"], statements=timed["statements"], client_cpu=timed["client_cpu"],
                server_cpu=timed["server_cpu"], in_sql=timed["in_sql"], shapes=timed["shapes"])


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells):
        return " | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(headers), "-+-".join("-" * w for w in widths), *(line(r) for r in rows)])


def _cpu(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds:.1f}"


def report(args, server: PgServer, run: Run) -> None:
    print(
        f"\nnightly jobs on PostgreSQL {run.version} at {server.host}:{server.port} (databases {args.db}, {args.bare_db}), "
        f"{os.cpu_count()} CPUs"
    )
    sizes = ", ".join(f"{n:,} {name}" for name, n in run.sizes.items())
    print(f"loaded: {sizes}; due lots {run.due:,} ({args.due_share:.0%} asked); "
          f"database {run.database_bytes / 2**20:,.0f} MiB before the visits, twice that with the bare expiry's copy")
    loads = ", ".join(f"{table} {seconds:.0f} s" for table, seconds in run.load_seconds.items())
    print(f"bulk load (SQL, not measured against anything): {loads}")
    busy = ", ".join(f"{b:.0%}" for b in run.others_busy) or "—"
    print(f"load average at start {run.load_at_start[0]:.2f}; CPU busy with other work just before each measurement: {busy}")
    if max(run.others_busy, default=0.0) >= OTHERS_BUSY_WARNING:
        print("NOISY: other work was running; it takes CPU from both sides, measured at different moments.")

    rows = []

    def row(job: str, count: int, unit: str, app: Side | None, bare: Side | None) -> None:
        if app is None and bare is None:
            return
        rows.append([
            job, f"{count:,} {unit}",
            f"{app.seconds:.1f}" if app else "—", f"{bare.seconds:.1f}" if bare else "—",
            f"{app.seconds / bare.seconds:.1f}×" if app and bare and bare.seconds else "—",
            f"{count / app.seconds:,.0f}" if app and app.seconds else "—",
            f"{count / bare.seconds:,.0f}" if bare and bare.seconds else "—",
        ])

    row("expiry: points_expire_due()", run.due, "lots", run.expire_app, run.expire_bare)
    tagged = sum(members for members, _ in (run.segment_sizes_bare or run.segment_sizes_app).values())
    row("segment tagging: segments_tag()", tagged, "members", run.segments_app, run.segments_bare)
    row("wake-up campaign: campaign_run()", run.campaign_targets, "members", run.campaign_app, run.campaign_bare)
    print()
    if rows:
        print(_table(["job", "rows", "service s", "bare SQL s", "service/bare", "service rows/s", "bare rows/s"], rows))
    if run.campaign_app is not None:
        audience = (f"{args.campaign_members:,} of the {run.campaign_lapsed:,} lapsed members" if args.campaign_members
                    else f"every lapsed member ({run.campaign_lapsed:,})")
        queued = "" if run.campaign_queued is None else f"; the service also queued {run.campaign_queued:,} delivery tasks"
        print(f"wake-up campaign: audience {audience}; {run.campaign_targets:,} targeted, {run.campaign_holdout:,} held out, "
              f"{run.campaign_issued:,} coupons and pushes{queued}")

    print()
    for label, aim_ratio, app, bare in (("expiry", AIM_EXPIRY_RATIO, run.expire_app, run.expire_bare),
                                        ("the wake-up campaign", AIM_CAMPAIGN_RATIO, run.campaign_app, run.campaign_bare)):
        aim = f"aim: {label} within {aim_ratio:g}× of the bare statements"
        if app and bare:
            ratio = app.seconds / bare.seconds
            print(f"{aim} — {'PASS' if ratio <= aim_ratio else 'MISS'} ({ratio:.1f}×)")
        else:
            print(f"{aim} — not measured")

    print(
        "\nwhere the time went, s (in SQL: inside the service's statements, round trips included; client CPU: Python,\n"
        "Django and psycopg; server CPU: the session's PostgreSQL backend)\n"
    )
    detail = []
    batches = -(-run.due // run.expire_batch) if run.expire_batch else 0
    for label, side, work in (
        ("expiry, service", run.expire_app, f"{batches:,} batches of {run.expire_batch}"),
        ("expiry, bare SQL", run.expire_bare, "one transaction"),
        ("segments, service", run.segments_app, f"{run.segments_batches:,} batches"),
        ("segments, bare SQL", run.segments_bare, "one INSERT … SELECT"),
        ("campaign, service", run.campaign_app, f"{run.campaign_targets:,} targets, {run.campaign_issued:,} delivered"),
        ("campaign, bare SQL", run.campaign_bare, "one transaction"),
    ):
        if side is not None:
            detail.append([label, work, f"{side.statements:,}", f"{side.seconds:.1f}", _cpu(side.in_sql),
                           _cpu(side.client_cpu), _cpu(side.server_cpu)])
    if detail:
        print(_table(["side", "work", "statements", "wall", "in SQL", "client CPU", "server CPU"], detail))
    for label, side in (("expiry", run.expire_app), ("segments", run.segments_app), ("campaign", run.campaign_app)):
        if side is not None and side.shapes:
            print(f"\nthe {label} service's statements, by time in SQL (the first {STATEMENT_SHAPES_SHOWN})\n")
            print(_table(
                ["statement", "count", "s", "ms each"],
                [[shape, f"{n:,}", f"{seconds:.1f}", f"{seconds / n * 1000:.2f}"]
                 for shape, n, seconds in side.shapes[:STATEMENT_SHAPES_SHOWN]],
            ))

    if run.segment_sizes_app or run.segment_sizes_bare:
        print("\nsegments (members / of them high-value), service beside bare SQL")
        print(_table(
            ["segment", "service", "bare SQL"],
            [[name, "{:,} / {:,}".format(*run.segment_sizes_app.get(name, (0, 0))),
              "{:,} / {:,}".format(*run.segment_sizes_bare.get(name, (0, 0)))] for name in SEGMENT_ORDER],
        ))
        print(f"high-value threshold, 12-month spend in fen: service {run.threshold_app}, bare SQL {run.threshold_bare}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    server = PgServer.parse(args.server)
    run = Run(load_at_start=os.getloadavg())
    try:
        run.version = server.setting("server_version")
    except Exception as exc:  # noqa: BLE001 — say what is wrong, not a traceback
        raise SystemExit(f"cannot reach PostgreSQL at {args.server}: {exc}") from None
    env = django_env(DATABASE_URL=server.url(args.db))
    checks: list[tuple[str, list[str]]] = []  # (what was checked, its violations)
    reported = False

    started = time.monotonic()

    def progress(message: str) -> None:
        minutes, seconds = divmod(int(time.monotonic() - started), 60)
        log(f"[{minutes:02d}:{seconds:02d}] {message}")

    def settle() -> None:
        server.checkpoint()
        busy = cpu_busy()
        if busy is not None:
            run.others_busy.append(busy)

    try:
        progress(f"PostgreSQL: creating {args.db}, migrating, seeding the plaza and {MERCHANTS} merchants …")
        server.recreate(args.db)
        manage(env, "migrate", "--no-input", "--verbosity=0")
        world = in_django(env, world_seed)
        accounts = dict(query(server, args.db, "SELECT kind, id FROM members_account WHERE kind IN ('expired', 'pending')"))
        world |= {"expired": accounts["expired"], "pending": accounts["pending"]}

        progress(f"bulk load: {args.members:,} members with wallets, {args.lots:,} lots with their grants and entries …")
        run.load_seconds = bulk_load(server, args.db, args, world)
        server.run(args.db, "VACUUM ANALYZE")
        run.database_bytes = query(server, args.db, "SELECT pg_database_size(current_database())")[0][0]
        run.due = query(server, args.db, "SELECT count(*) FROM members_lot WHERE remaining > 0 AND expires_at <= now()")[0][0]
        run.sizes = dict(zip(
            ("members", "lots", "transactions", "entries"),
            query(server, args.db, "SELECT (SELECT count(*) FROM members_member), (SELECT count(*) FROM members_lot), "
                                   "(SELECT count(*) FROM members_pointstransaction), (SELECT count(*) FROM members_entry)")[0],
            strict=True,
        ))

        progress(f"expiry: copying {args.db} to {args.bare_db} …")
        copy_database(server, args.db, args.bare_db)
        settle()
        progress(f"expiry, bare SQL: {run.due:,} due lots in one transaction …")
        run.expire_bare = timed_sql(server, args.bare_db, EXPIRE_SQL, {"tz": world["time_zone"], **world})
        progress(f"  {run.expire_bare.seconds:.1f} s")
        settle()
        progress(f"expiry, points_expire_due(): {run.due:,} due lots …")
        timed = in_django(env, expire_job)
        run.expire_app, run.expired, run.expire_batch = _side(timed), timed["expired"], timed["batch"]
        progress(f"  {run.expire_app.seconds:.1f} s")

        progress("visits: bulk load …")
        run.load_seconds["members_visit"] = load_visits(server, args.db, args, world)
        server.run(args.db, "VACUUM ANALYZE members_visit")
        run.sizes["visits"] = query(server, args.db, "SELECT count(*) FROM members_visit")[0][0]
        server.run(args.db, "CREATE TABLE bench_segment (LIKE members_membersegment INCLUDING ALL)")
        as_of = datetime.now(UTC)
        params = {"as_of": as_of, "tz": world["time_zone"], "lapsed_days": world["lapsed_days"],
                  "loyal_months": world["loyal_months"], "min_visits": world["occasional_min_visits"],
                  "share": world["high_value_share_pct"]}
        settle()
        progress("segments, bare SQL: one INSERT … SELECT …")
        run.segments_bare = timed_sql(server, args.db, [SEGMENTS_SQL], params)
        progress(f"  {run.segments_bare.seconds:.1f} s")
        settle()
        progress("segments, segments_tag() …")
        timed = in_django(env, segments_job, as_of=as_of.isoformat())
        run.segments_app, run.segments_batches = _side(timed), timed["batches"]
        run.segment_sizes_app, run.threshold_app = timed["sizes"], timed["threshold_fen"]
        progress(f"  {run.segments_app.seconds:.1f} s")
        run.segment_sizes_bare = {
            segment: (members, high) for segment, members, high in query(
                server, args.db,
                "SELECT segment, count(*), count(*) FILTER (WHERE high_value) FROM bench_segment GROUP BY segment")
        }
        run.threshold_bare = query(server, args.db, "SELECT min(spend_12m_fen) FROM bench_segment WHERE high_value")[0][0]

        progress("wake-up campaign: the campaign, its audience, the bare script's scratch tables …")
        campaign = in_django(env, campaign_setup, own_plaza=args.campaign_members > 0)
        run.campaign_lapsed = query(server, args.db, "SELECT count(*) FROM members_membersegment WHERE segment = 'lapsed'")[0][0]
        if args.campaign_members > 0:
            execute(server, args.db, CAMPAIGN_PLAZA_SQL, {"plaza": campaign["plaza"], "cap": args.campaign_members})
            server.run(args.db, "VACUUM ANALYZE members_member")
        for scratch, table in CAMPAIGN_SCRATCH.items():
            server.run(args.db, f"CREATE TABLE {scratch} (LIKE {table} INCLUDING ALL)")
        execute(server, args.db, "INSERT INTO bench_coupontemplate SELECT * FROM coupons_coupontemplate WHERE id = %(template)s",
                campaign)
        plaza_filter = "AND m.last_visit_plaza_id = %(plaza)s" if campaign["plaza"] is not None else ""
        statements = [CAMPAIGN_SQL[0].replace("{plaza_filter}", plaza_filter), *CAMPAIGN_SQL[1:]]
        at = datetime.now(UTC)
        settle()
        progress("wake-up campaign, bare SQL: the audience, the draw, coupons, pushes and targets in one transaction …")
        run.campaign_bare = timed_sql(server, args.db, statements, {**campaign, "at": at})
        progress(f"  {run.campaign_bare.seconds:.1f} s")
        queued_before = _ormq_rows(server, args.db)
        settle()
        progress("wake-up campaign, campaign_run() …")
        timed = in_django(env, campaign_job, campaign_id=campaign["campaign"], at=at.isoformat())
        run.campaign_app = _side(timed)
        run.campaign_targets, run.campaign_holdout, run.campaign_issued = timed["targeted"], timed["holdout"], timed["issued"]
        queued_after = _ormq_rows(server, args.db)
        if queued_before is not None and queued_after is not None:
            run.campaign_queued = queued_after - queued_before
        progress(f"  {run.campaign_app.seconds:.1f} s")

        progress("checking what the jobs wrote …")
        violations = [] if run.expired == run.due else [f"the service expired {run.expired:,} lots, {run.due:,} were due"]
        checks.append((f"expired lots = due lots ({run.due:,})", violations))
        app_digest = query(server, args.db, EXPIRY_DIGEST_SQL)[0]
        bare_digest = query(server, args.bare_db, EXPIRY_DIGEST_SQL)[0]
        checks.append(("the service and the bare script wrote the same expiry", [
            f"{part} differ" + (f": {a:,} against {b:,}" if i == 0 else "")
            for i, (part, a, b) in enumerate(zip(DIGEST_PARTS, app_digest, bare_digest, strict=True)) if a != b
        ]))
        diff = query(server, args.db, SEGMENTS_DIFF_SQL)[0]
        violations = [f"{n:,} {part}" for part, n in zip(SEGMENTS_DIFF_PARTS, diff, strict=True) if n]
        if violations:
            violations += [f"member #{r[0]}: service {r[1]}/{r[3]}/{r[5]}, bare {r[2]}/{r[4]}/{r[6]} (segment/high-value/spend)"
                           for r in query(server, args.db, SEGMENTS_EXAMPLES_SQL)]
        checks.append(("the service and the bare statement agree on every member's segment, tag and spend", violations))
        diff = query(server, args.db, CAMPAIGN_DIFF_SQL)[0]
        violations = [f"{n:,} {part}" for part, n in zip(CAMPAIGN_DIFF_PARTS, diff, strict=True) if n]
        if run.campaign_targets == 0:
            violations.append("the campaign targeted nobody: no lapsed member in its audience")
        checks.append(("the campaign's service and bare script targeted the same members in the same groups, "
                       "a coupon and a push for each treated one, nothing for the holdout", violations))
        progress("checking the ledger's invariants (bench/ledger.py's ledger_check) …")
        ledger = in_django(env, ledger_invariants, {"expire:": run.due})
        progress("done")

        reported = True
        report(args, server, run)
        print()
        healthy = True
        for label, violations in checks:
            print(f"{label}: " + ("OK" if not violations else f"{len(violations)} VIOLATION(S)"))
            for v in violations:
                print(f"  {v}")
            healthy = healthy and not violations
        healthy = report_check(f"PostgreSQL {args.db} (one expiry transaction per due lot)", *ledger) and healthy
    except BaseException:
        if (run.expire_app or run.expire_bare) and not reported:
            print("\n(partial results: the run failed before its end, see stderr)")
            report(args, server, run)
        raise
    finally:
        if args.keep:
            log(f"kept: databases {args.db} and {args.bare_db}")
        else:
            for database in (args.db, args.bare_db):
                try:
                    server.drop(database)
                except Exception as exc:  # noqa: BLE001 — cleanup must not hide the run's own error
                    log(f"could not drop {database}: {exc}")
    # Timings are information, never a failure; a job that wrote the wrong rows is.
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
