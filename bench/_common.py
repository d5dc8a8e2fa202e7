"""What every benchmark in bench/ needs: throw-away databases, pgbench as a yardstick,
worker processes that each run Django, and a timed loop with latency percentiles.

Nothing here imports Django at module level. A benchmark's parent process only
orchestrates; Django runs in spawned children, each with the environment (and so
the settings) of the database it measures — settings are read once per process, so
one process cannot measure PostgreSQL and SQLite in turn.
"""

from __future__ import annotations

import glob
import math
import multiprocessing
import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

REPO_DIR = Path(__file__).resolve().parent.parent

# Spawn, not fork: a forked child would inherit the parent's interpreter state, and
# each worker must start clean, read its own settings and open its own connection.
SPAWN = multiprocessing.get_context("spawn")

# Databases a benchmark must never drop, whatever its flags say.
PROTECTED_DATABASES = {"postgres", "template0", "template1"}


def log(message: str) -> None:
    """Progress goes to stderr, so stdout carries only the results."""
    print(message, file=sys.stderr, flush=True)


# --- the child environment ---------------------------------------------------------


def django_env(**overrides: str | None) -> dict[str, str]:
    """The environment of a Django child: this one, with ``overrides`` (None unsets).

    DEBUG is off as in production: with it on, Django keeps every query of a
    connection in memory and times it, which costs the workers CPU we mean to measure.
    """
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="o2o_site.settings",
        DEBUG="0",
        O2O_SANDBOX="0",  # settings refuse the sandbox with DEBUG off, whatever this shell exports
        SECRET_KEY="bench-only-secret-key-" + "b" * 40,
        # DEBUG off needs its hosts; the children speak plain HTTP on loopback, no proxy.
        ALLOWED_HOSTS="127.0.0.1,localhost",
        SECURE_SSL_REDIRECT="0",
        # Logs are JSON lines on stdout: keep the children's out of the printed figures.
        LOG_LEVEL="WARNING",
    )
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def manage(env: dict[str, str], *args: str) -> None:
    """Run ``manage.py`` with ``args`` in a subprocess; raise if it fails."""
    subprocess.run([sys.executable, str(REPO_DIR / "manage.py"), *args], env=env, cwd=REPO_DIR, check=True)


_barrier = None


def _child_init(env: dict[str, str], barrier) -> None:
    global _barrier
    os.environ.clear()
    os.environ.update(env)
    if str(REPO_DIR) not in sys.path:
        sys.path.insert(0, str(REPO_DIR))
    import django

    django.setup()
    _barrier = barrier


@contextmanager
def django_pool(workers: int, env: dict[str, str]) -> Iterator[ProcessPoolExecutor]:
    """``workers`` processes, each set up for Django with ``env`` and sharing one barrier.

    Submit exactly ``workers`` tasks that call ``measure`` at a time: each blocks at
    the barrier until all have arrived, so no process can take two of them.
    """
    barrier = SPAWN.Barrier(workers)
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=SPAWN, initializer=_child_init, initargs=(env, barrier))
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def in_django(env: dict[str, str], fn: Callable, /, *args, **kwargs):
    """``fn(*args, **kwargs)`` in one fresh Django process with ``env``; its result."""
    with django_pool(1, env) as pool:
        return pool.submit(fn, *args, **kwargs).result()


# --- the timed loop ----------------------------------------------------------------


def error_label(exc: BaseException) -> str:
    """A service error by its stable code; anything else by its class."""
    code = getattr(exc, "code", None)
    return code if isinstance(code, str) else type(exc).__name__


@dataclass
class WorkerStats:
    committed: int = 0  # every success, warm-up and stragglers included: what the database holds
    in_window: int = 0  # successes that began and ended inside the measured window
    latencies: list[float] = field(default_factory=list)  # seconds, of the in-window successes
    errors: Counter = field(default_factory=Counter)
    cpu_seconds: float = 0.0  # this process's CPU time over the window: what the client side costs


def measure(
    make_op: Callable[[], Callable[[int], object]], *, seconds: float, warmup: int = 3, barrier_timeout: float = 300
) -> WorkerStats:
    """Run ``op(seq)``, as built by ``make_op()``, in a loop for ``seconds`` once every
    worker of the pool is ready.

    The warm-up opens the connection and fills the caches before the clock starts,
    as pgbench leaves its connection time out. Only operations that finish inside the
    window count, so the rate is not inflated by the last one straggling past it.
    """
    try:
        op = make_op()
    except BaseException:
        _barrier.abort()  # the other workers would otherwise wait for this one until the timeout
        raise
    stats = WorkerStats()
    seq = 0
    for _ in range(warmup):
        try:
            op(seq)
            stats.committed += 1
        except Exception as exc:  # noqa: BLE001 — an error is a result to report, not a crash
            stats.errors[error_label(exc)] += 1
        seq += 1
    _barrier.wait(timeout=barrier_timeout)
    cpu_start = time.process_time()
    start = time.perf_counter()
    deadline = start + seconds
    now = start
    while now < deadline:
        try:
            op(seq)
        except Exception as exc:  # noqa: BLE001
            stats.errors[error_label(exc)] += 1
        else:
            stats.committed += 1
            end = time.perf_counter()
            if end <= deadline:
                stats.in_window += 1
                stats.latencies.append(end - now)
        seq += 1
        now = time.perf_counter()
    stats.cpu_seconds = time.process_time() - cpu_start
    return stats


@dataclass
class Result:
    """One measured point: a rate over a fixed window and the latencies behind it."""

    tps: float
    p50_ms: float
    p99_ms: float
    committed: int = 0
    errors: Counter = field(default_factory=Counter)
    cpu_ms_per_op: float = math.nan  # client CPU (Python, Django, the driver) per operation


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values (nan when there are none)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


