"""Operations: /healthz, /readyz, /metrics, request ids and JSON logs (core.ops, core.health,
core.metrics, core.logs). The real task cluster is in test_ops_cluster.py."""

import io
import json
import logging
import re
import time
from unittest import mock

import pytest
from django.core.cache import cache
from django.db import DatabaseError, connection, transaction
from django.http import HttpResponse
from django.test import Client, RequestFactory, override_settings
from django.utils import timezone, translation
from django_q.models import Task
from django_q.signals import post_execute_in_worker, pre_execute
from django_q.tasks import async_task
from prometheus_client import REGISTRY

from core import health, logs, metrics

# What production looks like to a probe: DEBUG off, one public host, HTTPS enforced.
PRODUCTION = dict(
    DEBUG=False,
    ALLOWED_HOSTS=["mall.example.com"],
    SECURE_SSL_REDIRECT=True,
    SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https"),
)
POD_IP = "10.42.0.17:8000"
TOKEN = "scrape-" + "s" * 40


def sample(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def log_lines():
    """What the configured console handler (settings.LOGGING) writes, as parsed JSON lines."""
    handler = next(h for h in logging.getLogger().handlers if isinstance(h.formatter, logs.JsonFormatter))
    buffer = io.StringIO()
    previous = handler.setStream(buffer)

    def read():
        return [json.loads(line) for line in buffer.getvalue().splitlines()]

    yield read
    handler.setStream(previous)


def task_that_logs(label: str) -> str:
    logging.getLogger("tests.core.test_ops").info("task %s ran in %s", label, translation.get_language())
    return label


# --- /healthz -------------------------------------------------------------------------


def test_healthz_answers_a_plain_http_probe_with_the_pod_ip_as_host():
    with override_settings(**PRODUCTION):
        client = Client()
        response = client.get("/healthz", HTTP_HOST=POD_IP)
        # The same probe anywhere else is refused (bad host) or sent to HTTPS.
        refused = client.get("/m/", HTTP_HOST=POD_IP)
        redirected = client.get("/m/", HTTP_HOST="mall.example.com")
    assert response.status_code == 200
    assert response.content == b"ok\n"
    assert (refused.status_code, redirected.status_code) == (400, 301)


def test_probe_paths_are_exempt_from_the_https_redirect_in_settings_too():
    """Should the probes ever reach SecurityMiddleware, it matches the path without its slash."""
    from django.conf import settings
    from django.middleware.security import SecurityMiddleware

    request = RequestFactory().get("/readyz", HTTP_HOST="mall.example.com")
    with override_settings(**PRODUCTION, SECURE_REDIRECT_EXEMPT=settings.SECURE_REDIRECT_EXEMPT):
        middleware = SecurityMiddleware(lambda r: HttpResponse())
        assert middleware.process_request(request) is None
        assert middleware.process_request(RequestFactory().get("/readyz/x", HTTP_HOST="mall.example.com")).status_code == 301


# --- /readyz ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_readyz_is_200_with_a_fresh_heartbeat_even_for_a_plain_http_probe():
    health.cluster_heartbeat_beat()
    with override_settings(**PRODUCTION):
        response = Client().get("/readyz", HTTP_HOST=POD_IP)
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "cache": "ok", "cluster": "ok"}}


@pytest.mark.django_db
def test_readyz_is_503_naming_the_cluster_when_its_heartbeat_is_over_a_minute_old(client):
    health.cluster_heartbeat_beat(now=time.time() - 61)
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable" and body["failed"] == ["cluster"]
    assert re.fullmatch(r"last heartbeat 6\d s ago \(more than 60 s\)", body["checks"]["cluster"])


@pytest.mark.django_db
def test_readyz_is_503_when_no_cluster_ever_beat(client):
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["failed"] == ["cluster"]


@pytest.mark.django_db
def test_readyz_is_503_naming_the_cache_when_it_fails_without_telling_its_address(client):
    health.cluster_heartbeat_beat()
    with mock.patch.object(cache, "get", side_effect=ConnectionError("Error 111 connecting to 10.0.0.9:6379")):
        response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["failed"] == ["cache", "cluster"]
    assert body["checks"]["cache"] == "unavailable (ConnectionError)"
    assert "10.0.0.9" not in response.content.decode()


