"""Verified payment notifications per second over HTTP, beside the bare ledger earn, in one run.

    .venv/bin/python bench/notify.py            # 1,000 notifications, 16 senders, storm 200 × 5
    .venv/bin/python bench/notify.py --quick    # smoke test: 200 notifications, 4 senders, storm 50 × 5

The sandbox gateway plays the platform: its notifications are signed with HMAC-SHA256
under the key the migration made, so each one goes through the real endpoint, the real
verification and ``order_payment_confirm``. The settings allow O2O_SANDBOX only with
DEBUG on, so DEBUG is on in every Django process of the run, the earn workers'
included: both sides pay its per-query bookkeeping (in trials about a tenth more CPU
an earn), and both rates sit a little below what bench/ledger.py and bench/api.py
measure with DEBUG off.

On a fresh PostgreSQL database (``--db``, dropped and recreated, dropped again at the
end unless ``--keep``), a Redis database index (``--redis-db``, flushed before and
after: cache and task queue, as docs/deploy.md runs them) and bench/ledger.py's world (a
plaza, merchants funding 1–2 %, members with an opening grant, a quarter of them on a
higher tier), one after the other, each after a CHECKPOINT:

1. **pgbench** (tpcb-like) at ``--concurrency`` clients on its own database, the
   yardstick bench/ledger.py uses;
2. **notify**: ``--notifications`` unpaid sandbox orders (``order_create``, channel
   "sandbox", client "cashier", a random member and store, no points used) are opened
   and their trades paid (``trade_pay``) beforehand, which gives each one's signed
   notification; then gunicorn (``o2o_site.wsgi`` on a free loopback port, 4 workers ×
   4 threads as bench/api.py runs it) gets them, POSTed to /payments/notify/sandbox/ by
   ``--concurrency`` sender threads, one keep-alive connection each, after a warm-up
   of a few notifications per sender; each request is timed;
3. **earn**: as many ``members.ledger.points_earn`` calls (bench/ledger.py's earn: a
   random member and store, a fresh key) from as many worker processes, each timed;
4. **duplicate storm**: ``--storm`` more orders, each a different member's, whose
   notifications are each delivered ``COPIES`` times at once (senders in groups of
   five meet at a barrier before each delivery).

A rate is the operations completed over the phase's wall time, from the release of
every sender (or worker) to the last answer. It prints a table of the four (ops/s,
p50/p99 latency, each against pgbench), the ratio notify/earn, the CPU one operation
cost each side (gunicorn, PostgreSQL backends, senders or earn workers), every answer
by kind, then the checks: each notification answered SUCCESS paid its order with
exactly one earn and one processed PaymentNotification, and one never answered SUCCESS
earned nothing; in the storm each order earned once, its member's points moved by
exactly that earn in one transaction, and its copies were stored as 1 processed and
the rest duplicates ("points once: yes"); and the ledger's invariants. Timings are
information; a failed check exits with status 1.

A notification is bigger work than an earn: it verifies, locks the order, pays it
(with its event), earns with the shopper present (so a higher tier's extra, pending),
records a visit, writes a push and its inbox message, enqueues the push, and stores
the notification: about 28 statements to an earn's 10.

Progress goes to stderr, results to stdout.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the project, importable from bench/

from bench._common import (  # noqa: E402 — the path above makes the project importable
    REPO_DIR,
    SPAWN,
    PgServer,
    Result,
    cpu_busy,
    django_env,
    django_pool,
    error_label,
    in_django,
    log,
    manage,
    percentile,
    pgbench_init,
    pgbench_run,
)
from bench.api import (  # noqa: E402
    GUNICORN,
    HOST,
    cpu_of,
    free_port,
    gunicorn_pids,
    postgres_backend_pids,
    redis_flush,
    start_gunicorn,
    stop_gunicorn,
)
from bench.ledger import EARN_AMOUNT_FEN, report_check, seed  # noqa: E402

NOTIFY_PATH = "/payments/notify/sandbox/"
COPIES = 5  # deliveries of each notification in the storm, all at once
WARMUP_PER_SENDER = 4  # unmeasured notifications per sender first: imports, connections, caches
EARN_WARMUP = 3  # unmeasured earns per worker, as bench/_common.measure warms up
PREPARE_PROCESSES = 2  # orders are opened and paid beforehand in this many processes at once
REQUEST_TIMEOUT = 30.0
BARRIER_TIMEOUT = 300.0
# The sandbox refuses a notification signed longer ago than this (TIMESTAMP_WINDOW_SECONDS);
# each set is signed just before its phase, which takes well under it.
SIGNATURE_WINDOW_SECONDS = 300


# --- in the Django children ---------------------------------------------------------------


def prepare(*, count: int, site_url: str, distinct_members: bool, seed_text: str, part: int = 0, parts: int = 1) -> dict:
    """Share ``part`` of ``parts`` of ``count`` unpaid sandbox orders, their trades paid,
    and the signed notifications.

    Every part draws the same payers (one order per member for ``distinct_members``)
    and takes its own slice of them. Returns ``notes`` as (out_trade_no, headers, body)
    and, for ``distinct_members``, each payer's points and transaction count now.
    """
    from members.models import Member, Store
    from payments import orders
    from payments.gateways import sandbox

    draw = random.Random(seed_text)
    members = list(Member.objects.filter(status=Member.Status.ACTIVE).order_by("pk"))
    stores = list(Store.objects.select_related("merchant", "plaza").order_by("pk"))
    payers = draw.sample(members, count) if distinct_members else [draw.choice(members) for _ in range(count)]
    payers = payers[part::parts]
    rng = random.Random(f"{seed_text}:{part}")
    signed_at = time.time()
    notes = []
    for member in payers:
        order = orders.order_create(
            store=rng.choice(stores), member=member, amount_fen=rng.randint(*EARN_AMOUNT_FEN), channel="sandbox",
            client="cashier", site_url=site_url,
        )
        headers, body = sandbox.trade_pay(out_trade_no=order.out_trade_no)
        notes.append((order.out_trade_no, headers, body))
    before = {}
    if distinct_members:
        points, counts = member_points([m.pk for m in payers])
        before = {m.pk: (points[m.pk], counts[m.pk]) for m in payers}
    return {"notes": notes, "before": before, "signed_at": signed_at}


def member_points(member_ids: list[int]) -> tuple[Counter, Counter]:
    """Each member's points, spendable and pending together (what a transaction's
    ``points`` moves), and how many transactions name the member."""
    from django.db.models import Sum

    from members.models import Account, Lot, PointsTransaction

    points = Counter(dict(
        Account.objects.filter(kind=Account.Kind.WALLET, member_id__in=member_ids).values_list("member_id", "balance")
    ))
    points.update(dict(
        Lot.objects.filter(member_id__in=member_ids).exclude(status=Lot.Status.AVAILABLE).values("member_id")
        .annotate(s=Sum("remaining")).values_list("member_id", "s")
    ))
    counts = Counter(PointsTransaction.objects.filter(member_id__in=member_ids).values_list("member_id", flat=True))
    return points, counts


def ledger_invariants(expected: dict[str, int]) -> tuple[dict[str, int], list[str]]:
    """DESIGN.md's ledger invariants over the whole database, pending points included
    (as tests/factories.py's assert_ledger_invariants states them), and whether it holds
    exactly ``expected`` transactions under each idempotency-key prefix.

    bench/ledger.py's ``ledger_check`` compares a wallet's balance with all its lots;
    an order's earn has the shopper present, so a higher tier's extra is a *pending*
    lot, outside the balance, and that check would call every such wallet broken.
    """
    from django.db.models import F, OuterRef, Q, Subquery, Sum
    from django.db.models.functions import Coalesce

    from members.models import Account, Entry, Lot, PointsTransaction

    shown = 10
    violations: list[str] = []

    def listed(rows, describe, more: str) -> None:
        for row in rows[:shown]:
            violations.append(describe(row))
        if (n := rows.count()) > shown:
            violations.append(f"… {n - shown} more {more}")

    def summed(rows, value: str):
        # One correlated sum per row; two joined Sum()s would multiply each other's rows.
        return Coalesce(Subquery(rows.annotate(s=Sum(value)).values("s")), 0)

    listed(Entry.objects.values("transaction_id").annotate(s=Sum("amount")).exclude(s=0).order_by("transaction_id"),
           lambda r: f"transaction #{r['transaction_id']}: entries sum to {r['s']}, not 0", "unbalanced transactions")

    wallet_entries = Entry.objects.filter(account=OuterRef("pk")).order_by().values("account")
    available = Lot.objects.filter(account=OuterRef("pk"), status=Lot.Status.AVAILABLE).order_by().values("account")
    wallets = Account.objects.filter(kind=Account.Kind.WALLET).annotate(
        entries_sum=summed(wallet_entries, "amount"), lots_sum=summed(available, "remaining")
    )
    listed(wallets.filter(~Q(balance=F("entries_sum")) | ~Q(balance=F("lots_sum")) | Q(balance__lt=0)).order_by("pk"),
           lambda w: f"wallet #{w.pk} (member #{w.member_id}): balance {w.balance}, Σ entries {w.entries_sum}, "
                     f"Σ available lots {w.lots_sum}", "wallets out of balance or negative")

    # Pending and held points sit beside the balance, on the mall's pending account.
    pending_entries = Entry.objects.filter(account__kind=Account.Kind.PENDING, member_id=OuterRef("member_id")).order_by().values("member_id")
    unavailable = Lot.objects.filter(member_id=OuterRef("member_id")).exclude(status=Lot.Status.AVAILABLE).order_by().values("member_id")
    listed(wallets.annotate(pending=summed(pending_entries, "amount"), unavailable=summed(unavailable, "remaining"))
           .exclude(pending=F("unavailable")).order_by("pk"),
           lambda w: f"member #{w.member_id}: Σ pending entries {w.pending}, Σ pending and held lots {w.unavailable}",
           "members whose pending points disagree")

    lot_entries = Entry.objects.filter(lot=OuterRef("pk")).order_by().values("lot")
    listed(Lot.objects.annotate(entries_sum=summed(lot_entries, "amount"))
           .filter(~Q(remaining=F("entries_sum")) | Q(remaining__lt=0)).order_by("pk"),
           lambda lot: f"lot #{lot.pk}: remaining {lot.remaining}, Σ its entries {lot.entries_sum}",
           "lots whose remaining is not Σ their entries")

    # A transaction's headline points are the member's net change, spendable and pending together.
    member_legs = Entry.objects.filter(
        transaction=OuterRef("pk"), account__kind__in=[Account.Kind.WALLET, Account.Kind.PENDING]
    ).order_by().values("transaction")
    listed(PointsTransaction.objects.exclude(kind=PointsTransaction.Kind.TRANSFER)
           .annotate(net=summed(member_legs, "amount")).exclude(points=F("net")).order_by("pk"),
           lambda t: f"{t.idempotency_key}: points {t.points}, the member's legs {t.net}",
           "transactions whose points are not the member's net change")

    for prefix, committed in expected.items():
        stored = PointsTransaction.objects.filter(idempotency_key__startswith=prefix).count()
        if stored != committed:
            violations.append(f"{prefix}*: {committed} committed, the database holds {stored}")

    sizes = {
        "transactions": PointsTransaction.objects.count(), "entries": Entry.objects.count(), "lots": Lot.objects.count(),
        "wallets": wallets.count(),
    }
    return sizes, violations


_start_barrier = None


def _earn_init(env: dict[str, str], start_barrier) -> None:
    global _start_barrier
    os.environ.clear()
    os.environ.update(env)
    if str(REPO_DIR) not in sys.path:
        sys.path.insert(0, str(REPO_DIR))
    import django

    django.setup()
    _start_barrier = start_barrier


def earn_task(*, tag: str, worker: int, count: int) -> dict:
    """``count`` earns, timed one by one, once every worker (and the parent) is ready."""
    from members import ledger
    from members.models import Member, Store

    rng = random.Random(f"earn:{tag}:{worker}")
    try:
        members = list(Member.objects.order_by("pk"))
        stores = list(Store.objects.select_related("merchant").order_by("pk"))

        def earn(seq: int) -> None:
            ledger.points_earn(
                member=rng.choice(members), store=rng.choice(stores), amount_fen=rng.randint(*EARN_AMOUNT_FEN),
                idempotency_key=f"bench:earn:{tag}:{worker}:{seq}",
            )

        for seq in range(EARN_WARMUP):  # the connection, caches, plans
            earn(-1 - seq)
    except BaseException:
        _start_barrier.abort()  # the others would wait for this one until the timeout
        raise
    _start_barrier.wait(timeout=BARRIER_TIMEOUT)
    latencies, errors = [], Counter()
    cpu0, start = time.process_time(), time.monotonic()  # CLOCK_MONOTONIC: one clock for every process
    for seq in range(count):
        began = time.monotonic()
        try:
            earn(seq)
        except Exception as exc:  # noqa: BLE001 — an error is a result to report
            errors[error_label(exc)] += 1
        else:
            latencies.append(time.monotonic() - began)
    return {
        "latencies": latencies, "errors": errors, "start": start, "end": time.monotonic(),
        "cpu": time.process_time() - cpu0, "committed": EARN_WARMUP + len(latencies),
    }


def notify_check(*, paid: list[str], unanswered: list[str], storm: list[str], storm_copies: dict[str, int],
                 before: dict[int, tuple[int, int]], expected_earns: int) -> tuple[dict[str, int], list[str], bool]:
    """What the run wrote: each order answered SUCCESS is paid with exactly one earn and
    one processed notification; an order never answered SUCCESS earned nothing; every
    storm order earned once (its member's points moved by exactly that earn, in one
    transaction) and stored its copies as 1 processed + the rest duplicates; then the
    ledger's invariants (``ledger_invariants``).

    Returns the table sizes, the violations, and whether points moved once per payment.
    """
    from django.db.models import Count, Q

    from members.models import PointsTransaction
    from payments.models import Order, PaymentNotification

    shown = 10
    violations: list[str] = []

    def earns_by_order(out_trade_nos: list[str]) -> Counter:
        return Counter(dict(
            PointsTransaction.objects.filter(kind=PointsTransaction.Kind.EARN, reference__in=out_trade_nos)
            .values("reference").annotate(n=Count("pk")).values_list("reference", "n")
        ))

    def notes_by_order(out_trade_nos: list[str]) -> dict[str, tuple[int, int, int]]:
        rows = (
            PaymentNotification.objects.filter(out_trade_no__in=out_trade_nos).values("out_trade_no")
            .annotate(
                processed=Count("pk", filter=Q(outcome=PaymentNotification.Outcome.PROCESSED)),
                duplicate=Count("pk", filter=Q(outcome=PaymentNotification.Outcome.DUPLICATE)),
                other=Count("pk", filter=~Q(outcome__in=[PaymentNotification.Outcome.PROCESSED,
                                                         PaymentNotification.Outcome.DUPLICATE])),
            )
        )
        return {r["out_trade_no"]: (r["processed"], r["duplicate"], r["other"]) for r in rows}

    def note(problem: str, found: list[str]) -> None:
        violations.extend(found[:shown])
        if len(found) > shown:
            violations.append(f"… {len(found) - shown} more orders {problem}")

    once = True
    status = dict(Order.objects.filter(out_trade_no__in=paid + unanswered + storm).values_list("out_trade_no", "status"))
    earns = earns_by_order(paid + unanswered + storm)
    stored = notes_by_order(paid + unanswered + storm)

    wrong = [f"order {o}: status {status.get(o)}, {earns[o]} earns, notifications (processed, duplicate, other) {stored.get(o)}"
             for o in paid if status.get(o) != Order.Status.PAID or earns[o] != 1 or stored.get(o) != (1, 0, 0)]
    note("answered SUCCESS but not paid once", wrong)
    once = once and not wrong
    wrong = [f"order {o}: never answered SUCCESS but has {earns[o]} earns" for o in unanswered if earns[o]]
    note("with points but no SUCCESS", wrong)
    once = once and not wrong

    storm_orders = Order.objects.filter(out_trade_no__in=storm).select_related("earn")
    points_now, txn_counts = member_points(list(before))
    wrong = []
    for order in storm_orders:
        points0, count0 = before[order.member_id]
        moved, made = points_now[order.member_id] - points0, txn_counts[order.member_id] - count0
        copies = storm_copies.get(order.out_trade_no, 0)  # the copies that got an answer
        stored_copies = stored.get(order.out_trade_no, (0, 0, 0))
        earned = order.earn.points if order.earn else None
        if (order.status != Order.Status.PAID or earns[order.out_trade_no] != 1 or made != 1 or moved != earned
                or stored_copies != (1, copies - 1, 0)):
            wrong.append(
                f"storm order {order.out_trade_no}: status {order.status}, {earns[order.out_trade_no]} earns, "
                f"member's points moved {moved} (earned {earned}) in {made} transactions, "
                f"{copies} copies answered, stored (processed, duplicate, other) {stored_copies}"
            )
    if len(storm_orders) != len(storm):
        wrong.insert(0, f"storm: {len(storm)} orders prepared, {len(storm_orders)} found")
    note("in the storm not paid exactly once", wrong)
    once = once and not wrong

    sizes, ledger_violations = ledger_invariants({"bench:earn:": expected_earns, "pay:sandbox:": len(paid) + len(storm)})
    violations += ledger_violations
    sizes = {"orders": Order.objects.count(), "notifications": PaymentNotification.objects.count(), **sizes}
    return sizes, violations, once


# --- the senders (threads of the parent; no Django) ------------------------------------------


@dataclass
class Phase:
    """One timed phase: each operation's latency, what came back, and its wall time."""

    label: str
    wall: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds, of the successes
    answers: Counter = field(default_factory=Counter)  # every answer: "200 SUCCESS", "400 FAIL stale", "no answer: …"
    succeeded: list[str] = field(default_factory=list)  # the orders answered SUCCESS (notify phases)
    copies: Counter = field(default_factory=Counter)  # out_trade_no → answered copies (storm)
    cpu: dict[str, float] = field(default_factory=dict)  # seconds spent over the phase, by side
    committed: int = 0  # earn: calls committed, warm-up included

    @property
    def ops(self) -> int:
        return len(self.latencies)

    def result(self) -> Result:
        latencies = sorted(self.latencies)
        return Result(
            tps=self.ops / self.wall if self.wall else 0.0, p50_ms=percentile(latencies, 0.50) * 1000,
            p99_ms=percentile(latencies, 0.99) * 1000, committed=self.ops,
        )


def _answer_label(status: int, payload: bytes) -> str:
    try:
        data = json.loads(payload)
        return f"{status} {data['code']}" + (f" {data['message']}" if data.get("message") else "")
    except (ValueError, KeyError, TypeError):
        return f"{status} {payload[:60]!r}"


def drive(port: int, plans: list[list[tuple[str, dict, bytes]]], groups: list[threading.Barrier | None], label: str) -> Phase:
    """One thread per plan, each POSTing its notifications in order on one keep-alive
    connection; a thread with a group barrier meets the rest of its group before each
    one. Nothing is retried: a platform would, and its retry would be one more duplicate."""
    phase = Phase(label)
    lock = threading.Lock()
    start = threading.Barrier(len(plans) + 1)
    crashed: list[BaseException] = []

    def sender(plan, group) -> None:
        conn = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT)
        latencies, answers, succeeded = [], Counter(), []
        cpu_start = None
        try:
            conn.connect()
            start.wait(timeout=BARRIER_TIMEOUT)
            cpu_start = time.thread_time()
            for out_trade_no, headers, body in plan:
                if group is not None:
                    group.wait(timeout=BARRIER_TIMEOUT)
                began = time.monotonic()
                try:
                    conn.request("POST", NOTIFY_PATH, body, {**headers, "Content-Type": "application/json",
                                                             "Host": f"{HOST}:{port}"})
                    response = conn.getresponse()
                    payload = response.read()  # all of it, or the connection cannot carry the next request
                    if response.will_close:
                        conn.close()
                except (OSError, http.client.HTTPException) as exc:
                    conn.close()  # reopened by the next request
                    answers[f"no answer: {type(exc).__name__}"] += 1
                    continue
                elapsed = time.monotonic() - began
                answer = _answer_label(response.status, payload)
                answers[answer] += 1
                if answer == "200 SUCCESS":
                    latencies.append(elapsed)
                    succeeded.append(out_trade_no)
        except BaseException as exc:  # noqa: BLE001 — handed to the parent below
            crashed.append(exc)
            start.abort()
            if group is not None:
                group.abort()
        finally:
            conn.close()
            cpu = time.thread_time() - cpu_start if cpu_start is not None else 0.0
            with lock:
                phase.cpu["senders"] = phase.cpu.get("senders", 0.0) + cpu
                phase.latencies.extend(latencies)
                phase.answers.update(answers)
                phase.succeeded.extend(succeeded)
                phase.copies.update(succeeded)

    threads = [threading.Thread(target=sender, args=(plan, group), daemon=True) for plan, group in zip(plans, groups)]
    for t in threads:
        t.start()
    try:
        start.wait(timeout=BARRIER_TIMEOUT)
    except threading.BrokenBarrierError:
        for t in threads:
            t.join()
        raise crashed[0] if crashed else RuntimeError("the senders did not start") from None
    began = time.monotonic()
    for t in threads:
        t.join()
    phase.wall = time.monotonic() - began
    if crashed:
        raise crashed[0]
    return phase


