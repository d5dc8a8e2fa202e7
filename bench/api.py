"""Merchant API purchases over HTTP, beside the in-process earn rate, in one run.

    .venv/bin/python bench/api.py            # full run: 32 clients, 10 s each side (two to three minutes)
    .venv/bin/python bench/api.py --quick    # smoke test: 2 s each side, 500 members (about a minute)
    .venv/bin/python bench/api.py --profile  # also: the SQL of one purchase and a CPU profile of it

The scale-out configuration on one machine: gunicorn (``.venv/bin/gunicorn
o2o_site.wsgi``) on a free loopback port, PostgreSQL (a fresh database, ``--db``,
dropped and recreated, dropped again at the end unless ``--keep``) and Redis (one
database index, ``--redis-db``, flushed before and after) for the cache, so for the
per-key throttle, and for the task queue. DEBUG is off on both sides, as in
production and as bench/ledger.py measures the ledger.

Two measurements, one after the other, on the same database and the same seeded
world (bench/ledger.py's ``seed``: a plaza, merchants funding 1–2 %, members with an
opening grant, a quarter of them on a higher tier), each after a CHECKPOINT:

1. **in-process earn**: bench/ledger.py's own workers (``run_pool``: separate
   processes, each calling ``members.ledger.points_earn`` directly) at
   ``--earn-clients`` (default: the same count as the HTTP clients);
2. **HTTP purchases**: ``--clients`` concurrent clients (threads over
   ``--load-procs`` separate processes, one keep-alive ``http.client`` connection
   each) POST /api/v1/purchases/ with ``Authorization: Bearer <api_key>``, a fresh
   Idempotency-Key and a random member and store, closed loop: a warm-up, then
   ``--seconds`` measured. Only 201s count; other statuses are reported by status.
   A request whose connection broke is retried with the same key and body, which
   the API answers once, so every 201 is exactly one purchase.

It prints req/s and p50/p99 latency of the purchases, the in-process earn tps, the
ratio, and two aims as information (PASS/MISS; timings never fail the run):
HTTP purchases ≥ 50 % of the in-process earn rate, and p99 < 50 ms. Then the CPU
each side spent per operation, and what one purchase costs from one client (SQL
statements, time by phase of the request). It checks that the database holds one
Purchase (and one stored API response) per 201 and that the ledger's invariants
hold (bench/ledger.py's ``ledger_check``); a failed check exits with status 1.

Progress goes to stderr, results to stdout. bench/README.md has the flags.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import math
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the project, importable from bench/

from bench._common import (
    SPAWN,
    PgServer,
    Result,
    cpu_busy,
    django_env,
    in_django,
    log,
    manage,
    percentile,
)
from bench.ledger import (
    EARN_AMOUNT_FEN,
    cost_per_operation,
    ledger_check,
    report_check,
    run_pool,
    seed,
)

REPO_DIR = Path(__file__).resolve().parent.parent
GUNICORN = Path(sys.executable).parent / "gunicorn"
PURCHASES_PATH = "/api/v1/purchases/"
HOST = "127.0.0.1"

AIM_RATIO = 0.50
AIM_P99_MS = 50.0
# Above this share of the CPU busy with other work (sampled while the bench is paused),
# or a 1-minute load average above this many runnable tasks per core, the numbers are noisy.
OTHERS_BUSY_WARNING = 0.20
LOAD_PER_CORE_WARNING = 1.0
RETRIES = 3  # attempts per request when the connection breaks; the same key each time
REQUEST_TIMEOUT = 30.0
BARRIER_TIMEOUT = 300.0
COST_SAMPLES = 200


# --- the load generator (its own processes; no Django) ----------------------------------


@dataclass
class LoadStats:
    ok_total: int = 0  # every 201, warm-up and stragglers included: what the database must hold
    ok_in_window: int = 0  # 201s to requests that began and ended inside the window
    latencies: list[float] = field(default_factory=list)  # seconds, of the in-window 201s
    statuses: Counter = field(default_factory=Counter)  # other answers, over the whole run: "HTTP 409"
    in_window_statuses: Counter = field(default_factory=Counter)  # every answer that finished inside the window
    failures: Counter = field(default_factory=Counter)  # no answer after RETRIES attempts, by exception
    retries: Counter = field(default_factory=Counter)  # broken connections retried with the same key
    warmup_requests: int = 0
    cpu_seconds: float = 0.0  # this load process's CPU over the window

    def merge(self, other: LoadStats) -> None:
        self.ok_total += other.ok_total
        self.ok_in_window += other.ok_in_window
        self.latencies.extend(other.latencies)
        self.statuses.update(other.statuses)
        self.in_window_statuses.update(other.in_window_statuses)
        self.failures.update(other.failures)
        self.retries.update(other.retries)
        self.warmup_requests += other.warmup_requests
        self.cpu_seconds += other.cpu_seconds


class _Connection:
    """One keep-alive connection; a broken one is reopened and the request sent again."""

    def __init__(self, port: int):
        self.port = port
        self.conn: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def post(self, body: bytes, headers: dict[str, str], stats: LoadStats) -> int:
        error: Exception | None = None
        for _ in range(RETRIES):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(HOST, self.port, timeout=REQUEST_TIMEOUT)
            try:
                self.conn.request("POST", PURCHASES_PATH, body, headers)
                response = self.conn.getresponse()
                response.read()  # all of it, or the connection cannot carry the next request
                if response.will_close:
                    self.close()
                return response.status
            except (OSError, http.client.HTTPException) as exc:
                # The request may or may not have reached the server: the same key and body
                # again get either the first answer or the first effect, never a second one.
                self.close()
                stats.retries[type(exc).__name__] += 1
                error = exc
        raise error


_ready_barrier = None
_start_barrier = None


def _load_init(ready_barrier, start_barrier) -> None:
    global _ready_barrier, _start_barrier
    _ready_barrier, _start_barrier = ready_barrier, start_barrier


def load_process(
    *, proc: int, clients: int, port: int, tag: str, keys: list[tuple[str, str]], member_nos: list[str],
    warmup: float, seconds: float,
) -> LoadStats:
    """``clients`` threads, each a closed loop of purchases on its own connection.

    All load processes warm up together once every one of them is ready, then start
    the window together with the parent (which times the server's CPU over it).
    """
    window = {}

    def released() -> None:  # run by one thread once all threads of this process arrive
        _start_barrier.wait(timeout=BARRIER_TIMEOUT)
        window["start"] = time.perf_counter()
        window["cpu"] = time.process_time()

    local_barrier = threading.Barrier(clients, action=released)
    per_thread = [LoadStats() for _ in range(clients)]
    crashed: list[BaseException] = []

    def client(index: int) -> None:
        stats = per_thread[index]
        rng = random.Random(f"{tag}:{proc}:{index}")
        connection = _Connection(port)
        seq = itertools.count()

        def purchase() -> int:
            key, store_code = rng.choice(keys)
            body = json.dumps(
                {"member_no": rng.choice(member_nos), "store_code": store_code, "amount_fen": rng.randint(*EARN_AMOUNT_FEN)}
            ).encode()
            headers = {
                "Authorization": f"Bearer {key}", "Idempotency-Key": f"bench-{tag}-{proc}-{index}-{next(seq)}",
                "Content-Type": "application/json", "Host": f"{HOST}:{port}",
            }
            try:
                status = connection.post(body, headers, stats)
            except (OSError, http.client.HTTPException) as exc:
                stats.failures[type(exc).__name__] += 1
                return 0
            if status == 201:
                stats.ok_total += 1
            else:
                stats.statuses[f"HTTP {status}"] += 1
            return status

        try:
            warm_until = window["warm_until"]
            while time.perf_counter() < warm_until:
                purchase()
                stats.warmup_requests += 1
            local_barrier.wait(timeout=BARRIER_TIMEOUT)
            deadline = window["start"] + seconds
            now = time.perf_counter()
            while now < deadline:
                status = purchase()
                end = time.perf_counter()
                if end <= deadline:
                    stats.in_window_statuses[f"HTTP {status}" if status else "no answer"] += 1
                    if status == 201:
                        stats.ok_in_window += 1
                        stats.latencies.append(end - now)
                now = end
        except BaseException as exc:  # noqa: BLE001 — handed to the parent below
            crashed.append(exc)
            local_barrier.abort()
        finally:
            connection.close()

    try:
        _ready_barrier.wait(timeout=BARRIER_TIMEOUT)
    except BaseException:
        _start_barrier.abort()
        raise
    window["warm_until"] = time.perf_counter() + warmup
    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if crashed:
        _start_barrier.abort()
        raise crashed[0]
    total = LoadStats()
    for stats in per_thread:
        total.merge(stats)
    total.cpu_seconds = time.process_time() - window["cpu"]
    return total


# --- what the processes on this machine spent --------------------------------------------


def _proc_cpu(pid: int) -> float | None:
    """User + system CPU seconds of one process (from /proc), None if it is gone."""
    try:
        fields = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pids(match) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if match(entry):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def gunicorn_pids(master: int) -> list[int]:
    """The master and every process in its group (the workers)."""
    return _pids(lambda entry: int((entry / "stat").read_text().rsplit(")", 1)[1].split()[2]) == master)


def postgres_backend_pids(database: str) -> list[int]:
    """Backends serving ``database`` (their title reads ``postgres: … user database host(port) state``)."""
    def match(entry: Path) -> bool:
        title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        return title.startswith("postgres:") and f" {database} " in title

    return _pids(match)


def cpu_of(pids: list[int]) -> dict[int, float]:
    return {pid: cpu for pid in pids if (cpu := _proc_cpu(pid)) is not None}


def spent(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU spent between two samples by the processes alive at the second one."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def machine_ticks() -> tuple[int, int]:
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields[:8]), fields[3] + (fields[4] if len(fields) > 4 else 0)


# --- the server -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def start_gunicorn(args, env: dict[str, str], port: int) -> subprocess.Popen:
    """gunicorn in its own process group, once it answers HTTP.

    No ``--access-logfile``: gunicorn's default (None) writes no access log, which is
    what the bench wants; ``--access-logfile none`` would log to a file named "none".
    """
    command = [
        str(GUNICORN), "o2o_site.wsgi", "--bind", f"{HOST}:{port}", "--workers", str(args.workers),
        "--threads", str(args.threads), "--worker-class", "gthread", "--keep-alive", "30",
        "--log-level", "warning", "--graceful-timeout", "5",
    ]
    process = subprocess.Popen(command, env=env, cwd=REPO_DIR, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"gunicorn exited with status {process.returncode}")
        try:
            probe = http.client.HTTPConnection(HOST, port, timeout=2)
            probe.request("GET", "/m/")  # any answer means a worker is up (this one logs no warning)
            probe.getresponse().read()
            probe.close()
            return process
        except OSError:
            time.sleep(0.2)
    stop_gunicorn(process)
    raise SystemExit("gunicorn did not answer within 60 s")


def stop_gunicorn(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)  # the group we started: gunicorn's master and its workers
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def redis_flush(url: str) -> int:
    """Empty the bench's Redis database; how many keys it held."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = client.dbsize()
        client.flushdb()
        return keys
    finally:
        client.close()


# --- in the Django children ---------------------------------------------------------------


def seed_world(*, members: int, merchants: int) -> dict:
    """bench/ledger.py's world, plus an API key per merchant for the HTTP clients.

    ledger.seed makes each merchant through ``merchant_create``, which issues a key but
    whose raw value that seed does not keep; a second key, issued the same way, is
    the one the clients use.
    """
    from members.auth import merchant_api_key_create
    from members.models import Member, Store

    seed(members=members, merchants=merchants)
    keys = []
    for store in Store.objects.select_related("merchant").order_by("pk"):
        _, raw_key = merchant_api_key_create(merchant=store.merchant, name="bench")
        keys.append((raw_key, store.code))
    member_nos = list(Member.objects.filter(status=Member.Status.ACTIVE).order_by("pk").values_list("member_no", flat=True))
    return {"keys": keys, "member_nos": member_nos}


def api_check(expected_api: int, expected_ledger: dict[str, int]) -> tuple[dict[str, int], list[str]]:
    """One Purchase and one stored response per 201, then bench/ledger.py's invariants."""
    from payments.models import ApiRequest, Purchase

    sizes, violations = ledger_check({"api:": expected_api, **expected_ledger})
    purchases, responses = Purchase.objects.count(), ApiRequest.objects.filter(status_code=201).count()
    if purchases != expected_api:
        violations.insert(0, f"Purchase rows: {purchases}, 201 responses: {expected_api}")
    if responses != expected_api:
        violations.insert(0, f"stored API responses: {responses}, 201 responses: {expected_api}")
    return {"purchases": purchases, **sizes}, violations


def purchase_cost(*, key: str, store_code: str, member_nos: list[str], samples: int, profile: bool) -> dict:
    """What one purchase costs from a single client, through the whole Django stack
    (middleware, DRF, the view, the services) by the test client: the statements
    (CaptureQueriesContext), wall and CPU time, and where the time goes by phase.

    Phases are timed by wrapping the functions the request calls; each SQL statement
    and Redis command is charged to the innermost phase running it. "view and
    framework" is the rest: middleware, URL routing, DRF's request, JSON parsing and
    rendering, the test client.
    """
    import cProfile
    import io
    import pstats

    import redis
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from members import auth, ledger, pushes
    from payments.api import sales as payments_api
    from payments import services as payment_services

    client = Client(HTTP_HOST=HOST, HTTP_AUTHORIZATION=f"Bearer {key}")
    rng = random.Random("purchase-cost")
    seq = itertools.count()

    def purchase():
        body = {"member_no": rng.choice(member_nos), "store_code": store_code, "amount_fen": rng.randint(*EARN_AMOUNT_FEN)}
        response = client.post(
            PURCHASES_PATH, data=json.dumps(body), content_type="application/json", HTTP_IDEMPOTENCY_KEY=f"bench-cost-{next(seq)}"
        )
        if response.status_code != 201:
            raise RuntimeError(f"purchase answered {response.status_code}: {response.content[:300]!r}")

    made = 0
    for _ in range(20):  # warm-up: connection, caches, lazy imports
        purchase()
        made += 1

    stack: list[str] = []
    inclusive: dict[str, float] = defaultdict(float)
    calls: Counter = Counter()
    depth: dict[str, int] = {}
    queries: Counter = Counter()
    sql_time: dict[str, float] = defaultdict(float)
    redis_commands: Counter = Counter()
    order: list[str] = []
    outermost = [0.0]  # time in phases called outside any other: the rest is the framework's

    def timed(label, fn):
        def wrapper(*a, **kw):
            depth.setdefault(label, len(stack))  # shown at the depth of its first call
            if label not in order:
                order.append(label)
            stack.append(label)
            start = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                elapsed = time.perf_counter() - start
                inclusive[label] += elapsed
                calls[label] += 1
                stack.pop()
                if not stack:
                    outermost[0] += elapsed
        return wrapper

    def sql(execute, sql_text, params, many, context):
        start = time.perf_counter()
        try:
            return execute(sql_text, params, many, context)
        finally:
            top = stack[-1] if stack else "view and framework"
            queries[top] += 1
            sql_time[top] += time.perf_counter() - start

    real_execute_command = redis.Redis.execute_command

    def counted_execute_command(self, *a, **kw):
        redis_commands[stack[-1] if stack else "view and framework"] += 1
        return real_execute_command(self, *a, **kw)

    patches = [
        (auth, "merchant_api_key_verify", "authenticate: API key lookup"),
        (auth.MerchantKeyThrottle, "allow_request", "throttle (atomic counter)"),
        (payment_services, "api_request_replayed", "replay check (ApiRequest)"),
        (payments_api, "_at_store", "validate; store and member lookup"),
        (payment_services, "api_request_once", "once: transaction, stored response, COMMIT"),
        (payment_services, "purchase_record", "purchase_record"),
        (ledger, "points_earn", "points_earn (the ledger)"),
        (payment_services, "visit_record", "visit_record"),
        (pushes, "push_points_earned", "push_points_earned (outbox, inbox)"),
        (payments_api.PurchaseOutputSerializer, "to_representation", "output serializer (balance)"),
        (pushes, "async_task", "enqueue the push (on commit)"),
    ]
    missing = object()  # inherited, not the owner's own: restored by deleting the wrapper
    originals = [(owner, name, vars(owner).get(name, missing)) for owner, name, _ in patches]
    walls, cpus = [], []
    real_commit = connection._commit
    try:
        for owner, name, label in patches:
            setattr(owner, name, timed(label, getattr(owner, name)))
        connection._commit = timed("COMMIT", real_commit)
        redis.Redis.execute_command = counted_execute_command
        with connection.execute_wrapper(sql):
            for _ in range(samples):
                cpu_start, start = time.process_time(), time.perf_counter()
                purchase()
                walls.append(time.perf_counter() - start)
                cpus.append(time.process_time() - cpu_start)
                made += 1
    finally:
        for owner, name, original in originals:
            if original is missing:
                delattr(owner, name)
            else:
                setattr(owner, name, original)
        del connection._commit
        redis.Redis.execute_command = real_execute_command
    wall_total = sum(walls)
    phases = [
        {
            "label": label, "depth": depth[label], "calls": calls[label] / samples,
            "ms": inclusive[label] / samples * 1000, "queries": queries[label] / samples,
            "sql_ms": sql_time[label] / samples * 1000, "redis": redis_commands[label] / samples,
        }
        for label in order
    ]
    phases.append({
        "label": "view and framework", "depth": 0, "calls": 1.0, "ms": (wall_total - outermost[0]) / samples * 1000,
        "queries": queries["view and framework"] / samples, "sql_ms": sql_time["view and framework"] / samples * 1000,
        "redis": redis_commands["view and framework"] / samples,
    })
    with CaptureQueriesContext(connection) as captured:
        purchase()
        made += 1
    report = {
        "queries": len(captured.captured_queries),
        "statements": [q["sql"] for q in captured.captured_queries],
        "wall_ms": statistics.median(walls) * 1000,
        "cpu_ms": statistics.median(cpus) * 1000,
        "sql_ms": sum(sql_time.values()) / samples * 1000,
        "redis": sum(redis_commands.values()) / samples,
        "phases": phases,
        "made": made,
    }
    if profile:
        profiler = cProfile.Profile(time.process_time)  # CPU, not time spent waiting on the servers
        profiler.enable()
        for _ in range(samples):
            purchase()
            made += 1
        profiler.disable()
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(35)
        report["cprofile"] = out.getvalue()
        report["made"] = made
    return report


# --- in the parent ------------------------------------------------------------------------


@dataclass
class Run:
    load_at_start: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_at_end: tuple[float, float, float] = (0.0, 0.0, 0.0)
    others_busy: list[float] = field(default_factory=list)  # CPU busy while the bench paused, before each side
    earn: Result | None = None
    http: LoadStats | None = None
    http_result: Result | None = None
    machine_busy: float = math.nan  # share of the machine's CPU busy over the HTTP window
    server_cpu: float = math.nan  # gunicorn's CPU over the window, seconds
    worker_cpu: list[float] = field(default_factory=list)  # per gunicorn worker, seconds
    postgres_cpu: float = math.nan  # the bench database's backends over the window, seconds
    cost_earn: dict = field(default_factory=dict)
    cost_purchase: dict = field(default_factory=dict)


def http_phase(args, world: dict, port: int, gunicorn: subprocess.Popen, run: Run) -> None:
    """Warm-up, then the measured window, from ``args.load_procs`` load processes."""
    procs = args.load_procs
    shares = [args.clients // procs + (1 if i < args.clients % procs else 0) for i in range(procs)]
    ready, start = SPAWN.Barrier(procs), SPAWN.Barrier(procs + 1)  # the parent starts the window with them
    with ProcessPoolExecutor(max_workers=procs, mp_context=SPAWN, initializer=_load_init, initargs=(ready, start)) as pool:
        futures = [
            pool.submit(
                load_process, proc=i, clients=n, port=port, tag="http", keys=world["keys"], member_nos=world["member_nos"],
                warmup=args.warmup, seconds=args.seconds,
            )
            for i, n in enumerate(shares)
        ]
        try:
            start.wait(timeout=BARRIER_TIMEOUT)
        except threading.BrokenBarrierError:
            for f in futures:
                f.result()  # the load process's own error
            raise
        server_pids = gunicorn_pids(gunicorn.pid)
        server0, pg0 = cpu_of(server_pids), cpu_of(postgres_backend_pids(args.db))
        ticks0 = machine_ticks()
        time.sleep(args.seconds)
        ticks1 = machine_ticks()
        server1, pg1 = cpu_of(server_pids), cpu_of(postgres_backend_pids(args.db))
        stats = LoadStats()
        for f in futures:
            stats.merge(f.result())
    run.http = stats
    run.server_cpu = spent(server0, server1)
    run.worker_cpu = sorted((server1[pid] - server0.get(pid, 0.0) for pid in server1 if pid != gunicorn.pid), reverse=True)
    run.postgres_cpu = spent(pg0, pg1)
    total, idle = ticks1[0] - ticks0[0], ticks1[1] - ticks0[1]
    run.machine_busy = 1 - idle / total if total else math.nan
    latencies = sorted(stats.latencies)
    run.http_result = Result(
        tps=stats.ok_in_window / args.seconds, p50_ms=percentile(latencies, 0.50) * 1000,
        p99_ms=percentile(latencies, 0.99) * 1000, committed=stats.ok_total,
        errors=stats.statuses + stats.failures,
        cpu_ms_per_op=stats.cpu_seconds / stats.ok_in_window * 1000 if stats.ok_in_window else math.nan,
    )


def _table(headers: list[str], rows: list[list[str]], left: int = 1) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells):
        return " | ".join(c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(headers), "-+-".join("-" * w for w in widths), *(line(r) for r in rows)])