@pytest.mark.django_db
def test_readyz_is_503_naming_the_database_when_it_fails(client, settings):
    health.cluster_heartbeat_beat()
    with mock.patch.object(connection, "cursor", side_effect=DatabaseError("server closed the connection")):
        response = client.get("/readyz")
    assert response.status_code == 503
    # Without Redis the cache is a database table, and fails with it.
    in_database = settings.CACHES["default"]["BACKEND"].endswith("DatabaseCache")
    assert response.json()["failed"] == (["database", "cache", "cluster"] if in_database else ["database"])


@pytest.mark.django_db
def test_a_failed_readiness_is_one_warning_not_an_error_per_probe(client, log_lines):
    client.get("/readyz")
    assert [(entry["level"], entry["logger"], entry["message"]) for entry in log_lines()] == [
        ("WARNING", "core.ops", "not ready: cluster: no heartbeat from a task cluster")
    ]


# --- /metrics --------------------------------------------------------------------------


def test_metrics_is_404_when_no_token_is_configured(client, settings):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer anything").status_code == 404


def test_metrics_is_401_without_a_token_and_403_with_a_wrong_one(client, settings):
    settings.METRICS_TOKEN = TOKEN
    missing = client.get("/metrics")
    assert missing.status_code == 401 and missing["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer " + TOKEN[:-1] + "x").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Basic " + TOKEN).status_code == 401