class CpuWatch:
    """The CPU a changing set of processes spends while the watch runs, sampled every
    second: one that exits meanwhile (gunicorn closes its database connections after
    CONN_MAX_AGE) keeps what it had spent at its last sample."""

    def __init__(self, pids):
        self.pids = pids
        self.first = cpu_of(pids())
        self.last = dict(self.first)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(1.0):
            self.last.update(cpu_of(self.pids()))

    def __enter__(self) -> CpuWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.last.update(cpu_of(self.pids()))

    @property
    def seconds(self) -> float:
        return sum(cpu - self.first.get(pid, 0.0) for pid, cpu in self.last.items())


def timed(phase_fn, *, master: int, database: str) -> Phase:
    """Run ``phase_fn()``; the CPU gunicorn and the database's backends spent meanwhile."""
    with CpuWatch(lambda: gunicorn_pids(master)) as server, CpuWatch(lambda: postgres_backend_pids(database)) as pg:
        phase = phase_fn()
    phase.cpu = {"gunicorn": server.seconds, "PostgreSQL": pg.seconds, **phase.cpu}
    return phase


def prepared(env: dict[str, str], *, parts: int, **kwargs) -> dict:
    """``prepare`` in ``parts`` processes at once; their notes in order, one ``before``."""
    with django_pool(parts, env) as pool:
        done = [f.result() for f in [pool.submit(prepare, part=i, parts=parts, **kwargs) for i in range(parts)]]
    return {
        "notes": [n for d in done for n in d["notes"]], "before": {k: v for d in done for k, v in d["before"].items()},
        "signed_at": min(d["signed_at"] for d in done),
    }


