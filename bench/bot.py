"""Bot benchmark: text-command replies through the real /wechat/ endpoint, in safe mode,
under gunicorn, at a fixed offered load.

    .venv/bin/python bench/bot.py                        # SQLite: 200 messages/s for 10 s
    .venv/bin/python bench/bot.py --database postgres    # the same on a fresh PostgreSQL database
    .venv/bin/python bench/bot.py --rate 400 --seconds 20 --workers 4 --threads 8

It sets up a fresh database in a temporary directory (SQLite in WAL mode, as
o2o_site/settings.py configures it) or on the PostgreSQL server (``--server``,
database ``--db``, dropped and recreated, dropped again at the end unless ``--keep``),
migrates it, and starts gunicorn on a free loopback port with DEBUG off, the
official account configured in safe mode (a token, an EncodingAESKey, an app id; no
app secret, so WeChat's API is never called) and nothing else.

Every shopper (``--shoppers``, default 200) first sends one message, unmeasured: that
makes them members and warms the workers. Then the load is open-loop: message *i* is
due at ``start + i / rate`` whatever happened to the others, a pool of client threads
sends it as WeChat would (a text command — 积分, 签到, 优惠券, 会员码, 帮助, points —
with a fresh MsgId, encrypted and signed beforehand), and its latency is measured from
when it was due, not from when a thread got round to it, so a server that falls
behind shows it in the latencies instead of silently lowering the load.

It prints the offered and achieved rate (replies per second over the window), the
p50/p99/max latencies, errors by kind, and the aim "p99 < 50 ms" as information:
timings never fail the run. It then checks that every reply decrypts and answers the
command sent (a sample), and that the conversations log holds exactly one row per
message. Progress goes to stderr, results to stdout.

The bench client and the server share the machine: on a small one the client's own
CPU (HTTP, threads) takes from the server's.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import http.client
import math
import os
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode, urlsplit
from xml.etree.ElementTree import fromstring

import requests
from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

REPO_DIR = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
TOKEN = "bench-token"
APP_ID = "wxbench0000000000"
AES_KEY = base64.b64encode(hashlib.sha256(b"bench").digest()).decode().rstrip("=")
ACCOUNT = "gh_bench"
# (what the shopper sends, a phrase its reply must contain)
COMMANDS = [
    ("积分", "您的积分"), ("签到", "签到"), ("优惠券", "优惠券"), ("会员码", "会员号"), ("帮助", "您可以发送"),
    ("points", "Your points"),
]
PROTECTED_DATABASES = {"postgres", "template0", "template1"}
AIM_P99_MS = 50.0


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- WeChat's side: sign and encrypt as WeChat does ------------------------------------


def signature(*parts: str) -> str:
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def _key() -> bytes:
    return base64.b64decode(AES_KEY + "=")


def encrypt(xml: str) -> str:
    key, message = _key(), xml.encode()
    plain = os.urandom(16) + struct.pack(">I", len(message)) + message + APP_ID.encode()
    padder = sym_padding.PKCS7(256).padder()
    padded = padder.update(plain) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(encryptor.update(padded) + encryptor.finalize()).decode()


def decrypt(encrypted: str) -> str:
    key = _key()
    decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    padded = decryptor.update(base64.b64decode(encrypted)) + decryptor.finalize()
    unpadder = sym_padding.PKCS7(256).unpadder()
    plain = unpadder.update(padded) + unpadder.finalize()
    (length,) = struct.unpack(">I", plain[16:20])
    return plain[20:20 + length].decode()


@dataclass(frozen=True)
class Message:
    path: str  # /wechat/?signature=…
    body: bytes
    expect: str  # a phrase the reply must contain


def message(openid: str, text: str, expect: str) -> Message:
    xml = (
        f"<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
        f"<Content><![CDATA[{text}]]></Content><MsgId>{secrets.randbelow(2**62)}</MsgId></xml>"
    )
    timestamp, nonce = str(int(time.time())), secrets.token_hex(5)
    encrypted = encrypt(xml)
    query = {
        "signature": signature(TOKEN, timestamp, nonce), "timestamp": timestamp, "nonce": nonce, "openid": openid,
        "encrypt_type": "aes", "msg_signature": signature(TOKEN, timestamp, nonce, encrypted),
    }
    body = f"<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
    return Message("/wechat/?" + urlencode(query), body.encode(), expect)


def reply_text(body: bytes) -> str:
    fields = {child.tag: child.text or "" for child in fromstring(body)}
    if fields.get("MsgSignature") != signature(TOKEN, fields["TimeStamp"], fields["Nonce"], fields["Encrypt"]):
        raise ValueError("the reply's MsgSignature is wrong")
    inner = {child.tag: child.text or "" for child in fromstring(decrypt(fields["Encrypt"]))}
    return inner.get("Content", "")


# --- the server ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_busy(interval: float = 1.0) -> float:
    """The share of the machine's CPU busy over the next ``interval`` seconds (/proc/stat):
    taken before the load starts, it is other people's work competing with the run."""
    def sample():
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(fields[:8]), fields[3] + fields[4]

    try:
        total0, idle0 = sample()
        time.sleep(interval)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return math.nan
    return 1 - (idle1 - idle0) / (total1 - total0) if total1 > total0 else math.nan