def _counts(counter: Counter) -> str:
    return ", ".join(f"{label} ×{n:,}" for label, n in sorted(counter.items())) or "none"


def noise_note(run: Run) -> str:
    cores = os.cpu_count() or 1
    busy = max(run.others_busy, default=0.0)
    load = max(run.load_at_start[0], 0.0)
    text = (
        f"load average {run.load_at_start[0]:.2f} {run.load_at_start[1]:.2f} {run.load_at_start[2]:.2f} at start "
        f"({run.load_at_end[0]:.2f} at the end, ours included) on {cores} cores; CPU busy with other work just before "
        + (", ".join(f"{side} {b:.0%}" for side, b in zip(("in-process earn", "HTTP"), run.others_busy)) or "—")
    )
    reasons = []
    if load >= LOAD_PER_CORE_WARNING * cores:
        reasons.append(f"load average {load:.2f} at start on {cores} cores")
    if busy >= OTHERS_BUSY_WARNING:
        reasons.append(f"other work took {busy:.0%} of the CPU just before a measurement")
    if reasons:
        text += (
            f"\nNOISY: the machine is shared ({'; '.join(reasons)}).\n"
            "Other work takes CPU from both sides, so the rates are low and vary from run to run; the single-client\n"
            "costs below vary less."
        )
    return text