@pytest.mark.django_db
def test_metrics_time_requests_by_route_pattern_not_by_path(client, settings):
    settings.METRICS_TOKEN = TOKEN
    route = "api/v1/purchases/<int:purchase_id>/"
    before = sample("o2o_http_request_duration_seconds_count", route=route, method="GET", status="4xx")
    client.get("/api/v1/purchases/918273/")  # no API key: 401/403
    with override_settings(**PRODUCTION):
        response = Client().get("/metrics", HTTP_HOST=POD_IP, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    assert f'o2o_http_request_duration_seconds_bucket{{le="0.005",method="GET",route="{route}",status="4xx"}}' in text
    assert sample("o2o_http_request_duration_seconds_count", route=route, method="GET", status="4xx") == before + 1
    assert "918273" not in text
    assert "o2o_task_queue_depth" in text and "o2o_task_failures_stored" in text


@pytest.mark.django_db
def test_metrics_read_queue_depth_and_stored_failures_when_scraped(settings):
    from django_q.brokers import get_broker

    settings.METRICS_TOKEN = TOKEN
    broker = get_broker()
    queued = broker.queue_size()
    async_task("math.floor", 1.5, sync=False, broker=broker)
    Task.objects.create(
        id="f" * 32, name="failed-one", func="members.tasks.push_deliver", started=timezone.now(),
        stopped=timezone.now(), success=False, result="boom",
    )
    try:
        text = metrics.metrics_exposition()[0].decode()
    finally:
        broker.purge_queue()  # the Redis broker's list outlives the test's transaction
    assert f"o2o_task_queue_depth {queued + 1:.1f}" in text
    assert "o2o_task_failures_stored 1.0" in text


@pytest.mark.django_db
def test_metrics_count_finished_tasks_by_function():
    before = sample("o2o_tasks_finished_total", func="math.floor", result="success")
    async_task("math.floor", 2.5)  # the worker and monitor code paths, in this process (sync)
    assert sample("o2o_tasks_finished_total", func="math.floor", result="success") == before + 1


@pytest.mark.django_db
def test_points_are_counted_when_their_transaction_commits_and_not_when_it_rolls_back(django_capture_on_commit_callbacks):
    before = (sample("o2o_points_total", kind="expire"), sample("o2o_points_transactions_total", kind="expire"))
    with django_capture_on_commit_callbacks(execute=True):
        with transaction.atomic():
            metrics.points_moved(kind="expire", points=-40)
    with django_capture_on_commit_callbacks(execute=True):
        try:
            with transaction.atomic():
                metrics.points_moved(kind="expire", points=-1000)
                raise DatabaseError("rolled back")
        except DatabaseError:
            pass
    after = (sample("o2o_points_total", kind="expire"), sample("o2o_points_transactions_total", kind="expire"))
    assert after == (before[0] + 40, before[1] + 1)


@pytest.mark.django_db
def test_push_outcomes_are_counted_with_a_pending_one_as_a_retry(django_capture_on_commit_callbacks):
    before = sample("o2o_push_attempts_total", outcome="retry", channel="none")
    sent = sample("o2o_push_attempts_total", outcome="sent", channel="wechat_template")
    with django_capture_on_commit_callbacks(execute=True):
        metrics.push_finished(status="pending")
        metrics.push_finished(status="sent", channel="wechat_template")
    assert sample("o2o_push_attempts_total", outcome="retry", channel="none") == before + 1
    assert sample("o2o_push_attempts_total", outcome="sent", channel="wechat_template") == sent + 1


# --- request ids and JSON logs -----------------------------------------------------------


def test_the_proxys_request_id_is_echoed_and_on_the_json_log_line(client, log_lines):
    response = client.get("/m/no-such-page/", HTTP_X_REQUEST_ID="edge-7f3a.01_x")
    assert response.status_code == 404
    assert response["X-Request-ID"] == "edge-7f3a.01_x"
    line = next(entry for entry in log_lines() if entry["logger"] == "django.request")
    assert line["request_id"] == "edge-7f3a.01_x"
    assert line["level"] == "WARNING" and line["message"] == "Not Found: /m/no-such-page/"
    assert line["time"].endswith("+00:00")


@pytest.mark.parametrize("header", ["", "has space", "x" * 65, "semi;colon", "引用"])
def test_a_missing_or_unsafe_request_id_is_replaced_by_a_new_one(client, header):
    response = client.get("/m/no-such-page/", HTTP_X_REQUEST_ID=header)
    generated = response["X-Request-ID"]
    assert len(generated) == 32 and int(generated, 16) >= 0 and generated != header
    assert client.get("/m/no-such-page/")["X-Request-ID"] != generated


def test_no_request_id_outside_a_request_and_the_exception_as_text(client, log_lines):
    client.get("/m/no-such-page/", HTTP_X_REQUEST_ID="earlier")
    try:
        raise ValueError("会员 not found")
    except ValueError:
        logging.getLogger("tests.core.test_ops").exception("after the request")
    line = log_lines()[-1]
    assert "request_id" not in line
    assert line["exc_info"].startswith("Traceback") and 'ValueError: 会员 not found' in line["exc_info"]


@pytest.mark.django_db
def test_a_task_enqueued_during_a_request_logs_with_that_requests_id(log_lines):
    """django-q2's pre_enqueue adds the id to the task dict, which is signed and pickled
    (SignedPackage) and read back by its worker code path, as the cluster would."""

    def view(request):
        async_task("tests.core.test_ops.task_that_logs", "from-view")
        logging.getLogger("tests.core.test_ops").info("back in the view")
        return HttpResponse()

    response = logs.RequestIdMiddleware(view)(RequestFactory().get("/", HTTP_X_REQUEST_ID="req-42"))
    assert response["X-Request-ID"] == "req-42"
    lines = [entry for entry in log_lines() if entry["logger"] == "tests.core.test_ops"]
    assert [(entry["message"], entry.get("request_id")) for entry in lines] == [
        ("task from-view ran in zh-hans", "req-42"),
        ("back in the view", "req-42"),
    ]
    logs.request_id_clear(sender=None)


def test_the_task_dict_carries_the_id_and_the_worker_puts_the_previous_one_back():
    task = {"id": "t1", "func": "x"}
    token = logs.request_id_var.set("req-9")
    try:
        logs.task_request_id_attach(sender="django_q", task=task)
    finally:
        logs.request_id_var.reset(token)
    assert task[logs.TASK_KEY] == "req-9"
    assert logs.request_id_get() is None
    logs.task_request_id_enter(sender="django_q", task=task)
    assert logs.request_id_get() == "req-9"
    logs.task_request_id_leave(sender="django_q", task=task)
    assert logs.request_id_get() is None


def test_django_q_messages_come_out_in_english_and_tasks_in_the_default_language():
    from django_q.monitor import _  # django-q2's gettext_lazy, formatted when it logs

    stopped = "%(name)s stopped monitoring results"
    assert str(_(stopped) % {"name": "P"}) != "P stopped monitoring results"  # zh-hans by default
    try:
        logs.cluster_logs_in_english()
        assert str(_(stopped) % {"name": "P"}) == "P stopped monitoring results"
        pre_execute.send(sender="django_q", func=None, task={})
        assert translation.get_language() == "zh-hans"
        post_execute_in_worker.send(sender="django_q", func=None, task={})
        assert str(_(stopped) % {"name": "P"}) == "P stopped monitoring results"
    finally:
        pre_execute.disconnect(dispatch_uid="core.logs.task_language_default")
        post_execute_in_worker.disconnect(dispatch_uid="core.logs.task_language_english")
        translation.deactivate()
