"""Logs for machines: one JSON object per line on stdout, each tagged with a request id.

- ``JsonFormatter`` writes ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``,
  ``request_id`` when one is known, and ``exc_info`` / ``stack_info`` as text.
- ``RequestIdMiddleware`` takes the proxy's ``X-Request-ID`` when it is a sane token
  (1–64 of ``A-Z a-z 0-9 . _ -``) or makes one (uuid4 hex), keeps it in a context
  variable for the request and answers it in the response's ``X-Request-ID``.
- ``RequestIdFilter`` (on the handler) puts it on every record, whichever logger.
- A task enqueued during a request carries the id: django-q2's ``pre_enqueue`` gets the
  task dict before it is signed and pickled (an extra key survives both), and
  ``pre_execute`` in the worker sets the context variable from it until
  ``post_execute_in_worker``. core.apps connects the three.

Log lines are English whatever the shoppers' language. Our own messages are plain
English strings; django-q2's are ``gettext_lazy`` strings formatted when logged, and so
come out in LANGUAGE_CODE (zh-hans) in the task cluster, where no request activates a
language. ``cluster_logs_in_english`` (called by core.apps in ``qcluster`` only) turns
translation off in the cluster's first process before it forks the sentinel, monitor,
pusher and workers, which inherit it; around each task the worker goes back to the
default language, so what tasks render for shoppers is unchanged.
"""

import contextvars
import json
import logging
import re
import threading
import uuid
from datetime import datetime, timezone

REQUEST_ID_HEADER = "X-Request-ID"
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
# The key the request id travels under in a django-q2 task dict.
TASK_KEY = "o2o_request_id"

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("o2o_request_id", default=None)


def request_id_get() -> str | None:
    return request_id_var.get()


def request_id_from(header: str | None) -> str:
    """The proxy's id when it is safe to log and to echo, else a new one."""
    if header and _SANE_REQUEST_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """Second in MIDDLEWARE (after core.ops' probes): everything logged below it has the id."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request_id = request_id_from(request.headers.get(REQUEST_ID_HEADER))
        request.request_id = request_id
        # Not reset on the way out: Django logs a 4xx/5xx ("Not Found: /…") after the
        # middleware chain has returned. request_id_clear does it at request_finished.
        request_id_var.set(request_id)
        _sentry_tag(request_id)
        response = self.get_response(request)
        response[REQUEST_ID_HEADER] = request_id
        return response


def request_id_clear(sender, **kwargs) -> None:
    """request_finished (connected in core.apps): this thread serves no request now."""
    request_id_var.set(None)


def _sentry_tag(request_id: str) -> None:
    """Tag this request's Sentry events, when Sentry is on (a no-op otherwise)."""
    import sentry_sdk

    if sentry_sdk.is_initialized():
        sentry_sdk.set_tag("request_id", request_id)


class RequestIdFilter(logging.Filter):
    """Adds ``record.request_id`` (None outside requests and their tasks); never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line; non-ASCII kept as is (member names, Chinese replies)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id is not None:
            entry["request_id"] = request_id
        status_code = getattr(record, "status_code", None)  # django.request's 4xx/5xx lines
        if isinstance(status_code, int):
            entry["status_code"] = status_code
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc_info"] = record.exc_text
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


# --- the id in tasks (django-q2 signals, connected in core.apps) ----------------------

# The worker runs one task at a time per thread; in sync mode (tests) the "worker" is the
# request's own thread, so the id in force before the task is put back after it.
_task_tokens = threading.local()


def task_request_id_attach(sender, task: dict, **kwargs) -> None:
    """pre_enqueue: the enqueuing request's id goes with the task."""
    request_id = request_id_var.get()
    if request_id is not None and TASK_KEY not in task:
        task[TASK_KEY] = request_id


def task_request_id_enter(sender, task: dict, **kwargs) -> None:
    """pre_execute, in the worker: the task's lines carry its request's id (or none)."""
    stack = getattr(_task_tokens, "stack", None)
    if stack is None:
        stack = _task_tokens.stack = []
    stack.append(request_id_var.set(task.get(TASK_KEY)))


def task_request_id_leave(sender, task: dict, **kwargs) -> None:
    """post_execute_in_worker: back to the id in force before the task."""
    stack = getattr(_task_tokens, "stack", None)
    if stack:
        request_id_var.reset(stack.pop())


# --- English in the task cluster --------------------------------------------------------


def cluster_logs_in_english() -> None:
    """For ``qcluster`` only: django-q2's own messages in English (their source text).

    Called before the cluster forks, so every process of it inherits it. Each task still
    runs in the default language (LANGUAGE_CODE), as it did before.
    """
    from django.utils import translation
    from django_q.signals import post_execute_in_worker, pre_execute

    translation.deactivate_all()
    pre_execute.connect(_task_language_default, dispatch_uid="core.logs.task_language_default")
    post_execute_in_worker.connect(_task_language_english, dispatch_uid="core.logs.task_language_english")


def _task_language_default(sender, **kwargs) -> None:
    from django.utils import translation

    translation.deactivate()


def _task_language_english(sender, **kwargs) -> None:
    from django.utils import translation

    translation.deactivate_all()
