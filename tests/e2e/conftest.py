"""The documented deployment, booted for real and driven over HTTP (marker ``e2e``).

    .venv/bin/pytest -m e2e tests/e2e                       # SQLite, the cache in it
    E2E_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \\
    E2E_REDIS_URL=redis://127.0.0.1:6379/7 .venv/bin/pytest -m e2e tests/e2e

The session fixture ``deployment`` does what docs/deploy.md tells an operator to do, and
nothing else, as subprocesses of the installed project: the environment is
docs/deploy/example.env with its CHANGE_ME values and the site-specific ones replaced
(``_environment``), then ``manage.py migrate``, ``collectstatic --noinput``,
``check --deploy``, ``createsuperuser``, ``createplaza``, ``createmerchant``, then
gunicorn with docs/deploy/gunicorn.conf.py on a free port of 127.0.0.1 and
``manage.py qcluster`` twice (two task hosts). Every request carries the headers
docs/deploy/nginx.conf sets. WeChat, WeChat Pay and Alipay are the local fake of
tests/fakes/platform_server.py, running in this process; nothing leaves 127.0.0.1.

The database is new for the run: a SQLite file named by ``DATABASE_URL=sqlite:////…``,
or, with E2E_DATABASE_URL (a PostgreSQL server's maintenance database), a database
``o2o_e2e_<pid>`` (or E2E_DATABASE_NAME) created there and dropped at the end.
E2E_REDIS_URL adds Redis as broker and cache; its database is flushed before and after,
so give the run a database index of its own. The task cluster's name is new per run.

Production code has no "fake now": tests may read the database (``deployment.db``) to
assert, and write it only to move rows into the past.
"""

import ctypes
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from base64 import b64encode
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from tests.e2e.clients import FakeWeChat, OfficialAccount, Site, nginx_proxy_headers
from tests.fakes.platform_server import FakePlatformServer, RsaKeyPair, rsa_key_pair

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "docs" / "deploy"
EXAMPLE_ENV = DEPLOY / "example.env"
GUNICORN_CONF = DEPLOY / "gunicorn.conf.py"
NGINX_CONF = DEPLOY / "nginx.conf"
BIN = Path(sys.executable).parent  # the environment `pip install -e .` installed into

PLACEHOLDER = "CHANGE_ME"
STEP_TIMEOUT = 300  # seconds for one management command, on a busy machine
READY_TIMEOUT = 120  # seconds for gunicorn (and /readyz's cluster heartbeat) to come up
STOP_TIMEOUT = 20
CLIENT_IP = "203.0.113.7"  # the shopper's address, as nginx forwards it

_SERVICES: list["Service"] = []  # running processes, for the failure report and the last resort
_LOGS: list[tuple[str, Path]] = []  # every step's output
_FAILED: list[str] = []  # e2e tests that failed: their run's logs are kept


# --- processes -----------------------------------------------------------------------------


