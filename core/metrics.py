"""Prometheus metrics, served at /metrics (core.ops) to whoever holds METRICS_TOKEN.

Counted where they happen (counters and a histogram):

- ``o2o_http_request_duration_seconds{route, method, status}``: every request but the
  probes and /metrics itself, by URL pattern (never the raw path: one series per
  route, not per member or order id), method and status class ("2xx");
- ``o2o_points_total{kind}`` and ``o2o_points_transactions_total{kind}``: points moved
  by committed ledger transactions (earn, redeem, expire, …), from ``points_moved``,
  which members.ledger calls;
- ``o2o_push_attempts_total{outcome, channel}``: pushes sent, skipped (inbox only),
  failed for good, or failed and to be retried, from ``push_finished`` (members.pushes);
- ``o2o_tasks_finished_total{func, result}``: django-q2 tasks, success or failure.

Read when scraped (gauges, one cheap query each): ``o2o_task_queue_depth`` (tasks
waiting in the broker), ``o2o_task_failures_stored`` (django-q2's failed tasks kept for
staff) and ``o2o_cluster_heartbeat_age_seconds``. Every web process reports these same
deployment-wide values: aggregate them with ``max``, not ``sum``.

Across processes: with ``PROMETHEUS_MULTIPROC_DIR`` set in the environment of gunicorn
and of ``qcluster`` (an empty directory, emptied before they start, shared by every
process on the host: prometheus_client reads the variable when it is first imported),
each process writes its counts to files there and /metrics adds up those of every
process, the task cluster's included. Unset: one process's own registry, right only
with a single process (``runserver``, tests).
"""

import functools
import logging
import os
import time

from django.db import transaction
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector

logger = logging.getLogger(__name__)

REQUEST_SECONDS = Histogram(
    "o2o_http_request_duration_seconds",
    "Time to answer a request, by URL pattern, method and status class.",
    ["route", "method", "status"],
)
POINTS = Counter("o2o_points", "Points moved by committed ledger transactions (absolute), by kind.", ["kind"])
POINTS_TRANSACTIONS = Counter("o2o_points_transactions", "Committed ledger transactions, by kind.", ["kind"])
PUSH_ATTEMPTS = Counter(
    "o2o_push_attempts",
    "Push delivery outcomes: sent, skipped (inbox only), failed (for good), retry (failed, will retry).",
    ["outcome", "channel"],
)
TASKS = Counter("o2o_tasks_finished", "django-q2 tasks finished, by function and result.", ["func", "result"])

UNRESOLVED = "unresolved"  # answered before or without URL resolution: redirects, 404s, bad hosts
_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
_PUSH_OUTCOMES = {"sent": "sent", "skipped": "skipped", "failed": "failed", "pending": "retry"}


# --- counted where it happens -------------------------------------------------------------


def points_moved(*, kind: str, points: int, transactions: int = 1) -> None:
    """Ledger transactions were written (a batch job counts many at once, ``points`` their
    total): counted when (and if) they commit."""
    transaction.on_commit(functools.partial(_points_count, str(kind), abs(points), transactions), robust=True)


def _points_count(kind: str, points: int, transactions: int = 1) -> None:
    POINTS_TRANSACTIONS.labels(kind=kind).inc(transactions)
    POINTS.labels(kind=kind).inc(points)


def push_finished(*, status: str, channel: str = "", count: int = 1) -> None:
    """A push attempt ended with ``status`` (Push.Status) on ``channel``; counted on commit."""
    outcome = _PUSH_OUTCOMES.get(str(status), str(status))
    if count > 0:
        transaction.on_commit(
            functools.partial(PUSH_ATTEMPTS.labels(outcome=outcome, channel=str(channel or "none")).inc, count),
            robust=True,
        )


def task_finished(sender, task: dict, **kwargs) -> None:
    """django-q2 ``post_execute`` (in the cluster's monitor process)."""
    from django_q.utils import get_func_repr

    TASKS.labels(func=get_func_repr(task.get("func")) or "unknown", result="success" if task.get("success") else "failure").inc()


class RequestMetricsMiddleware:
    """Early in MIDDLEWARE, so that redirects and refusals by the ones after it count too."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        REQUEST_SECONDS.labels(
            route=(match.route if match is not None else "") or UNRESOLVED,
            method=request.method if request.method in _METHODS else "other",
            status=f"{response.status_code // 100}xx",
        ).observe(time.perf_counter() - started)
        return response


# --- read when scraped ----------------------------------------------------------------------


@functools.cache
def _broker():
    """One broker per process (a Redis connection pool), as members.pushes keeps."""
    from django_q.brokers import get_broker

    return get_broker()


class _DeploymentCollector:
    """Deployment-wide gauges; one that fails is left out of the scrape (and logged)."""

    def collect(self):
        for name, documentation, read in (
            ("o2o_task_queue_depth", "Tasks waiting in the task broker.", lambda: _broker().queue_size()),
            ("o2o_task_failures_stored", "Failed tasks kept by django-q2 (staff see them in the admin).", _failures_stored),
            ("o2o_cluster_heartbeat_age_seconds", "Seconds since a task cluster last beat (NaN: never).", _heartbeat_age),
        ):
            try:
                value = read()
            except Exception:
                logger.warning("metrics: could not read %s", name, exc_info=True)
                continue
            yield GaugeMetricFamily(name, documentation, value=value)


def _failures_stored() -> int:
    from django_q.models import Failure

    return Failure.objects.count()


def _heartbeat_age() -> float:
    from core.health import cluster_heartbeat_age

    age = cluster_heartbeat_age()
    return float("nan") if age is None else age


class _Scrape:
    """What one scrape exposes: this process's or every process's counts, and the gauges."""

    def __init__(self, *sources):
        self.sources = sources

    def collect(self):
        for source in self.sources:
            yield from source.collect()


def metrics_exposition(accept: str | None = None) -> tuple[bytes, str]:
    """The exposition body and its content type (text format, or OpenMetrics when asked)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        counted = CollectorRegistry()
        MultiProcessCollector(counted)
    else:
        counted = REGISTRY
    encoder, content_type = choose_encoder(accept or "")
    return encoder(_Scrape(counted, _DeploymentCollector())), content_type

