"""Operations with real processes: a ``qcluster`` beside the tests, on the suite's own
database, cache and broker (SQLite and the ORM broker, or PostgreSQL and Redis), and
metrics added up across processes in prometheus_client's multiprocess mode."""

import json
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from django.db import connection
from django.http import HttpResponse
from django.test import RequestFactory
from django.utils import translation

ROOT = Path(__file__).resolve().parents[2]
CJK = re.compile(r"[\u4e00-\u9fff]")


def task_that_logs(label: str) -> None:
    """Run by the cluster's worker: says which request id and language it ran with."""
    logging.getLogger("tests.core.test_ops_cluster").info("task %s ran in %s", label, translation.get_language())


def _database_environment() -> dict[str, str]:
    """The environment that points another process at this test run's database."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return {"O2O_SQLITE_PATH": str(db["NAME"]), "DATABASE_URL": ""}
    credentials = quote(db["USER"] or "") + (":" + quote(db["PASSWORD"]) if db["PASSWORD"] else "")
    return {"DATABASE_URL": f"postgres://{credentials}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"}


def _json_lines(path: Path) -> list[dict]:
    lines = []
    for raw in path.read_text(errors="replace").splitlines():
        try:
            lines.append(json.loads(raw))
        except ValueError:
            lines.append({"unparsed": raw})
    return lines


def _wait_for(predicate, *, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.25)
    pytest.fail(f"timed out waiting for {what}")


@pytest.fixture
def qcluster(tmp_path, settings):
    """``manage.py qcluster`` on the test database; stopped as a deployment stops it (SIGTERM)."""
    from django_q.models import Schedule

    Schedule.objects.all().delete()  # only what the test enqueues runs
    out = tmp_path / "qcluster.log"
    env = {**os.environ, **_database_environment(), "SECRET_KEY": settings.SECRET_KEY, "LOG_FORMAT": "json", "O2O_Q_WORKERS": "1"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with out.open("w") as stdout:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"], cwd=ROOT, env=env, stdout=stdout, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield out
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the session this fixture started
            process.wait(timeout=10)


@pytest.mark.django_db(transaction=True)
def test_a_running_cluster_beats_logs_english_json_and_runs_tasks_with_the_requests_id(qcluster, client):
    from django_q.tasks import async_task

    from core import health, logs

    _wait_for(
        lambda: (age := health.cluster_heartbeat_age()) is not None and age < health.CLUSTER_HEARTBEAT_INTERVAL_SECONDS,
        timeout=60, what="the cluster's first heartbeat",
    )
    assert client.get("/readyz").json() == {"status": "ok", "checks": {"database": "ok", "cache": "ok", "cluster": "ok"}}

    def view(request):
        async_task("tests.core.test_ops_cluster.task_that_logs", "from-view", sync=False)
        return HttpResponse()

    logs.RequestIdMiddleware(view)(RequestFactory().get("/", HTTP_X_REQUEST_ID="req-cluster-1"))
    logs.request_id_clear(sender=None)

    ran = _wait_for(
        lambda: [line for line in _json_lines(qcluster) if line.get("logger") == "tests.core.test_ops_cluster"],
        timeout=60, what="the task's log line",
    )
    assert [(line["message"], line.get("request_id")) for line in ran] == [("task from-view ran in zh-hans", "req-cluster-1")]
    lines = _json_lines(qcluster)
    assert not [line for line in lines if "unparsed" in line]
    django_q = [line["message"] for line in lines if line.get("logger") == "django-q"]
    assert any(message.endswith(" running.") for message in django_q)
    assert not [message for message in django_q if CJK.search(message)]


def test_metrics_add_up_the_counts_of_every_process_in_multiprocess_mode(tmp_path):
    """Two processes count (one of them gone by the scrape), a third renders /metrics."""
    directory = tmp_path / "prometheus"
    directory.mkdir()
    script = textwrap.dedent(
        """
        import os, sys
        import django
        django.setup()
        from core import metrics
        if sys.argv[1] == "count":
            metrics._points_count("earn", int(sys.argv[2]))
        else:
            body, content_type = metrics.metrics_exposition()
            print("<<<" + body.decode() + ">>>")
        """
    )
    env = {
        **os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory), "DJANGO_SETTINGS_MODULE": "tests.settings",
        "O2O_SQLITE_PATH": str(tmp_path / "none.sqlite3"), "DATABASE_URL": "", "REDIS_URL": "", "LOG_LEVEL": "ERROR",
    }

    def run(*args):
        result = subprocess.run(
            [sys.executable, "-c", script, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    run("count", "30")
    run("count", "12")
    exposition = run("scrape").split("<<<", 1)[1].split(">>>", 1)[0]
    assert 'o2o_points_total{kind="earn"} 42.0' in exposition
    assert 'o2o_points_transactions_total{kind="earn"} 2.0' in exposition