def combine(stats: list[WorkerStats], seconds: float) -> Result:
    latencies = sorted(x for s in stats for x in s.latencies)
    errors = Counter()
    for s in stats:
        errors.update(s.errors)
    done = sum(s.in_window for s in stats)
    return Result(
        tps=done / seconds,
        p50_ms=percentile(latencies, 0.50) * 1000,
        p99_ms=percentile(latencies, 0.99) * 1000,
        committed=sum(s.committed for s in stats),
        errors=errors,
        cpu_ms_per_op=sum(s.cpu_seconds for s in stats) / done * 1000 if done else math.nan,
    )


def cpu_busy(interval: float = 1.0) -> float | None:
    """The share of the machine's CPU that was busy over the next ``interval`` seconds
    (from /proc/stat; None where there is none).

    Taken while the benchmark itself is paused, it is the work of others: that work
    takes CPU from pgbench and the ledger alike. The load average cannot tell this,
    as the benchmark's own workers stay in it for a minute after they stop.
    """

    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields[:8]), idle  # guest time is already counted in user

    try:
        total0, idle0 = sample()
        time.sleep(interval)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return 1 - (idle1 - idle0) / (total1 - total0) if total1 > total0 else None


# --- the PostgreSQL server -------------------------------------------------------


@dataclass(frozen=True)
class PgServer:
    """A PostgreSQL server given as ``postgres://user[:password]@host:port``."""

    host: str
    port: int
    user: str
    password: str

    @classmethod
    def parse(cls, url: str) -> PgServer:
        parts = urlsplit(url)
        if parts.scheme not in {"postgres", "postgresql"}:
            raise SystemExit(f"--server must be a postgres:// URL, not {url!r}")
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 5432,
            user=unquote(parts.username or "postgres"),
            password=unquote(parts.password or ""),
        )

    def url(self, database: str) -> str:
        auth = self.user + (f":{self.password}" if self.password else "")
        return f"postgres://{auth}@{self.host}:{self.port}/{database}"

    def _connect(self, database: str = "postgres"):
        import psycopg

        return psycopg.connect(
            host=self.host, port=self.port, user=self.user, password=self.password or None, dbname=database,
            autocommit=True,
        )

    def recreate(self, database: str) -> None:
        """Drop ``database`` if it exists (closing its sessions) and create it empty."""
        self.drop(database)
        with self._connect() as conn:
            conn.execute(f'CREATE DATABASE "{database}"')

    def drop(self, database: str) -> None:
        if database in PROTECTED_DATABASES:
            raise SystemExit(f"refusing to drop the {database!r} database")
        with self._connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')

    def run(self, database: str, sql: str) -> None:
        with self._connect(database) as conn:
            conn.execute(sql)

    def setting(self, name: str) -> str:
        """A server setting as SHOW prints it (``server_version``, ``max_connections`` …)."""
        with self._connect() as conn:
            return conn.execute(f"SHOW {name}").fetchone()[0]

    def checkpoint(self) -> None:
        """Flush dirty pages now, so that a timed checkpoint does not land in one run
        and not in another. Needs a superuser (or pg_checkpoint); skipped otherwise."""
        import psycopg

        try:
            with self._connect() as conn:
                conn.execute("CHECKPOINT")
        except psycopg.errors.InsufficientPrivilege:
            pass

    def client_env(self) -> dict[str, str]:
        """The environment for libpq tools (psql, pgbench)."""
        env = dict(os.environ, PGHOST=self.host, PGPORT=str(self.port), PGUSER=self.user)
        if self.password:
            env["PGPASSWORD"] = self.password
        return env


_TPS = re.compile(r"^tps = ([0-9.]+) \(without initial connection time\)", re.MULTILINE)


def pgbench_init(server: PgServer, database: str, *, scale: int) -> None:
    server.recreate(database)
    subprocess.run(
        ["pgbench", "--initialize", "--quiet", f"--scale={scale}", database],
        env=server.client_env(), check=True, capture_output=True, text=True,
    )


def pgbench_run(server: PgServer, database: str, *, clients: int, seconds: int, log_dir: Path) -> Result:
    """pgbench's built-in tpcb-like script; tps as pgbench reports it, latencies from
    its per-transaction log (``-l``), whose third field is the latency in µs.

    Two threads at most (``-j``): the machine this was written for has two cores, and
    more threads than cores only make pgbench's own client side contend. pgbench's
    default vacuum before the run is kept: it empties pgbench_history, so each
    client count starts from the same tables.
    """
    prefix = log_dir / f"pgbench-{clients}"
    done = subprocess.run(
        [
            "pgbench", f"--client={clients}", f"--jobs={min(clients, 2)}", f"--time={seconds}",
            "--log", f"--log-prefix={prefix}", database,
        ],
        env=server.client_env(), cwd=log_dir, check=True, capture_output=True, text=True,
    )
    match = _TPS.search(done.stdout)
    if match is None:
        raise RuntimeError(f"no tps in pgbench's output:\n{done.stdout}\n{done.stderr}")
    latencies = []
    for path in glob.glob(f"{prefix}.*"):
        with open(path) as lines:
            latencies.extend(int(line.split()[2]) / 1e6 for line in lines if line.strip())
        os.unlink(path)
    latencies.sort()
    failed = re.search(r"^number of failed transactions: (\d+)", done.stdout, re.MULTILINE)
    errors = Counter({"failed": int(failed.group(1))}) if failed and int(failed.group(1)) else Counter()
    return Result(
        tps=float(match.group(1)), p50_ms=percentile(latencies, 0.50) * 1000, p99_ms=percentile(latencies, 0.99) * 1000,
        committed=len(latencies), errors=errors,
    )