try:  # resolved here, in the parent: the child between fork and exec only calls it
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux
    _prctl = None
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child: SIGTERM when pytest dies, however it dies (Linux), so that no
    gunicorn or cluster outlives a killed run."""
    if _prctl is not None:
        _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Service:
    """A long-running process of the deployment, in a process group of its own, its
    output in a log file."""

    def __init__(self, name: str, args: list[str], *, env: dict[str, str], log: Path):
        self.name, self.args, self.log = name, args, log
        self._log_file = log.open("wb")
        self.popen = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=self._log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, preexec_fn=_die_with_parent,  # noqa: PLW1509 (no lock, no import, no allocation)
        )
        _SERVICES.append(self)
        _LOGS.append((name, log))

    def running(self) -> bool:
        return self.popen.poll() is None

    def stop(self) -> None:
        """SIGTERM (both stop gracefully), then SIGKILL for the whole group if need be."""
        if self.running():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)  # what is left of the group: workers, children
        except (ProcessLookupError, PermissionError):
            pass
        self.popen.wait(timeout=STOP_TIMEOUT)
        self._log_file.close()
        if self in _SERVICES:
            _SERVICES.remove(self)

    def text(self) -> str:
        self._log_file.flush()
        return self.log.read_text(errors="replace")


def _tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class StepFailed(Exception):
    pass


def _step(name: str, args: list[str], *, env: dict[str, str], logs: Path, timings: dict[str, float]) -> str:
    """Run one set-up command to its end; its stdout, or StepFailed with its output."""
    log = logs / f"{name}.log"
    _LOGS.append((name, log))
    started = time.monotonic()
    try:
        result = subprocess.run(
            args, check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=STEP_TIMEOUT,
            stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent,
        )
    except subprocess.TimeoutExpired as exc:
        raise StepFailed(f"{shlex.join(args)} did not finish in {STEP_TIMEOUT} s") from exc
    timings[name] = time.monotonic() - started
    log.write_text(f"$ {shlex.join(args)}\n{result.stdout}\n{result.stderr}")
    if result.returncode != 0:
        raise StepFailed(f"{shlex.join(args)} exited with {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the environment ------------------------------------------------------------------------


def env_file_read(path: Path) -> dict[str, str]:
    """NAME=value lines (systemd's EnvironmentFile, docker's --env-file): no quoting."""
    values = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, equals, value = line.partition("=")
        assert equals and re.fullmatch(r"[A-Z][A-Z0-9_]*", name), f"{path}:{number}: not NAME=value: {line!r}"
        values[name] = value
    return values


def wechat_aes_key() -> str:
    """An EncodingAESKey as the console shows one: 43 characters, base64 of 32 bytes."""
    return b64encode(secrets.token_bytes(32)).decode().rstrip("=")


@dataclass(frozen=True, repr=False)  # no keys in test reports
class Secrets:
    """What an operator gets from the platforms' consoles, made up for the run."""

    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(64))
    wechat_app_id: str = field(default_factory=lambda: "wx" + secrets.token_hex(8))
    wechat_app_secret: str = field(default_factory=lambda: secrets.token_hex(16))
    wechat_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    wechat_aes_key: str = field(default_factory=wechat_aes_key)
    wechat_account: str = "gh_e2e0f0a0b0c0d"  # the official account's original id
    miniapp_id: str = field(default_factory=lambda: "wx" + secrets.token_hex(8))
    miniapp_secret: str = field(default_factory=lambda: secrets.token_hex(16))
    alipay_app_id: str = "2021000000000e2e"
    alipay_app_keys: RsaKeyPair = field(default_factory=rsa_key_pair)  # ours: Alipay has the public half
    alipay_keys: RsaKeyPair = field(default_factory=rsa_key_pair)  # Alipay's: we have the public half
    metrics_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))


def _environment(*, work: Path, keys: Secrets, database_url: str, redis_url: str, platform_url: str,
                 cluster_name: str) -> dict[str, str]:
    """docs/deploy/example.env with the site's own values: every CHANGE_ME, and what
    names this machine (database, Redis, paths, the platforms' fake)."""
    documented = env_file_read(EXAMPLE_ENV)
    private_key, public_key = work / "alipay_app_private_key.pem", work / "alipay_public_key.pem"
    private_key.write_text(keys.alipay_app_keys.private_pem)
    public_key.write_text(keys.alipay_keys.public_pem)
    private_key.chmod(0o600)
    site = {
        "SECRET_KEY": keys.secret_key,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,  # empty: the embedded default (the cache and the queue in the database)
        "O2O_Q_CLUSTER_NAME": cluster_name,
        "O2O_VAR_DIR": str(work / "var"),
        "WECHAT_APP_ID": keys.wechat_app_id,
        "WECHAT_APP_SECRET": keys.wechat_app_secret,
        "WECHAT_TOKEN": keys.wechat_token,
        "WECHAT_ENCODING_AES_KEY": keys.wechat_aes_key,
        "WECHAT_MINIAPP_ID": keys.miniapp_id,
        "WECHAT_MINIAPP_SECRET": keys.miniapp_secret,
        "ALIPAY_APP_ID": keys.alipay_app_id,
        "ALIPAY_APP_PRIVATE_KEY": str(private_key),
        "ALIPAY_PUBLIC_KEY": str(public_key),
        "WECHAT_API_BASE_URL": platform_url,
        "WECHAT_PAY_API_BASE_URL": platform_url,
        "ALIPAY_GATEWAY_URL": platform_url + "gateway.do",
    }
    if "METRICS_TOKEN" in documented:
        site["METRICS_TOKEN"] = keys.metrics_token
    if "PROMETHEUS_MULTIPROC_DIR" in documented:
        site["PROMETHEUS_MULTIPROC_DIR"] = str(work / "prometheus")  # new, so empty, as it must be at start
    env = {**documented, **site}
    left = sorted(name for name, value in env.items() if PLACEHOLDER in value)
    assert not left, f"{EXAMPLE_ENV} has placeholders tests/e2e does not fill in: {left}"
    # What a service manager gives a process besides its EnvironmentFile; nothing of
    # this pytest process (its DJANGO_SETTINGS_MODULE, the unit tests' DEBUG=1).
    base = {"PATH": f"{BIN}:/usr/local/bin:/usr/bin:/bin", "HOME": str(work), "LANG": "C.UTF-8", "TMPDIR": str(work)}
    return {**base, **env}