def server_env(args, workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WECHAT_", "ALIPAY_", "DATABASE_URL", "REDIS_URL"))}
    env.update(
        DJANGO_SETTINGS_MODULE="o2o_site.settings", DEBUG="0", O2O_SANDBOX="0", SECURE_SSL_REDIRECT="0",
        SECRET_KEY="bench-only-secret-key-" + "b" * 40, ALLOWED_HOSTS="127.0.0.1", LOG_LEVEL="WARNING",
        O2O_VAR_DIR=str(workdir), WECHAT_TOKEN=TOKEN, WECHAT_ENCODING_AES_KEY=AES_KEY, WECHAT_APP_ID=APP_ID,
    )
    if args.database == "postgres":
        env["DATABASE_URL"] = args.server.rstrip("/") + "/" + args.db
    else:
        env["O2O_SQLITE_PATH"] = str(workdir / "bench.sqlite3")
    if args.conn_max_age is not None:
        # Not the shipped settings: the same with persistent connections, to show what
        # a CONN_MAX_AGE for the embedded default would change.
        (workdir / "bench_settings.py").write_text(
            "from o2o_site.settings import *  # noqa: F403\n"
            f"DATABASES['default']['CONN_MAX_AGE'] = {args.conn_max_age}\n"
        )
        python_path = os.pathsep.join([str(workdir), env.get("PYTHONPATH", "")])
        env.update(DJANGO_SETTINGS_MODULE="bench_settings", PYTHONPATH=python_path)
    return env


def manage(env: dict[str, str], *argv: str) -> str:
    done = subprocess.run(
        [sys.executable, str(REPO_DIR / "manage.py"), *argv], env=env, cwd=REPO_DIR, check=True,
        capture_output=True, text=True,
    )
    return done.stdout


def pg_admin(server: str, sql: str) -> None:
    import psycopg

    parts = urlsplit(server)
    with psycopg.connect(
        host=parts.hostname or "127.0.0.1", port=parts.port or 5432, user=parts.username or "postgres",
        password=parts.password or None, dbname="postgres", autocommit=True,
    ) as conn:
        conn.execute(sql)


def start_gunicorn(args, env: dict[str, str], port: int) -> subprocess.Popen:
    command = [
        str(VENV_BIN / "gunicorn"), "o2o_site.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", str(args.workers),
        "--threads", str(args.threads), "--log-level", "warning", "--keep-alive", "30",
    ]
    process = subprocess.Popen(command, env=env, cwd=REPO_DIR, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        # A fresh signature each time: /wechat/ refuses timestamps 5 minutes off and
        # (timestamp, nonce) pairs seen with another request.
        timestamp, nonce = str(int(time.time())), secrets.token_hex(5)
        probe = f"http://127.0.0.1:{port}/wechat/?" + urlencode(
            {"signature": signature(TOKEN, timestamp, nonce), "timestamp": timestamp, "nonce": nonce, "echostr": "up"}
        )
        if process.poll() is not None:
            raise SystemExit(f"gunicorn exited with status {process.returncode}")
        try:
            if requests.get(probe, timeout=1).text == "up":
                return process
        except requests.RequestException:
            pass
        time.sleep(0.2)
    stop(process)
    raise SystemExit("gunicorn did not answer within 60 s")


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU of every live process in group ``pgid`` (gunicorn's master and
    workers), from /proc; nan where there is no /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total, seen = 0.0, False
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields after the name: state, ppid, pgrp, …
            total += (int(fields[11]) + int(fields[12])) / tick
            seen = True
    return total if seen else math.nan


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)  # the group we started: gunicorn's master and its workers
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


# --- the load --------------------------------------------------------------------------


@dataclass
class Outcome:
    due: float
    done: float = math.nan
    status: int = 0
    error: str = ""
    body: bytes = b""


@dataclass
class Run:
    outcomes: list[Outcome] = field(default_factory=list)
    start: float = 0.0
    end_of_schedule: float = 0.0
    behind_max: float = 0.0  # how late the scheduler itself submitted a message, at worst
    server_cpu: float = math.nan  # CPU seconds gunicorn spent over the run
    client_cpu: float = math.nan  # CPU seconds this process spent over the run
    busy_before: float = math.nan


_connections = threading.local()


def send(port: int, msg: Message, outcome: Outcome, *, keep_body: bool) -> None:
    """POST with one keep-alive connection per client thread (http.client: a client
    as light as can be, so that it takes as little CPU from the server as it can)."""
    try:
        conn = getattr(_connections, "conn", None) or http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        _connections.conn = conn
        conn.request("POST", msg.path, body=msg.body, headers={"Content-Type": "text/xml"})
        response = conn.getresponse()
        body = response.read()
        outcome.status = response.status
        if keep_body:
            outcome.body = body
    except (OSError, http.client.HTTPException) as exc:
        outcome.error = type(exc).__name__
        _connections.conn = None
    outcome.done = time.perf_counter()


def offer(port: int, messages: list[Message], *, rate: float, clients: int, sample_every: int, server_pgid: int) -> Run:
    """Open loop: message i is due at start + i / rate; latency counts from then."""
    run = Run(outcomes=[Outcome(due=0.0) for _ in messages])
    server_cpu, client_cpu = group_cpu_seconds(server_pgid), time.process_time()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        run.start = time.perf_counter() + 0.2
        for i, msg in enumerate(messages):
            due = run.start + i / rate
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            run.behind_max = max(run.behind_max, time.perf_counter() - due)
            run.outcomes[i].due = due
            pool.submit(send, port, msg, run.outcomes[i], keep_body=i % sample_every == 0)
        run.end_of_schedule = run.start + len(messages) / rate
    run.server_cpu = group_cpu_seconds(server_pgid) - server_cpu
    run.client_cpu = time.process_time() - client_cpu
    return run


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return math.nan
    return values[max(1, math.ceil(fraction * len(values))) - 1]


def report(args, run: Run, messages: list[Message]) -> None:
    ok = [o for o in run.outcomes if o.status == 200]
    errors = Counter(o.error or f"HTTP {o.status}" for o in run.outcomes if o.status != 200)
    latencies = sorted((o.done - o.due) * 1000 for o in ok)
    last = max((o.done for o in run.outcomes if not math.isnan(o.done)), default=run.start)
    window = run.end_of_schedule - run.start
    in_window = sum(1 for o in ok if o.done <= run.end_of_schedule)
    p50, p99 = percentile(latencies, 0.50), percentile(latencies, 0.99)
    worst = latencies[-1] if latencies else math.nan
    settings_note = ""
    if args.conn_max_age is not None:
        settings_note = f", CONN_MAX_AGE={args.conn_max_age} (not the shipped settings)"
    print(f"bot bench: /wechat/ text commands, safe mode, gunicorn {args.workers} workers x {args.threads} threads, "
          f"{args.database}{settings_note}, {args.shoppers} shoppers, {os.cpu_count()} CPUs")
    print(f"  machine busy before the run (other work): {run.busy_before:.0%}")
    print(f"  offered:  {args.rate:.0f} messages/s for {window:.1f} s = {len(messages)} messages")
    print(f"  achieved: {in_window / window:.1f} replies/s within the window; "
          f"{len(ok)} replies in {last - run.start:.2f} s overall ({len(ok) / (last - run.start):.1f}/s)")
    print(f"  latency from due time: p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {worst:.1f} ms")
    print(f"  errors: {dict(errors) if errors else 'none'}; scheduler at worst {run.behind_max * 1000:.1f} ms late")
    if ok:
        server_ms, client_ms = run.server_cpu / len(ok) * 1000, run.client_cpu / len(ok) * 1000
        print(f"  CPU per message: server (gunicorn) {server_ms:.2f} ms, bench client {client_ms:.2f} ms; "
              f"{os.cpu_count()} CPUs would be busy at {(os.cpu_count() or 1) * 1000 / (server_ms + client_ms):.0f} "
              "messages/s (the database server's own CPU not counted)")
    verdict = "PASS" if p99 < AIM_P99_MS and not errors else "MISS"
    print(f"  aim: p99 < {AIM_P99_MS:.0f} ms at {args.rate:.0f} messages/s — {verdict} "
          "(information; never fails the run)")


def check_replies(run: Run, messages: list[Message]) -> list[str]:
    problems = []
    for outcome, msg in zip(run.outcomes, messages, strict=True):
        if outcome.body:
            try:
                text = reply_text(outcome.body)
            except Exception as exc:  # noqa: BLE001 — reported, not raised
                problems.append(f"a reply does not decrypt: {exc}")
                continue
            if msg.expect not in text:
                problems.append(f"a reply to a command does not contain {msg.expect!r}: {text[:60]!r}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=200, help="messages offered per second (default 200)")
    parser.add_argument("--seconds", type=float, default=10, help="length of the load (default 10)")
    parser.add_argument("--shoppers", type=int, default=200, help="distinct followers (default 200)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    parser.add_argument("--threads", type=int, default=8, help="threads per gunicorn worker (default 8)")
    parser.add_argument("--clients", type=int, default=64, help="client threads sending (default 64)")
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--server", default=os.environ.get("BENCH_PG_SERVER", "postgres://postgres@127.0.0.1:5432"),
                        help="PostgreSQL server for --database postgres")
    parser.add_argument("--db", default="o2o_bench_bot", help="PostgreSQL database: dropped and recreated")
    parser.add_argument("--keep", action="store_true", help="keep the database (and the temporary directory)")
    parser.add_argument("--conn-max-age", type=int, default=None,
                        help="run with this CONN_MAX_AGE for the database (not the shipped settings; for comparison)")
    args = parser.parse_args()
    if args.database == "postgres" and args.db in PROTECTED_DATABASES:
        raise SystemExit(f"refusing to drop the {args.db!r} database")

    workdir = Path(tempfile.mkdtemp(prefix="o2o-bench-bot-"))
    env = server_env(args, workdir)
    process = None
    try:
        if args.database == "postgres":
            pg_admin(args.server, f'DROP DATABASE IF EXISTS "{args.db}" WITH (FORCE)')
            pg_admin(args.server, f'CREATE DATABASE "{args.db}"')
        log(f"migrating a fresh {args.database} database …")
        manage(env, "migrate", "--noinput")
        manage(env, "createcachetable")
        port = free_port()
        log(f"starting gunicorn on 127.0.0.1:{port} …")
        process = start_gunicorn(args, env, port)

        openids = [f"bench-openid-{i:05d}" for i in range(args.shoppers)]
        log(f"warming up: {len(openids)} shoppers become members …")
        warm = [message(openid, "帮助", "您可以发送") for openid in openids]
        warm_run = offer(
            port, warm, rate=max(args.rate, 100), clients=args.clients, sample_every=1, server_pgid=process.pid
        )
        warm_failed = [o for o in warm_run.outcomes if o.status != 200]
        if warm_failed:
            raise SystemExit(f"warm-up failed: {Counter(o.error or o.status for o in warm_failed)}")

        count = int(args.rate * args.seconds)
        log(f"building {count} encrypted messages …")
        messages = [message(openids[i % len(openids)], *COMMANDS[i % len(COMMANDS)]) for i in range(count)]
        busy = cpu_busy()
        log(f"offering {args.rate:.0f} messages/s for {args.seconds:.0f} s …")
        run = offer(port, messages, rate=args.rate, clients=args.clients, sample_every=7, server_pgid=process.pid)

        run.busy_before = busy
        report(args, run, messages)
        problems = check_replies(run, messages)
        count_logged = "from bots.models import InboundMessage as M; print(M.objects.count())"
        logged = manage(env, "shell", "--no-imports", "-c", count_logged).strip()
        expected = len(warm) + sum(1 for o in run.outcomes if o.status == 200)
        if logged != str(expected):
            problems.append(f"the conversations log holds {logged} messages, {expected} were answered")
        print("  checks: " + ("OK (sampled replies decrypt and answer their command; one log row per message)"
                              if not problems else "; ".join(sorted(set(problems))[:5])))
        return 0
    finally:
        if process is not None:
            stop(process)
        if args.database == "postgres" and not args.keep:
            pg_admin(args.server, f'DROP DATABASE IF EXISTS "{args.db}" WITH (FORCE)')
        if args.keep:
            log(f"kept {workdir}" + (f" and database {args.db}" if args.database == "postgres" else ""))
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
