"""Throughput of the points ledger, measured against pgbench on the same server.

    .venv/bin/python bench/ledger.py            # full run, about 5 minutes
    .venv/bin/python bench/ledger.py --quick    # smoke test, a minute or two

For each client count it runs pgbench's tpcb-like script, then ``points_earn`` and
``points_redeem`` from that many worker processes for a fixed time, and prints
committed transactions per second with p50/p99 latencies; then the same earn on the
embedded SQLite default. At the end it checks the ledger's invariants on what the
run wrote, so a benchmark that corrupted the ledger says so. bench/README.md has
the flags and how to read the numbers.

The yardstick is pgbench because both are one short write transaction on the same
server: tpcb-like is three UPDATEs, a SELECT and an INSERT; an earn locks a wallet,
checks its idempotency key, and writes a transaction, a lot, its entries and the
wallet balance. The ratio says how much of what the server can commit the ledger
(Python, Django and its own queries) turns into points.

The services are called directly, with members and stores loaded once per worker:
this measures the ledger, not HTTP, authentication or the lookup of a member code.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (  # noqa: E402 — the path above makes the project importable
    PgServer,
    Result,
    combine,
    cpu_busy,
    django_env,
    django_pool,
    in_django,
    log,
    manage,
    measure,
    pgbench_init,
    pgbench_run,
)

# Every member's opening balance. A redemption takes 1–20 points; even 5,000
# redemptions a second for a minute spread over 500 members is 12,000 points each, so
# redemptions never run dry and "insufficient points" never flatters the redeem rate.
GRANT_POINTS = 100_000
REDEEM_POINTS = (1, 20)
# Sales of ¥10–¥500: 10–500 points at 1 %, so every earn writes a lot and its entries.
EARN_AMOUNT_FEN = (1_000, 50_000)
# Merchants fund 1 %, 1.5 % or 2 %; every fourth member is on the first tier above the
# entry one, so a quarter of earns also carry the mall-funded leg (three entries, not two).
EARN_RATES_BP = (100, 150, 200)
HIGHER_TIER_EVERY = 4
SEED_BATCH = 250
COST_SAMPLES = 200  # calls per operation in the single-client cost table

AIM_CLIENTS = 8
AIM_RATIO = 0.30
# Above this share of the CPU busy with other work, the report says the numbers are disturbed.
OTHERS_BUSY_WARNING = 0.20


# --- in the Django children -------------------------------------------------------

_world = None


def _load_world():
    """The members and stores a worker draws from, loaded once per process."""
    global _world
    if _world is None:
        from members.models import Member, Store

        _world = (list(Member.objects.order_by("pk")), list(Store.objects.select_related("merchant").order_by("pk")))
    return _world


def _operation(kind: str, tag: str, worker: int, rng: random.Random):
    """One ledger call per ``seq``: a random member at a random store, a fresh key."""
    from members import ledger

    members, stores = _load_world()
    if kind == "earn":

        def earn(seq: int) -> None:
            ledger.points_earn(
                member=rng.choice(members), store=rng.choice(stores), amount_fen=rng.randint(*EARN_AMOUNT_FEN),
                idempotency_key=f"bench:earn:{tag}:{worker}:{seq}",
            )

        return earn
    if kind == "redeem":

        def redeem(seq: int) -> None:
            ledger.points_redeem(
                member=rng.choice(members), store=rng.choice(stores), points=rng.randint(*REDEEM_POINTS),
                idempotency_key=f"bench:redeem:{tag}:{worker}:{seq}",
            )

        return redeem
    raise ValueError(kind)


def phase_task(kind: str, tag: str, worker: int, seconds: int):
    rng = random.Random(f"{kind}:{tag}:{worker}")  # reproducible draws per worker
    return measure(lambda: _operation(kind, tag, worker, rng), seconds=seconds)


def seed(*, members: int, merchants: int) -> None:
    """A plaza, ``merchants`` merchants with a store each, and ``members`` members with
    an opening grant, all through the services so that the data is what they make."""
    from django.db import transaction

    from members import ledger, services
    from members.models import Member, Tier

    plaza = services.plaza_create(code="bench", name="Bench plaza")
    for i in range(merchants):
        services.merchant_create(name=f"Bench merchant {i + 1}", plaza=plaza, earn_rate_bp=EARN_RATES_BP[i % len(EARN_RATES_BP)])
    higher = Tier.objects.filter(multiplier_bp__gt=10000).order_by("threshold_fen").first()
    for start in range(0, members, SEED_BATCH):
        # One commit per batch: the services join the outer transaction, and a commit
        # per member would make seeding PostgreSQL wait on thousands of fsyncs.
        with transaction.atomic():
            for i in range(start, min(start + SEED_BATCH, members)):
                member = services.member_create(join_channel=Member.Channel.POS, plaza=plaza)
                if higher is not None and i % HIGHER_TIER_EVERY == HIGHER_TIER_EVERY - 1:
                    # Tier review is a nightly job, not a service a member calls; set it as it would.
                    Member.objects.filter(pk=member.pk).update(tier=higher)
                ledger.points_grant(
                    member=member, points=GRANT_POINTS, reason="bench opening balance",
                    idempotency_key=f"bench:grant:{member.pk}",
                )


def ledger_check(expected: dict[str, int]) -> tuple[dict[str, int], list[str]]:
    """The ledger's invariants (DESIGN.md "The points ledger") over the whole database,
    and whether it holds exactly the transactions the workers reported as committed.

    ``expected`` maps an idempotency-key prefix to that count. Returns the table
    sizes and a list of violations, empty when all hold.
    """
    from django.db.models import F, OuterRef, Q, Subquery, Sum
    from django.db.models.functions import Coalesce

    from members.models import Account, Entry, Lot, PointsTransaction

    shown = 10  # violations listed per invariant; the count says how many in all
    violations = []

    unbalanced = Entry.objects.values("transaction_id").annotate(s=Sum("amount")).exclude(s=0).order_by("transaction_id")
    for row in unbalanced[:shown]:
        violations.append(f"transaction #{row['transaction_id']}: entries sum to {row['s']}, not 0")
    if (n := unbalanced.count()) > shown:
        violations.append(f"… {n - shown} more unbalanced transactions")

    def total(model, value: str, **only):
        # One correlated sum per row; two joined Sum()s would multiply each other's rows.
        return Coalesce(
            Subquery(
                model.objects.filter(account=OuterRef("pk"), **only).order_by().values("account").annotate(s=Sum(value)).values("s")
            ),
            0,
        )

    # The balance is the available lots; pending ones (a tier's extra) sit beside it.
    wallets = Account.objects.filter(kind=Account.Kind.WALLET).annotate(
        entries_sum=total(Entry, "amount"), lots_sum=total(Lot, "remaining", status=Lot.Status.AVAILABLE)
    )
    wrong = wallets.filter(~Q(balance=F("entries_sum")) | ~Q(balance=F("lots_sum")) | Q(balance__lt=0)).order_by("pk")
    for w in wrong[:shown]:
        violations.append(
            f"wallet #{w.pk} (member #{w.member_id}): balance {w.balance}, Σ entries {w.entries_sum}, Σ lot remaining {w.lots_sum}"
        )
    if (n := wrong.count()) > shown:
        violations.append(f"… {n - shown} more wallets out of balance or negative")

    # Each lot: what is left = what its entries credited less what they consumed.
    lot_entries = Entry.objects.filter(lot=OuterRef("pk")).order_by().values("lot").annotate(s=Sum("amount")).values("s")
    lots = Lot.objects.annotate(entries_sum=Coalesce(Subquery(lot_entries), 0)).exclude(remaining=F("entries_sum")).order_by("pk")
    for lot in lots[:shown]:
        violations.append(f"lot #{lot.pk}: remaining {lot.remaining}, Σ its entries {lot.entries_sum}")
    if (n := lots.count()) > shown:
        violations.append(f"… {n - shown} more lots whose remaining is not Σ their entries")

    for prefix, committed in expected.items():
        stored = PointsTransaction.objects.filter(idempotency_key__startswith=prefix).count()
        if stored != committed:
            violations.append(f"{prefix}*: workers committed {committed} transactions, the database holds {stored}")

    sizes = {
        "transactions": PointsTransaction.objects.count(),
        "entries": Entry.objects.count(),
        "lots": Lot.objects.count(),
        "wallets": wallets.count(),
    }
    return sizes, violations


def cost_per_operation(*, samples: int, profile: bool) -> dict[str, dict]:
    """What one earn and one redeem cost from a single client: wall time, the CPU of
    the client process, the SQL statements and the time spent in them, and the commit,
    all measured on the same calls.

    Statements are timed with ``connection.execute_wrapper`` rather than
    CaptureQueriesContext, whose times are rounded to the millisecond. psycopg opens
    the transaction (BEGIN) inside the first statement, so its round trip counts as
    SQL; the commit, which no wrapper sees, is timed by wrapping ``_commit``.
    """
    import cProfile
    import io
    import pstats

    from django.db import connection

    rng = random.Random("cost")
    keys = itertools.count()  # one fresh idempotency key per call, across both operations
    statements: list[tuple[str, float]] = []
    commits: list[float] = []

    def timed(execute, sql, params, many, context):
        start = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            statements.append((sql, time.perf_counter() - start))

    real_commit = connection._commit

    def timed_commit():
        start = time.perf_counter()
        try:
            return real_commit()
        finally:
            commits.append(time.perf_counter() - start)

    report = {}
    for kind in ("earn", "redeem"):
        op = _operation(kind, "cost", 0, rng)
        for _ in range(20):  # warm-up: connection, caches, plans
            op(next(keys))
        # The wrappers cost a few µs a call, against milliseconds measured.
        walls, cpus, counts, sql_times, commit_times = [], [], [], [], []
        connection._commit = timed_commit
        try:
            with connection.execute_wrapper(timed):
                for _ in range(samples):
                    statements.clear()
                    commits.clear()
                    cpu_start, start = time.process_time(), time.perf_counter()
                    op(next(keys))
                    walls.append(time.perf_counter() - start)
                    cpus.append(time.process_time() - cpu_start)
                    counts.append(len(statements))
                    sql_times.append(sum(t for _, t in statements))
                    commit_times.append(sum(commits))
        finally:
            del connection._commit  # back to the class's method
        entry = {
            "queries": statistics.median(counts),
            "wall_ms": statistics.median(walls) * 1000,
            "cpu_ms": statistics.median(cpus) * 1000,
            "sql_ms": statistics.median(sql_times) * 1000,
            "commit_ms": statistics.median(commit_times) * 1000,
            "statements": [(sql, t * 1000) for sql, t in statements],  # the last call's
        }
        if profile:
            profiler = cProfile.Profile(time.process_time)  # CPU, not time spent waiting on the server
            profiler.enable()
            for _ in range(samples):
                op(next(keys))
            profiler.disable()
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(30)
            entry["cprofile"] = out.getvalue()
        report[kind] = entry
    return report


# --- in the parent ----------------------------------------------------------------


def _clients(text: str) -> list[int]:
    try:
        values = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"a comma-separated list of integers, not {text!r}") from None
    if not values or values[0] < 1:
        raise argparse.ArgumentTypeError("at least one count, each 1 or more")
    return values


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Points ledger throughput (earn, redeem) against pgbench, on PostgreSQL and embedded SQLite.",
    )
    parser.add_argument("--clients", type=_clients, help="concurrent worker processes per point (default 1,8,32; --quick 1,8)")
    parser.add_argument("--seconds", type=int, help="measured seconds per point, whole as pgbench -T takes them (default 10; --quick 2)")
    parser.add_argument("--members", type=int, help=f"members to seed, each granted {GRANT_POINTS:,} points (default 2000; --quick 500)")
    parser.add_argument("--merchants", type=int, default=8, help="merchants to seed, one store each (default 8)")
    parser.add_argument("--quick", action="store_true", help="smoke test: 2 s per point, clients 1,8, 500 members")
    parser.add_argument(
        "--server", default=os.environ.get("BENCH_PG_SERVER", "postgres://postgres@127.0.0.1:5432"),
        help="PostgreSQL server, as postgres://user[:password]@host:port (default $BENCH_PG_SERVER or %(default)s)",
    )
    parser.add_argument("--db", default="o2o_bench", help="database for the ledger, dropped and recreated (default %(default)s)")
    parser.add_argument("--pgbench-db", default="o2o_pgbench", help="database for pgbench, dropped and recreated (default %(default)s)")
    parser.add_argument("--scale", type=int, help="pgbench scale factor (default: the largest client count)")
    parser.add_argument("--no-sqlite", action="store_true", help="skip the embedded SQLite run")
    parser.add_argument("--profile", action="store_true", help="also print the SQL of one earn and one redeem and a CPU profile of each")
    parser.add_argument("--keep", action="store_true", help="keep the databases (and the SQLite file) afterwards")
    args = parser.parse_args(argv)
    # --quick only changes what was not given explicitly.
    if args.clients is None:
        args.clients = [1, 8] if args.quick else [1, 8, 32]
    if args.seconds is None:
        args.seconds = 2 if args.quick else 10
    if args.members is None:
        args.members = 500 if args.quick else 2000
    if args.scale is None:
        args.scale = max(args.clients)
    if args.seconds <= 0 or args.members < 1 or args.merchants < 1 or args.scale < 1:
        parser.error("--seconds, --members, --merchants and --scale must be positive")
    if args.db == args.pgbench_db:
        parser.error("--db and --pgbench-db must differ")
    own = urlsplit(os.environ.get("DATABASE_URL", "")).path.lstrip("/")
    if own and own in {args.db, args.pgbench_db}:
        parser.error(f"refusing to drop {own!r}: it is this environment's DATABASE_URL")
    return args


def run_pool(env: dict[str, str], clients: int, kinds: list[str], tag: str, seconds: int, before=None) -> dict[str, Result]:
    """Each of ``kinds`` in turn from ``clients`` worker processes, started once for all."""
    results = {}
    with django_pool(clients, env) as pool:
        for kind in kinds:
            if before is not None:
                before()
            futures = [pool.submit(phase_task, kind, tag, worker, seconds) for worker in range(clients)]
            results[kind] = combine([f.result() for f in futures], seconds)
    return results


def _tps(value: float) -> str:
    return f"{value:,.0f}"


def _ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.0%}" if theirs else "—"


def _lat(result: Result) -> str:
    return f"{result.p50_ms:.1f} / {result.p99_ms:.1f}"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells):
        return " | ".join(c.rjust(w) for c, w in zip(cells, widths))

    return "\n".join([line(headers), "-+-".join("-" * w for w in widths), *(line(r) for r in rows)])


@dataclass
class Run:
    """Everything a run measured, for the report."""

    version: str = ""
    others_busy: list[float] = field(default_factory=list)  # CPU busy while paused, before each measurement
    pg: dict[int, dict[str, Result]] = field(default_factory=dict)  # clients → pgbench, earn, redeem
    sqlite: dict[int, Result] = field(default_factory=dict)  # clients → earn
    cost: dict[str, dict] = field(default_factory=dict)


def report(args, server: PgServer, run: Run) -> None:
    print(
        f"\nPostgreSQL {run.version} at {server.host}:{server.port} — {args.seconds} s per point, "
        f"{args.members:,} members, {args.merchants} merchants, pgbench scale {args.scale}"
    )
    if run.others_busy:
        print(
            f"other work on this {os.cpu_count()}-core machine (CPU busy while the benchmark paused, before each measurement): "
            f"median {statistics.median(run.others_busy):.0%}, max {max(run.others_busy):.0%}"
        )
        if max(run.others_busy) >= OTHERS_BUSY_WARNING:
            print(
                "warning: other work was running. It takes CPU from pgbench and the ledger alike, so the rates\n"
                "         are low and noisy, and Python workers lose more to it than pgbench's small C client does."
            )
    print("tps = committed transactions per second; latencies p50 / p99 in ms\n")
    print(_table(
        ["clients", "pgbench tps", "pgbench p50/p99", "earn tps", "earn/pgbench", "earn p50/p99",
         "redeem tps", "redeem/pgbench", "redeem p50/p99"],
        [[str(n), _tps(r["pgbench"].tps), _lat(r["pgbench"]),
          _tps(r["earn"].tps), _ratio(r["earn"].tps, r["pgbench"].tps), _lat(r["earn"]),
          _tps(r["redeem"].tps), _ratio(r["redeem"].tps, r["pgbench"].tps), _lat(r["redeem"])]
         for n, r in run.pg.items()],
    ))
    aim = f"aim: earn ≥ {AIM_RATIO:.0%} of pgbench at {AIM_CLIENTS} clients"
    if AIM_CLIENTS in run.pg:
        r = run.pg[AIM_CLIENTS]
        ratio = r["earn"].tps / r["pgbench"].tps if r["pgbench"].tps else 0.0
        print(f"\n{aim} — {'PASS' if ratio >= AIM_RATIO else 'MISS'} ({ratio:.0%})")
    else:
        print(f"\n{aim} — not measured (no {AIM_CLIENTS} in --clients)")

    if run.sqlite:
        print("\nSQLite, the embedded default (WAL, BEGIN IMMEDIATE): writers take turns, so this is its ceiling\n")
        print(_table(
            ["clients", "earn tps", "vs PostgreSQL earn", "earn p50/p99"],
            [[str(n), _tps(r.tps), _ratio(r.tps, run.pg[n]["earn"].tps) if n in run.pg else "—", _lat(r)]
             for n, r in run.sqlite.items()],
        ))

    print("\nclient CPU per operation, ms (Python, Django and the driver, in the worker processes)\n")
    print(_table(
        ["clients", "earn", "redeem"] + (["SQLite earn"] if run.sqlite else []),
        [[str(n), f"{r['earn'].cpu_ms_per_op:.1f}", f"{r['redeem'].cpu_ms_per_op:.1f}"]
         + ([f"{run.sqlite[n].cpu_ms_per_op:.1f}" if n in run.sqlite else "—"] if run.sqlite else [])
         for n, r in run.pg.items()],
    ))

    measured = [(f"{kind} at {n} clients", r[kind]) for n, r in run.pg.items() for kind in ("pgbench", "earn", "redeem")]
    measured += [(f"SQLite earn at {n} clients", r) for n, r in run.sqlite.items()]
    errors = [
        f"{label}: " + ", ".join(f"{code} ×{count}" for code, count in result.errors.most_common())
        for label, result in measured if result.errors
    ]
    print("\nerrors: " + ("none" if not errors else "\n  " + "\n  ".join(errors)))

    if not run.cost:
        return
    print(
        f"\none operation from 1 client on PostgreSQL, medians of {COST_SAMPLES} calls (time in SQL and in COMMIT is wall time\n"
        "on the client: the server's work, the round trip, and the driver's share of the client CPU)\n"
    )
    print(_table(
        ["operation", "SQL statements", "wall ms", "client CPU ms", "in SQL ms", "commit ms"],
        [[kind, f"{c['queries']:g}", f"{c['wall_ms']:.2f}", f"{c['cpu_ms']:.2f}", f"{c['sql_ms']:.2f}", f"{c['commit_ms']:.2f}"]
         for kind, c in run.cost.items()],
    ))
    if args.profile:
        for kind, c in run.cost.items():
            print(f"\nthe statements of one {kind}:")
            for sql, ms in c["statements"]:
                print(f"  {ms:6.2f} ms  {sql[:200]}")
            print(f"\nCPU profile of {kind}, by cumulative time:\n{c['cprofile']}")


def report_check(label: str, sizes: dict[str, int], violations: list[str]) -> bool:
    size_text = ", ".join(f"{v:,} {k}" for k, v in sizes.items())
    if not violations:
        print(f"ledger invariants on {label} ({size_text}): OK")
        return True
    print(f"ledger invariants on {label} ({size_text}): {len(violations)} VIOLATION(S)")
    for v in violations:
        print(f"  {v}")
    return False


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    server = PgServer.parse(args.server)
    run = Run()
    try:
        run.version = server.setting("server_version")
        max_connections = int(server.setting("max_connections"))
    except Exception as exc:  # noqa: BLE001 — say what is wrong, not a traceback
        raise SystemExit(f"cannot reach PostgreSQL at {args.server}: {exc}") from None
    if max(args.clients) + 5 > max_connections:
        raise SystemExit(f"--clients up to {max(args.clients)} needs more than the server's max_connections ({max_connections})")
    if shutil.which("pgbench") is None:
        raise SystemExit("pgbench is not on PATH (Debian/Ubuntu: apt-get install postgresql-client)")

    pg_env = django_env(DATABASE_URL=server.url(args.db))
    sqlite_dir = Path(tempfile.mkdtemp(prefix="o2o-bench-sqlite-"))
    # The SQLite file and its var dir live in a temp dir: nothing of the run lands in var/.
    sqlite_env = django_env(DATABASE_URL=None, O2O_SQLITE_PATH=str(sqlite_dir / "o2o.sqlite3"), O2O_VAR_DIR=str(sqlite_dir))
    expected_pg: dict[str, int] = {}
    expected_sqlite: dict[str, int] = {}

    def cleanup() -> None:
        if args.keep:
            log(f"kept: databases {args.db} and {args.pgbench_db} on {server.host}:{server.port}, SQLite in {sqlite_dir}")
            return
        for database in (args.db, args.pgbench_db):
            try:
                server.drop(database)
            except Exception as exc:  # noqa: BLE001 — cleanup must not hide the run's own error
                log(f"could not drop {database}: {exc}")
        shutil.rmtree(sqlite_dir, ignore_errors=True)

    def settle() -> None:
        """Before each measurement: flush dirty pages so that a timed checkpoint does not
        land in one run and not another, then note what else keeps the CPU busy."""
        server.checkpoint()
        busy = cpu_busy()
        if busy is not None:
            run.others_busy.append(busy)

    try:
        log(f"PostgreSQL: creating {args.db}, migrating, seeding {args.members:,} members …")
        server.recreate(args.db)
        manage(pg_env, "migrate", "--no-input", "--verbosity=0")
        in_django(pg_env, seed, members=args.members, merchants=args.merchants)
        server.run(args.db, "VACUUM ANALYZE")  # the planner sees the seeded tables, as it would in production
        log(f"pgbench: initialising {args.pgbench_db} at scale {args.scale} …")
        pgbench_init(server, args.pgbench_db, scale=args.scale)

        for n in args.clients:
            log(f"{n} client(s): pgbench, earn, redeem — {args.seconds} s each …")
            settle()
            with tempfile.TemporaryDirectory(prefix="o2o-pgbench-log-") as log_dir:
                yardstick = pgbench_run(server, args.pgbench_db, clients=n, seconds=args.seconds, log_dir=Path(log_dir))
            run.pg[n] = {"pgbench": yardstick, **run_pool(pg_env, n, ["earn", "redeem"], f"pg{n}", args.seconds, settle)}
            for kind in ("earn", "redeem"):
                result = run.pg[n][kind]
                expected_pg[f"bench:{kind}:pg{n}:"] = result.committed
                log(f"  {kind}: {result.tps:,.0f} tps against pgbench {yardstick.tps:,.0f}; client CPU {result.cpu_ms_per_op:.1f} ms each")

        if not args.no_sqlite:
            log("SQLite: creating a fresh file, migrating, seeding …")
            manage(sqlite_env, "migrate", "--no-input", "--verbosity=0")
            in_django(sqlite_env, seed, members=args.members, merchants=args.merchants)
            for n in args.clients:
                log(f"{n} client(s): SQLite earn — {args.seconds} s …")
                run.sqlite[n] = run_pool(sqlite_env, n, ["earn"], f"sqlite{n}", args.seconds, settle)["earn"]
                expected_sqlite[f"bench:earn:sqlite{n}:"] = run.sqlite[n].committed

        log("costing one earn and one redeem …")
        run.cost = in_django(pg_env, cost_per_operation, samples=COST_SAMPLES, profile=args.profile)
    except BaseException:
        if run.pg:  # minutes of measurement are worth showing even when a later step failed
            print("\n(partial results: the run failed before its end, see stderr)")
            report(args, server, run)
        cleanup()
        raise
    try:
        report(args, server, run)

        log("checking the ledger's invariants …")
        print()
        healthy = report_check(f"PostgreSQL {args.db}", *in_django(pg_env, ledger_check, expected_pg))
        if not args.no_sqlite:
            healthy = report_check("SQLite", *in_django(sqlite_env, ledger_check, expected_sqlite)) and healthy
    finally:
        cleanup()
    # Timings are information, never a failure; a ledger that broke its invariants is.
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