# --- databases ------------------------------------------------------------------------------


class Database:
    """The deployment's database, read (and, to move rows into the past, written) by tests.
    Queries use %s placeholders on both backends."""

    def __init__(self, url: str):
        self.url = url
        parts = urlsplit(url)
        self.backend = "sqlite" if parts.scheme == "sqlite" else "postgresql"
        self._sqlite_path = parts.path  # sqlite:////tmp/x/db.sqlite3 → /tmp/x/db.sqlite3

    def _connect(self):
        if self.backend == "sqlite":
            return sqlite3.connect(self._sqlite_path, timeout=30)
        import psycopg

        return psycopg.connect(self.url, autocommit=True)

    def rows(self, query: str, *params) -> list[tuple]:
        if self.backend == "sqlite":
            query = query.replace("%s", "?")
        connection = self._connect()
        try:
            cursor = connection.execute(query, params)
            rows = cursor.fetchall() if cursor.description else []
            connection.commit()
            return rows
        finally:
            connection.close()

    def value(self, query: str, *params):
        [(value,)] = self.rows(query, *params)
        return value


def _postgres_database_url(server_url: str, name: str) -> str:
    return urlsplit(server_url)._replace(path="/" + name).geturl()


def _postgres(server_url: str, statement: str) -> None:
    import psycopg

    with psycopg.connect(server_url, autocommit=True, connect_timeout=10) as connection:
        connection.execute(statement)


def _redis_flush(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=10)
    try:
        client.flushdb()
    finally:
        client.close()


# --- the deployment -------------------------------------------------------------------------


@dataclass
class Shop:
    merchant_id: int
    store_code: str
    api_key: str


@dataclass(frozen=True, repr=False)
class Staff:
    username: str
    password: str


@dataclass(repr=False)
class Deployment:
    site: Site
    db: Database
    env: dict[str, str]
    keys: Secrets
    platforms: FakePlatformServer
    wechat: FakeWeChat
    official_account: OfficialAccount
    plaza_code: str
    plaza_name: str
    shop: Shop  # the closed loop's shop
    staff: Staff  # a superuser, made by createsuperuser
    other_shop: Shop  # the concurrency tests'
    web: Service
    clusters: list[Service]
    readiness: str  # the path that said the site was ready
    redis_url: str
    timings: dict[str, float]

    @property
    def backend(self) -> str:
        return self.db.backend


_TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="session")
def deployment() -> Deployment:
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="o2o_e2e_"))
    logs = work / "logs"
    logs.mkdir()
    server_url, redis_url = os.environ.get("E2E_DATABASE_URL", ""), os.environ.get("E2E_REDIS_URL", "")
    database_name = os.environ.get("E2E_DATABASE_NAME") or f"o2o_e2e_{os.getpid()}"
    assert database_name.startswith("o2o_e2e_") and re.fullmatch(r"\w+", database_name), database_name
    platforms = FakePlatformServer()
    platforms.start()
    services: list[Service] = []
    broken = False
    try:
        if server_url:
            _postgres(server_url, f'DROP DATABASE IF EXISTS "{database_name}" WITH (FORCE)')
            _postgres(server_url, f'CREATE DATABASE "{database_name}"')
            database_url = _postgres_database_url(server_url, database_name)
        else:
            database_url = f"sqlite:///{work / 'db.sqlite3'}"  # sqlite:////tmp/…/db.sqlite3: an absolute path
        if redis_url:
            _redis_flush(redis_url)
        keys = Secrets()
        env = _environment(
            work=work, keys=keys, database_url=database_url, redis_url=redis_url, platform_url=platforms.url,
            cluster_name=f"o2o-e2e-{os.getpid()}",
        )
        wechat = FakeWeChat(platforms, app_id=keys.wechat_app_id, app_secret=keys.wechat_app_secret,
                            miniapp_id=keys.miniapp_id, miniapp_secret=keys.miniapp_secret)
        host = env["ALLOWED_HOSTS"].split(",")[0].strip()
        python = str(BIN / "python")
        _step("migrate", [python, "manage.py", "migrate"], env=env, logs=logs, timings=_TIMINGS)
        _step("collectstatic", [python, "manage.py", "collectstatic", "--noinput"], env=env, logs=logs, timings=_TIMINGS)
        _step("check --deploy", [python, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], env=env, logs=logs,
              timings=_TIMINGS)
        plaza_code, plaza_name = "e2e-plaza", "端到端广场"
        _step("createplaza", [python, "manage.py", "createplaza", plaza_code, plaza_name], env=env, logs=logs,
              timings=_TIMINGS)
        staff = Staff(username="e2e-admin", password=secrets.token_urlsafe(18))
        _step("createsuperuser", [python, "manage.py", "createsuperuser", "--noinput", "--username", staff.username,
                                  "--email", "e2e-admin@example.com"],
              env={**env, "DJANGO_SUPERUSER_PASSWORD": staff.password}, logs=logs, timings=_TIMINGS)
        shops = []
        for name in ("E2E Coffee", "E2E Books"):
            out = _step(f"createmerchant {name}", [python, "manage.py", "createmerchant", name, "--plaza", plaza_code],
                        env=env, logs=logs, timings=_TIMINGS)
            shops.append(Shop(**_json_line(out)))
        port = _free_port()
        web = Service("gunicorn", [
            str(BIN / "gunicorn"), "-c", str(GUNICORN_CONF), "--bind", f"127.0.0.1:{port}", "--workers", "2",
            "o2o_site.wsgi",
        ], env=env, log=logs / "gunicorn.log")
        services.append(web)
        # Two task hosts, as in production: one queue, every schedule once, every push once.
        clusters = [
            Service(name, [python, "manage.py", "qcluster"], env=env, log=logs / f"{name}.log")
            for name in ("qcluster-1", "qcluster-2")
        ]
        services.extend(clusters)
        site = Site(f"http://127.0.0.1:{port}", proxy_headers=nginx_proxy_headers(NGINX_CONF, host=host, client_ip=CLIENT_IP))
        ready_started = time.monotonic()
        readiness = _wait_ready(site, services)
        _TIMINGS["ready"] = time.monotonic() - ready_started
        _TIMINGS["set-up"] = time.monotonic() - started
        yield Deployment(
            site=site, db=Database(database_url), env=env, keys=keys, platforms=platforms, wechat=wechat,
            official_account=OfficialAccount(site, token=keys.wechat_token, aes_key=keys.wechat_aes_key,
                                             app_id=keys.wechat_app_id, account=keys.wechat_account),
            plaza_code=plaza_code, plaza_name=plaza_name, shop=shops[0], other_shop=shops[1], staff=staff, web=web,
            clusters=clusters, readiness=readiness, redis_url=redis_url, timings=_TIMINGS,
        )
    except BaseException:
        broken = True
        raise
    finally:
        stopping = time.monotonic()
        for service in reversed(services):
            service.stop()
        _TIMINGS["stop"] = time.monotonic() - stopping
        platforms.stop()
        if server_url:
            _postgres(server_url, f'DROP DATABASE IF EXISTS "{database_name}" WITH (FORCE)')
        if redis_url:
            _redis_flush(redis_url)
        _TIMINGS["total"] = time.monotonic() - started
        if broken or _FAILED:
            print(f"\ne2e: the run's logs are kept in {logs}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def _json_line(out: str) -> dict:
    [line] = [line for line in out.splitlines() if line.startswith("{")]
    return json.loads(line)


def _wait_ready(site: Site, services: list[Service]) -> str:
    """Poll /readyz (200: database, cache and a recent task-cluster heartbeat); where
    the site has no /readyz yet, its admin login page. Returns the path that answered."""
    deadline = time.monotonic() + READY_TIMEOUT
    last = "no answer"
    while time.monotonic() < deadline:
        for service in services:
            if not service.running():
                raise StepFailed(f"{service.name} exited with {service.popen.returncode}:\n{_tail(service.log)}")
        try:
            response = site.get("/readyz", timeout=5)
            if response.status_code == 404:
                response = site.get("/admin/login/", timeout=5)
            if response.status_code == 200:
                return urlsplit(response.url).path
            last = f"{urlsplit(response.url).path}: {response.status_code} {response.text[:200]}"
        except requests.RequestException as exc:
            last = type(exc).__name__
        time.sleep(0.25)
    raise StepFailed(f"the site was not ready within {READY_TIMEOUT} s ({last})")


# --- reporting ------------------------------------------------------------------------------


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A failing e2e test shows the last lines of every process's log."""
    report = yield
    if report.failed and item.get_closest_marker("e2e") is not None:
        _FAILED.append(item.nodeid)
        for name, path in _LOGS:
            if name == "gunicorn" or name.startswith("qcluster") or report.when == "setup":
                report.sections.append((f"{name} log (last lines, {path})", _tail(path)))
    return report


def pytest_terminal_summary(terminalreporter):
    if _TIMINGS:
        timings = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in _TIMINGS.items())
        terminalreporter.write_line(f"e2e timings: {timings}")


def pytest_unconfigure(config):
    # The last resort: never leave a process behind (a copy: stop() removes it from the list).
    for service in list(_SERVICES):  # noqa: PERF101
        service.stop()