def earn_phase(env: dict[str, str], *, workers: int, count: int, database: str) -> Phase:
    """``count`` earns from ``workers`` processes, released together with the parent."""
    shares = [count // workers + (1 if i < count % workers else 0) for i in range(workers)]
    start = SPAWN.Barrier(workers + 1)
    phase = Phase("earn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=SPAWN, initializer=_earn_init, initargs=(env, start)) as pool:
        futures = [pool.submit(earn_task, tag="notify", worker=i, count=n) for i, n in enumerate(shares)]
        try:
            start.wait(timeout=BARRIER_TIMEOUT)
        except threading.BrokenBarrierError:
            for f in futures:
                f.result()  # the worker's own error
            raise
        with CpuWatch(lambda: postgres_backend_pids(database)) as pg:  # the workers are connected by now
            done = [f.result() for f in futures]
    phase.wall = max(d["end"] for d in done) - min(d["start"] for d in done)
    for d in done:
        phase.latencies.extend(d["latencies"])
        phase.answers.update(d["errors"])
    phase.answers["committed"] = sum(len(d["latencies"]) for d in done)
    phase.committed = sum(d["committed"] for d in done)
    phase.cpu = {"PostgreSQL": pg.seconds, "earn workers": sum(d["cpu"] for d in done)}
    return phase


# --- in the parent ---------------------------------------------------------------------------


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells):
        return " | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(headers), "-+-".join("-" * w for w in widths), *(line(r) for r in rows)])


def _counts(counter: Counter) -> str:
    return ", ".join(f"{label} ×{n:,}" for label, n in sorted(counter.items())) or "none"


@dataclass
class Run:
    version: str = ""
    load_at_start: tuple[float, float, float] = (0.0, 0.0, 0.0)
    others_busy: list[float] = field(default_factory=list)  # CPU busy with other work, just before each phase
    pgbench: Result | None = None
    notify: Phase | None = None
    earn: Phase | None = None
    storm: Phase | None = None
    storm_senders: int = 0


def report(args, server: PgServer, run: Run) -> None:
    print(
        f"\nverified payment notifications (sandbox gateway, HMAC-SHA256) over HTTP vs in-process earn — PostgreSQL "
        f"{run.version} at {server.host}:{server.port} (database {args.db}), Redis db {args.redis_db}, {os.cpu_count()} CPUs"
    )
    print(
        f"gunicorn {args.workers} workers × {args.threads} threads (gthread); DEBUG and O2O_SANDBOX on in every Django "
        f"process; {args.notifications:,} notifications and earns at {args.concurrency} concurrent, storm "
        f"{args.storm:,} × {COPIES}; {args.members:,} members, {args.merchants} merchants"
    )
    busy = ", ".join(f"{b:.0%}" for b in run.others_busy) or "—"
    print(f"load average at start {run.load_at_start[0]:.2f}; CPU busy with other work just before each phase: {busy}")
    if max(run.others_busy, default=0.0) >= 0.20:
        print("NOISY: other work was running; it takes CPU from every phase, and the phases ran at different moments.")

    base = run.pgbench.tps if run.pgbench else 0.0
    rows = []
    if run.pgbench:
        rows.append([f"pgbench tpcb-like, {args.concurrency} clients", run.pgbench])
    if run.notify:
        rows.append([f"notify (POST {NOTIFY_PATH}), {args.concurrency} senders", run.notify.result()])
    if run.earn:
        rows.append([f"earn (points_earn), {args.concurrency} processes", run.earn.result()])
    if run.storm:
        rows.append([f"duplicate storm, {run.storm_senders} senders ({COPIES} copies at once), deliveries", run.storm.result()])
    print()
    print(_table(
        ["operation", "ops/s", "p50 ms", "p99 ms", "vs pgbench"],
        [[label, f"{r.tps:,.0f}", f"{r.p50_ms:.1f}", f"{r.p99_ms:.1f}", f"{r.tps / base:.0%}" if base else "—"]
         for label, r in rows],
    ))
    if run.notify and run.earn and run.earn.result().tps:
        print(f"\nnotify / earn: {run.notify.result().tps / run.earn.result().tps:.0%}")

    print("\nCPU per operation, ms (over each phase: gunicorn's processes, the bench database's PostgreSQL backends,")
    print("the sender threads or the earn worker processes)")
    phases = [phase for phase in (run.notify, run.earn, run.storm) if phase]
    for phase in phases:
        if phase.ops:
            parts = ", ".join(f"{side} {seconds / phase.ops * 1000:.2f}" for side, seconds in phase.cpu.items())
            print(f"  {phase.label}: {parts}; total {sum(phase.cpu.values()) / phase.ops * 1000:.2f}")
    print()
    for phase in phases:
        print(f"{phase.label} answers: {_counts(phase.answers)}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Verified payment notifications over HTTP vs in-process earn, on PostgreSQL.")
    parser.add_argument("--notifications", type=int, help="notifications, and earns, measured (default 1000; --quick 200)")
    parser.add_argument("--concurrency", type=int, help="concurrent senders, earn processes and pgbench clients (default 16; --quick 4)")
    parser.add_argument("--storm", type=int, help=f"orders in the duplicate storm, each notified {COPIES} times at once (default 200; --quick 50)")
    parser.add_argument("--members", type=int, help="members to seed (default 2000; --quick 300); at least --storm")
    parser.add_argument("--merchants", type=int, default=8, help="merchants to seed, one store each (default %(default)s)")
    parser.add_argument("--pgbench-seconds", type=int, help="pgbench's measured seconds (default 5; --quick 2)")
    parser.add_argument("--quick", action="store_true", help="smoke test: 200 notifications, 4 senders, storm 50, 300 members, pgbench 2 s")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes (default %(default)s, as bench/api.py)")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker (default %(default)s)")
    parser.add_argument(
        "--server", default=os.environ.get("BENCH_PG_SERVER", "postgres://postgres@127.0.0.1:5432"),
        help="PostgreSQL server, as postgres://user[:password]@host:port (default $BENCH_PG_SERVER or %(default)s)",
    )
    parser.add_argument("--db", default="o2o_bench_notify", help="the bench database: dropped and recreated (default %(default)s)")
    parser.add_argument("--pgbench-db", default="o2o_pgbench_notify", help="pgbench's database: dropped and recreated (default %(default)s)")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379", help="Redis server, without a database (default %(default)s)")
    parser.add_argument("--redis-db", type=int, default=13, help="Redis database index: flushed before and after (default %(default)s)")
    parser.add_argument("--keep", action="store_true", help="keep the databases, the Redis data and the work directory")
    args = parser.parse_args(argv)
    # --quick only changes what was not given explicitly.
    for name, full, quick in (("notifications", 1000, 200), ("concurrency", 16, 4), ("storm", 200, 50),
                              ("members", 2000, 300), ("pgbench_seconds", 5, 2)):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    if min(args.notifications, args.concurrency, args.storm, args.members, args.merchants, args.workers, args.threads,
           args.pgbench_seconds) < 1:
        parser.error("counts must be 1 or more")
    if args.storm > args.members:
        parser.error("--storm needs as many members: each storm order is a different member's")
    own = urlsplit(os.environ.get("DATABASE_URL", "")).path.lstrip("/")
    for database in (args.db, args.pgbench_db):
        if database in {"postgres", own} or database.startswith("template"):
            parser.error(f"refusing to drop {database!r}: a system database or this environment's DATABASE_URL")
    if args.db == args.pgbench_db:
        parser.error("--db and --pgbench-db must differ")
    if not 0 <= args.redis_db <= 15:
        parser.error("--redis-db must be 0 to 15")
    args.redis_url = f"{args.redis.rstrip('/')}/{args.redis_db}"
    if os.environ.get("REDIS_URL", "").rstrip("/") == args.redis_url:
        parser.error(f"refusing to flush {args.redis_url}: it is this environment's REDIS_URL")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    run = Run(load_at_start=os.getloadavg())
    server = PgServer.parse(args.server)
    try:
        run.version = server.setting("server_version")
        max_connections = int(server.setting("max_connections"))
    except Exception as exc:  # noqa: BLE001 — say what is wrong, not a traceback
        raise SystemExit(f"cannot reach PostgreSQL at {args.server}: {exc}") from None
    needed = args.concurrency + args.workers * args.threads + 5
    if needed > max_connections:
        raise SystemExit(f"this run needs {needed} connections, more than the server's max_connections ({max_connections})")
    if not GUNICORN.exists():
        raise SystemExit(f"no gunicorn at {GUNICORN}")
    if shutil.which("pgbench") is None:
        raise SystemExit("pgbench is not on PATH (Debian/Ubuntu: apt-get install postgresql-client)")

    workdir = Path(tempfile.mkdtemp(prefix="o2o-bench-notify-"))
    stripped = {name: None for name in os.environ if name.startswith(("WECHAT_", "ALIPAY_"))}  # no platform is ever called
    env = django_env(
        **stripped, DATABASE_URL=server.url(args.db), REDIS_URL=args.redis_url, DEBUG="1", O2O_SANDBOX="1",
        ALLOWED_HOSTS=HOST, LOG_LEVEL="ERROR", O2O_VAR_DIR=str(workdir),
    )
    gunicorn = None
    healthy, reported = True, False

    def settle() -> None:
        server.checkpoint()
        busy = cpu_busy()
        if busy is not None:
            run.others_busy.append(busy)

    def signed_recently(prepared_set: dict) -> None:
        age = time.time() - prepared_set["signed_at"]
        if age > SIGNATURE_WINDOW_SECONDS * 0.8:
            log(f"warning: the notifications were signed {age:.0f} s ago; the sandbox refuses them after {SIGNATURE_WINDOW_SECONDS} s")

    try:
        log(f"PostgreSQL: creating {args.db}, migrating, seeding {args.members:,} members and {args.merchants} merchants …")
        server.recreate(args.db)
        flushed = redis_flush(args.redis_url)
        if flushed:
            log(f"Redis: flushed {flushed} keys from {args.redis_url}")
        manage(env, "migrate", "--no-input", "--verbosity=0")
        manage(env, "createcachetable")
        in_django(env, seed, members=args.members, merchants=args.merchants)
        server.run(args.db, "VACUUM ANALYZE")
        log(f"pgbench: initialising {args.pgbench_db} at scale {args.concurrency} …")
        pgbench_init(server, args.pgbench_db, scale=args.concurrency)

        settle()
        log(f"pgbench: {args.concurrency} clients, {args.pgbench_seconds} s …")
        with tempfile.TemporaryDirectory(prefix="o2o-pgbench-log-") as log_dir:
            run.pgbench = pgbench_run(server, args.pgbench_db, clients=args.concurrency, seconds=args.pgbench_seconds,
                                      log_dir=Path(log_dir))

        port = free_port()
        site_url = f"http://{HOST}:{port}"
        log(f"starting gunicorn ({args.workers} workers × {args.threads} threads) on {HOST}:{port} …")
        gunicorn = start_gunicorn(args, env, port)
        warmups = WARMUP_PER_SENDER * args.concurrency
        log(f"notify: opening and paying {warmups + args.notifications:,} sandbox orders …")
        notify_set = prepared(env, parts=PREPARE_PROCESSES, count=warmups + args.notifications, site_url=site_url,
                              distinct_members=False, seed_text="notify")
        warm, measured = notify_set["notes"][:warmups], notify_set["notes"][warmups:]
        c = args.concurrency
        warm_phase = drive(port, [warm[i::c] for i in range(c)], [None] * c, "warm-up")
        signed_recently(notify_set)
        settle()
        log(f"notify: {len(measured):,} notifications, {c} senders …")
        run.notify = timed(lambda: drive(port, [measured[i::c] for i in range(c)], [None] * c, "notify"),
                           master=gunicorn.pid, database=args.db)
        log(f"  {run.notify.result().tps:,.0f} notifications/s, p99 {run.notify.result().p99_ms:.1f} ms")

        settle()
        log(f"earn: {args.notifications:,} points_earn calls from {c} processes …")
        run.earn = earn_phase(env, workers=c, count=args.notifications, database=args.db)
        log(f"  {run.earn.result().tps:,.0f} earns/s, p99 {run.earn.result().p99_ms:.1f} ms")

        log(f"storm: opening and paying {args.storm:,} sandbox orders, one per member …")
        storm_set = prepared(env, parts=PREPARE_PROCESSES, count=args.storm, site_url=site_url, distinct_members=True,
                             seed_text="storm")
        groups = max(1, c // COPIES)
        run.storm_senders = groups * COPIES
        barriers = [threading.Barrier(COPIES) for _ in range(groups)]
        storm_notes = storm_set["notes"]
        plans = [storm_notes[g::groups] for g in range(groups) for _ in range(COPIES)]
        signed_recently(storm_set)
        settle()
        log(f"storm: {len(storm_notes):,} notifications × {COPIES} at once, {run.storm_senders} senders …")
        run.storm = timed(lambda: drive(port, plans, [barriers[g] for g in range(groups) for _ in range(COPIES)],
                                        "storm"), master=gunicorn.pid, database=args.db)
        stop_gunicorn(gunicorn)
        gunicorn = None

        log("checking what the run wrote …")
        answered = set(warm_phase.succeeded) | set(run.notify.succeeded)
        all_notify = [n[0] for n in notify_set["notes"]]
        sizes, violations, once = in_django(
            env, notify_check, paid=sorted(answered), unanswered=[o for o in all_notify if o not in answered],
            storm=[n[0] for n in storm_notes], storm_copies=dict(run.storm.copies), before=storm_set["before"],
            expected_earns=run.earn.committed,
        )
        reported = True
        report(args, server, run)
        print(f"\npoints once: {'yes' if once else 'NO'}")
        healthy = report_check(
            f"PostgreSQL {args.db} (orders paid once per SUCCESS, storm copies stored 1 processed + {COPIES - 1} duplicates)",
            sizes, violations,
        )
    except BaseException:
        if (run.notify or run.earn) and not reported:
            print("\n(partial results: the run failed before its end, see stderr)")
            report(args, server, run)
        raise
    finally:
        if gunicorn is not None:
            stop_gunicorn(gunicorn)
        if args.keep:
            log(f"kept: databases {args.db} and {args.pgbench_db}, Redis {args.redis_url}, {workdir}")
        else:
            for cleanup in (lambda: server.drop(args.db), lambda: server.drop(args.pgbench_db),
                            lambda: redis_flush(args.redis_url), lambda: shutil.rmtree(workdir)):
                try:
                    cleanup()
                except Exception as exc:  # noqa: BLE001 — cleanup must not hide the run's own error
                    log(f"cleanup: {exc}")
    # Timings are information, never a failure; a payment that moved points twice, or not at all, is.
    return 0 if healthy and once else 1


if __name__ == "__main__":
    sys.exit(main())
