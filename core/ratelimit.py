"""Limits that hold under concurrency: fixed-window counters, each hit one atomic increment.

A counter is a name and a fixed window (the window's number is part of the stored key).
``counter_hit`` adds to it and returns the new count in one step that no other worker
can interleave with, so "allowed while count <= limit" admits exactly ``limit`` hits a
window however many race:

- with ``REDIS_URL`` set: INCRBY and EXPIRE in one MULTI/EXEC;
- otherwise: one row upserted with ``INSERT … ON CONFLICT (key) DO UPDATE SET count =
  count + … RETURNING count`` (SQLite ≥ 3.35, PostgreSQL ≥ 9.5).

Never read-then-write: Django's cache ``incr()`` is a get and a set, and so was every
limit here before (64 clients passed 2,500 requests against a limit of 1,200).

Call these outside transactions, as DRF throttles (run before the view; ATOMIC_REQUESTS
is off) and the member-code check (before the write) do. Inside ``transaction.atomic()``
a database counter is part of the outer transaction: it is undone if that rolls back,
and on PostgreSQL its row stays locked until that ends, queueing every request of the
same key behind it.
"""

import functools
import hashlib
import math
import time
from collections.abc import Callable
from datetime import datetime, timezone as dt_timezone
from typing import TypeVar

import redis
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.utils import timezone
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle

from core.models import RateCounter

# The longest stored key (RateCounter.key); longer names are replaced by their digest.
MAX_KEY_LENGTH = 200
REDIS_KEY_PREFIX = "o2o:counter:"
PURGE_BATCH = 10_000

T = TypeVar("T")


def counter_hit(key: str, *, window_seconds: int, amount: int = 1, now: datetime | None = None) -> int:
    """Add ``amount`` to the counter ``key`` of the window containing ``now``; the count after it.

    Atomic: of N concurrent hits on a fresh window, each sees a different count, 1 … N.
    A negative ``amount`` gives hits back (pass the same ``now`` to reach the same window).
    """
    stored, ends_at, at = _window(key, window_seconds=window_seconds, now=now)
    redis_url = _redis_url()
    if redis_url:
        # The expiry is reset on every hit to the same instant: the end of the window.
        pipe = _redis(redis_url).pipeline(transaction=True)
        pipe.incrby(REDIS_KEY_PREFIX + stored, amount)
        pipe.expire(REDIS_KEY_PREFIX + stored, max(1, math.ceil(ends_at - at)))
        count, _ = pipe.execute()
        return int(count)
    # One statement, so one atomic step on both databases (SQLite and PostgreSQL spell
    # it alike): in autocommit it is committed at once, its row lock released with it.
    table, key, count, expires_at = (
        connection.ops.quote_name(name) for name in (RateCounter._meta.db_table, "key", "count", "expires_at")
    )
    ends = connection.ops.adapt_datetimefield_value(datetime.fromtimestamp(ends_at, tz=dt_timezone.utc))
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({key}, {count}, {expires_at}) VALUES (%s, %s, %s) "
            f"ON CONFLICT ({key}) DO UPDATE SET {count} = {table}.{count} + excluded.{count} RETURNING {count}",
            [stored, amount, ends],
        )
        return int(cursor.fetchone()[0])


def counter_peek(key: str, *, window_seconds: int, now: datetime | None = None) -> int:
    """The count of ``key`` in the window containing ``now``, without adding to it."""
    stored, _, _ = _window(key, window_seconds=window_seconds, now=now)
    redis_url = _redis_url()
    if redis_url:
        return int(_redis(redis_url).get(REDIS_KEY_PREFIX + stored) or 0)
    return RateCounter.objects.filter(key=stored).values_list("count", flat=True).first() or 0


def counters_purge(*, now: datetime | None = None) -> int:
    """Delete the database counters of windows that have ended, in batches; how many.

    Redis keys expire by themselves; database rows wait for this (a scheduled task, see
    core/migrations/0002_counters_purge_schedule.py). A row's window is in its key, so
    a late purge costs space, never a wrong count.
    """
    before = now or timezone.now()
    deleted = 0
    while True:
        keys = list(RateCounter.objects.filter(expires_at__lte=before).values_list("key", flat=True)[:PURGE_BATCH])
        if not keys:
            return deleted
        deleted += RateCounter.objects.filter(key__in=keys, expires_at__lte=before).delete()[0]