def report(args, server: PgServer, version: str, run: Run) -> None:
    earn, http_r, stats = run.earn, run.http_result, run.http
    print(
        f"\nmerchant API purchases over HTTP vs in-process earn — PostgreSQL {version} at {server.host}:{server.port} "
        f"(database {args.db}), Redis db {args.redis_db}, {os.cpu_count()} CPUs"
    )
    print(
        f"gunicorn {args.workers} workers × {args.threads} threads (gthread), DEBUG off; {args.clients} HTTP clients over "
        f"{args.load_procs} load processes, keep-alive; {args.earn_clients} in-process earn workers; "
        f"{args.warmup:g} s warm-up, {args.seconds:g} s measured each; {args.members:,} members, {args.merchants} merchants"
    )
    print(noise_note(run))
    rows = []
    if http_r:
        rows.append([f"HTTP purchases, {args.clients} clients", f"{http_r.tps:,.0f}", f"{http_r.p50_ms:.1f}", f"{http_r.p99_ms:.1f}"])
    if earn:
        rows.append([f"in-process earn, {args.earn_clients} processes", f"{earn.tps:,.0f}", f"{earn.p50_ms:.1f}", f"{earn.p99_ms:.1f}"])
    print()
    print(_table(["", "per second", "p50 ms", "p99 ms"], rows))
    if http_r and earn:
        ratio = http_r.tps / earn.tps if earn.tps else 0.0
        print(f"\nHTTP / in-process: {ratio:.0%}")
        print(
            f"aim: HTTP purchases ≥ {AIM_RATIO:.0%} of the in-process earn rate — {'PASS' if ratio >= AIM_RATIO else 'MISS'} "
            f"({http_r.tps:,.0f} / {earn.tps:,.0f} = {ratio:.0%}; information, never fails the run)"
        )
        print(
            f"aim: HTTP purchase p99 < {AIM_P99_MS:.0f} ms — {'PASS' if http_r.p99_ms < AIM_P99_MS else 'MISS'} "
            f"({http_r.p99_ms:.1f} ms; information)"
        )
        # Little's law: in a closed loop, mean latency = clients in flight / completion rate.
        mean_ms = args.clients / http_r.tps * 1000 if http_r.tps else math.inf
        print(
            f"(a closed loop of {args.clients} clients waits {mean_ms:,.0f} ms a request on average (clients / rate): "
            f"p99 < {AIM_P99_MS:.0f} ms at {args.clients} clients needs well over {args.clients / AIM_P99_MS * 1000:,.0f} purchases/s)"
        )
    if stats:
        print(f"\nHTTP answers inside the window: {_counts(stats.in_window_statuses)}")
        print(
            f"HTTP over the whole run (warm-up {stats.warmup_requests:,} requests included): 201 ×{stats.ok_total:,}; "
            f"other statuses: {_counts(stats.statuses)}; no answer: {_counts(stats.failures)}; "
            f"broken connections retried with the same key: {_counts(stats.retries)}"
        )
    if earn and earn.errors:
        print(f"in-process earn errors: {_counts(earn.errors)}")
    if http_r and stats and stats.ok_in_window:
        n = stats.ok_in_window
        workers = ", ".join(f"{c:.1f}" for c in run.worker_cpu)
        print(
            f"\nCPU per operation, ms — HTTP purchase: gunicorn {run.server_cpu / n * 1000:.2f}, PostgreSQL backends "
            f"{run.postgres_cpu / n * 1000:.2f}, load generator {stats.cpu_seconds / n * 1000:.2f}; "
            f"in-process earn: worker {earn.cpu_ms_per_op:.2f} (its PostgreSQL share not measured)"
        )
        print(
            f"over the HTTP window the machine was {run.machine_busy:.0%} busy; gunicorn workers' CPU seconds: {workers} "
            f"(of {args.seconds:g} s each: how evenly the connections spread)"
        )

    if run.cost_purchase:
        c, e = run.cost_purchase, run.cost_earn
        print(
            f"\none operation from 1 client, medians of {COST_SAMPLES} (purchase: Django's test client, whole stack, "
            "no gunicorn; earn: points_earn called directly)\n"
        )
        print(_table(
            ["operation", "SQL statements", "Redis commands", "wall ms", "client CPU ms", "in SQL ms"],
            [["purchase (POST /api/v1/purchases/)", str(c["queries"]), f"{c['redis']:g}", f"{c['wall_ms']:.2f}",
              f"{c['cpu_ms']:.2f}", f"{c['sql_ms']:.2f}"]]
            + ([["earn (points_earn)", f"{e['queries']:g}", "0", f"{e['wall_ms']:.2f}", f"{e['cpu_ms']:.2f}",
                 f"{e['sql_ms'] + e['commit_ms']:.2f}"]] if e else []),
        ))
        print("\nthe purchase by phase, mean per request (a phase's time includes the phases under it; statements and\n"
              "Redis commands are counted in the innermost phase running them)\n")
        print(_table(
            ["phase", "calls", "ms", "SQL", "SQL ms", "Redis"],
            [["  " * p["depth"] + p["label"], f"{p['calls']:g}", f"{p['ms']:.2f}", f"{p['queries']:.1f}", f"{p['sql_ms']:.2f}",
              f"{p['redis']:.1f}"]
             for p in c["phases"]],
        ))
        if args.profile:
            print("\nthe statements of one purchase (CaptureQueriesContext):")
            for statement in c["statements"]:
                print(f"  {statement[:220]}")
            print(f"\nCPU profile of {COST_SAMPLES} purchases, by cumulative time:\n{c['cprofile']}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Merchant API purchases over HTTP (gunicorn, PostgreSQL, Redis) vs in-process earn.")
    parser.add_argument("--clients", type=int, default=32, help="concurrent HTTP clients (default %(default)s)")
    parser.add_argument("--earn-clients", type=int, help="in-process earn worker processes (default: --clients)")
    parser.add_argument("--seconds", type=float, help="measured seconds on each side (default 10; --quick 2)")
    parser.add_argument("--warmup", type=float, help="HTTP warm-up seconds before the window (default 3; --quick 1)")
    parser.add_argument("--members", type=int, help="members to seed (default 2000; --quick 500)")
    parser.add_argument("--merchants", type=int, default=8, help="merchants to seed, one store and key each (default %(default)s)")
    parser.add_argument("--quick", action="store_true", help="smoke test: 2 s each side, 1 s warm-up, 500 members")
    # Two cores: four worker processes keep both busy while some wait on PostgreSQL and
    # Redis; four threads each overlap those waits without one process's GIL becoming
    # the queue. More processes only add context switches and connections.
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes (default %(default)s)")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker (default %(default)s)")
    parser.add_argument("--load-procs", type=int, default=2, help="load generator processes sharing the clients (default %(default)s)")
    parser.add_argument(
        "--server", default=os.environ.get("BENCH_PG_SERVER", "postgres://postgres@127.0.0.1:5432"),
        help="PostgreSQL server, as postgres://user[:password]@host:port (default $BENCH_PG_SERVER or %(default)s)",
    )
    parser.add_argument("--db", default="o2o_bench_api", help="the bench database: dropped and recreated (default %(default)s)")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379", help="Redis server, without a database (default %(default)s)")
    parser.add_argument("--redis-db", type=int, default=14, help="Redis database index: flushed before and after (default %(default)s)")
    parser.add_argument("--rate-limit", default="1000000/min", help="MERCHANT_API_RATE for the server, high enough not to throttle")
    parser.add_argument("--profile", action="store_true", help="also print the SQL of one purchase and a CPU profile")
    parser.add_argument("--keep", action="store_true", help="keep the database, the Redis data and the work directory")
    args = parser.parse_args(argv)
    if args.seconds is None:
        args.seconds = 2 if args.quick else 10
    if args.warmup is None:
        args.warmup = 1 if args.quick else 3
    if args.members is None:
        args.members = 500 if args.quick else 2000
    if args.earn_clients is None:
        args.earn_clients = args.clients
    if min(args.clients, args.earn_clients, args.members, args.merchants, args.workers, args.threads, args.load_procs) < 1:
        parser.error("counts must be 1 or more")
    if args.seconds <= 0 or args.warmup < 0:
        parser.error("--seconds must be positive and --warmup not negative")
    args.load_procs = min(args.load_procs, args.clients)
    own = urlsplit(os.environ.get("DATABASE_URL", "")).path.lstrip("/")
    if args.db in {"postgres", own} or args.db.startswith("template"):
        parser.error(f"refusing to drop {args.db!r}: a system database or this environment's DATABASE_URL")
    if not 0 <= args.redis_db <= 15:
        parser.error("--redis-db must be 0 to 15")
    redis_url = f"{args.redis.rstrip('/')}/{args.redis_db}"
    if os.environ.get("REDIS_URL", "").rstrip("/") == redis_url:
        parser.error(f"refusing to flush {redis_url}: it is this environment's REDIS_URL")
    args.redis_url = redis_url
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    run = Run(load_at_start=os.getloadavg())
    server = PgServer.parse(args.server)
    try:
        version = server.setting("server_version")
        max_connections = int(server.setting("max_connections"))
    except Exception as exc:  # noqa: BLE001 — say what is wrong, not a traceback
        raise SystemExit(f"cannot reach PostgreSQL at {args.server}: {exc}") from None
    needed = max(args.earn_clients, args.workers * args.threads) + 5
    if needed > max_connections:
        raise SystemExit(f"this run needs {needed} connections, more than the server's max_connections ({max_connections})")
    if not GUNICORN.exists():
        raise SystemExit(f"no gunicorn at {GUNICORN}")

    workdir = Path(tempfile.mkdtemp(prefix="o2o-bench-api-"))
    stripped = {name: None for name in os.environ if name.startswith(("WECHAT_", "ALIPAY_"))}  # no platform is ever called
    env = django_env(
        **stripped, DATABASE_URL=server.url(args.db), REDIS_URL=args.redis_url, MERCHANT_API_RATE=args.rate_limit,
        ALLOWED_HOSTS=HOST, SECURE_SSL_REDIRECT="0", LOG_LEVEL="ERROR", O2O_VAR_DIR=str(workdir),
    )
    gunicorn = None
    healthy = True
    reported = False

    def settle() -> None:
        server.checkpoint()
        busy = cpu_busy()
        if busy is not None:
            run.others_busy.append(busy)

    try:
        log(f"PostgreSQL: creating {args.db}, migrating, seeding {args.members:,} members and {args.merchants} merchants …")
        server.recreate(args.db)
        flushed = redis_flush(args.redis_url)
        if flushed:
            log(f"Redis: flushed {flushed} keys from {args.redis_url}")
        manage(env, "migrate", "--no-input", "--verbosity=0")
        manage(env, "createcachetable")  # a no-op with the Redis cache; kept so the setup is the documented one
        world = in_django(env, seed_world, members=args.members, merchants=args.merchants)
        server.run(args.db, "VACUUM ANALYZE")

        log(f"in-process earn: {args.earn_clients} processes, {args.seconds:g} s …")
        run.earn = run_pool(env, args.earn_clients, ["earn"], "inproc", args.seconds, settle)["earn"]
        log(f"  {run.earn.tps:,.0f} tps")

        port = free_port()
        log(f"starting gunicorn ({args.workers} workers × {args.threads} threads) on {HOST}:{port} …")
        gunicorn = start_gunicorn(args, env, port)
        settle()
        log(f"HTTP purchases: {args.clients} clients, {args.warmup:g} s warm-up, {args.seconds:g} s …")
        http_phase(args, world, port, gunicorn, run)
        log(f"  {run.http_result.tps:,.0f} req/s, p99 {run.http_result.p99_ms:.1f} ms")
        stop_gunicorn(gunicorn)
        gunicorn = None
        run.load_at_end = os.getloadavg()

        log("checking what the run wrote …")
        sizes, violations = in_django(env, api_check, run.http.ok_total, {"bench:earn:inproc:": run.earn.committed})

        log("costing one purchase and one earn from a single client …")
        key, store_code = world["keys"][0]
        run.cost_purchase = in_django(
            env, purchase_cost, key=key, store_code=store_code, member_nos=world["member_nos"], samples=COST_SAMPLES,
            profile=args.profile,
        )
        run.cost_earn = in_django(env, cost_per_operation, samples=COST_SAMPLES, profile=False)["earn"]

        reported = True
        report(args, server, version, run)
        print()
        healthy = report_check(f"PostgreSQL {args.db} (one Purchase and one stored response per 201 included)", sizes, violations)
    except BaseException:
        if (run.earn or run.http_result) and not reported:
            print("\n(partial results: the run failed before its end, see stderr)")
            report(args, server, version, run)
        raise
    finally:
        if gunicorn is not None:
            stop_gunicorn(gunicorn)
        if args.keep:
            log(f"kept: database {args.db}, Redis {args.redis_url}, {workdir}")
        else:
            for cleanup in (lambda: server.drop(args.db), lambda: redis_flush(args.redis_url), lambda: shutil.rmtree(workdir)):
                try:
                    cleanup()
                except Exception as exc:  # noqa: BLE001 — cleanup must not hide the run's own error
                    log(f"cleanup: {exc}")
    # Timings are information, never a failure; a run that wrote the wrong rows is.
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