def guesses_counted(
    *,
    name: str,
    caller: str,
    limit: int,
    window_seconds: int,
    attempt: Callable[[], T],
    wrong: tuple[type[BaseException], ...],
    refused: Callable[[], BaseException],
    now: datetime | None = None,
) -> T:
    """``attempt()``, unless ``caller`` has made ``limit`` wrong attempts in this window.

    An attempt that raises one of ``wrong`` is a wrong guess. Each attempt reserves a
    guess (one atomic hit) before it runs, and is refused with ``refused()`` when that
    takes the count past ``limit``; a refusal, a right answer or any other exception
    gives its reservation back, a wrong guess keeps it. The count is therefore wrong
    guesses plus attempts in flight, and at most ``limit`` wrong guesses are ever
    attempted in a window, however many race. The price of exactness: while attempts
    are in flight at the limit, a right one may be refused that a moment later would
    have passed.
    """
    now = now or timezone.now()
    key = f"{name}:{caller}"
    if counter_hit(key, window_seconds=window_seconds, now=now) > limit:
        counter_hit(key, window_seconds=window_seconds, amount=-1, now=now)
        raise refused()
    guessed_wrong = False
    try:
        return attempt()
    except wrong:
        guessed_wrong = True
        raise
    finally:
        if not guessed_wrong:
            counter_hit(key, window_seconds=window_seconds, amount=-1, now=now)


# --- Django REST framework ------------------------------------------------------------


_PERIOD_SECONDS = {
    "s": 1, "sec": 1, "second": 1,
    "m": 60, "min": 60, "minute": 60,
    "h": 3600, "hour": 3600,
    "d": 86400, "day": 86400,
}


def rate_parse(rate: str) -> tuple[int, int]:
    """``"1200/min"`` → (1200, 60): requests allowed, and the window in seconds.

    Periods: s / sec / second, m / min / minute, h / hour, d / day (plurals too).
    """
    number, _, period = (rate or "").partition("/")
    period = period.strip().lower()
    seconds = _PERIOD_SECONDS.get(period) or (_PERIOD_SECONDS.get(period[:-1]) if period.endswith("s") else None)
    number = number.strip()
    if seconds is None or not number.isascii() or not number.isdigit() or int(number) <= 0:
        raise ImproperlyConfigured(f"{rate!r} is not a rate such as '1200/min' or '50/s'")
    return int(number), seconds


class AtomicRateThrottle(BaseThrottle):
    """DRF's SimpleRateThrottle, counted with ``counter_hit``: a fixed window per identity.

    Subclasses name the identity (``get_cache_key``; None: not throttled) and the rate
    (``get_rate``; by default REST_FRAMEWORK's DEFAULT_THROTTLE_RATES[scope]; None: no
    limit). Requests refused count too, which changes nothing: the window is already
    spent. At a window's edge a client may pass up to twice the rate in a short span,
    the usual price of fixed windows.
    """

    scope: str = ""
    timer = time.time
    _wait: float | None = None

    def get_rate(self) -> str | None:
        try:
            return api_settings.DEFAULT_THROTTLE_RATES[self.scope]
        except KeyError:
            raise ImproperlyConfigured(f"No throttle rate set for scope {self.scope!r}") from None

    def get_cache_key(self, request, view) -> str | None:
        raise NotImplementedError(".get_cache_key() must be overridden")

    def allow_request(self, request, view) -> bool:
        self._wait = None
        rate = self.get_rate()
        if rate is None:
            return True
        key = self.get_cache_key(request, view)
        if key is None:
            return True
        try:
            limit, window_seconds = rate_parse(rate)
        except ImproperlyConfigured as exc:
            raise ImproperlyConfigured(f"Throttle {self.scope!r}: {exc}") from None
        at = self.timer()
        count = counter_hit(key, window_seconds=window_seconds, now=datetime.fromtimestamp(at, tz=dt_timezone.utc))
        if count <= limit:
            return True
        self._wait = window_seconds - at % window_seconds
        return False

    def wait(self) -> float | None:
        """Seconds until the window ends (DRF rounds it up into Retry-After)."""
        return self._wait


# --- storage ----------------------------------------------------------------------------


def _window(key: str, *, window_seconds: int, now: datetime | None) -> tuple[str, float, float]:
    """The stored key of ``key``'s window containing ``now``, when that window ends, and ``now`` (epoch seconds)."""
    if window_seconds <= 0:
        raise ValueError("window_seconds must be positive")
    at = now.timestamp() if now is not None else time.time()
    number = int(at // window_seconds)
    stored = f"{key}@{window_seconds}:{number}"
    if len(stored) > MAX_KEY_LENGTH:
        stored = "sha256:" + hashlib.sha256(stored.encode()).hexdigest()
    return stored, (number + 1) * window_seconds, at


def _redis_url() -> str:
    return getattr(settings, "REDIS_URL", "")


@functools.lru_cache(maxsize=4)
def _redis(url: str):
    """One client (and connection pool) per process and URL; a pool is no state."""
    return redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)

