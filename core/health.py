"""Can this deployment serve? The checks behind /readyz, and the task cluster's heartbeat.

Ready means: the database answers, the cache answers, and a task cluster was seen in the
last CLUSTER_HEARTBEAT_MAX_AGE_SECONDS (a minute).

How the cluster is seen, the same on both brokers (ORM on SQLite, Redis): each worker
process of ``qcluster``, when django-q2 spawns it (its ``post_spawn`` signal, connected
by core.apps in ``qcluster`` only), starts a daemon thread that writes the time into the
cache under HEARTBEAT_KEY every CLUSTER_HEARTBEAT_INTERVAL_SECONDS (15), for as long as
the sentinel that spawned it lives (an orphaned worker stops beating). The readiness
check reads that one key. Not chosen, and why:

- django-q2's own ``Stat`` (``Stat.get_all()``): the sentinel saves it every half second
  with a 3-second expiry, so any stall of its loop over 3 s (it runs the scheduler
  inline; a SQLite write waits up to 30 s for the lock) reads as "no cluster". Reading
  it costs a Redis ``KEYS`` scan of the whole database the cache shares with the broker,
  and on the ORM broker a read-modify-write of a key list the cluster writes too.
- A schedule every minute that writes the time: the scheduler wakes every 30 s, so beats
  come 60–90 s apart and a one-minute limit would flap; and the beat task waits in the
  queue behind any backlog, so a busy cluster (the nightly expiry) would take every web
  process out of the load balancer. A backlog shows in /metrics (queue depth) instead.
"""

import logging
import os
import threading
import time

from django.core.cache import cache
from django.db import close_old_connections, connection

logger = logging.getLogger(__name__)

HEARTBEAT_KEY = "o2o:ops:cluster-heartbeat"
CLUSTER_HEARTBEAT_INTERVAL_SECONDS = 15
CLUSTER_HEARTBEAT_MAX_AGE_SECONDS = 60
# Long enough for /metrics to show how old the last beat is after a stop; the age, not
# the expiry, decides readiness.
_HEARTBEAT_KEEP_SECONDS = 24 * 3600

OK = "ok"


def cluster_heartbeat_beat(*, now: float | None = None) -> None:
    cache.set(HEARTBEAT_KEY, time.time() if now is None else now, timeout=_HEARTBEAT_KEEP_SECONDS)


def cluster_heartbeat_age(*, now: float | None = None) -> float | None:
    """Seconds since a cluster last beat, None if none ever did (or long ago); raises if the cache fails."""
    beat = cache.get(HEARTBEAT_KEY)
    if beat is None:
        return None
    return max(0.0, (time.time() if now is None else now) - float(beat))


def cluster_heartbeat_start(sender=None, **kwargs) -> threading.Thread:
    """django-q2 ``post_spawn``, in a new worker process: beat until the sentinel goes."""
    thread = threading.Thread(
        target=_heartbeat_loop, args=(os.getppid(),), name="o2o-cluster-heartbeat", daemon=True
    )
    thread.start()
    return thread


def _heartbeat_loop(sentinel_pid: int) -> None:
    while os.getppid() == sentinel_pid:
        try:
            # This thread's own database connection (the database cache): drop it when
            # broken or past CONN_MAX_AGE, as a request would.
            close_old_connections()
            cluster_heartbeat_beat()
        except Exception:
            logger.warning("cluster heartbeat: could not write it to the cache", exc_info=True)
        time.sleep(CLUSTER_HEARTBEAT_INTERVAL_SECONDS)


def readiness() -> dict[str, str]:
    """Each check's name → "ok" or what is wrong (no addresses or messages: it is public)."""
    checks = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        checks["database"] = OK
    except Exception as exc:
        logger.warning("readiness: the database failed", exc_info=True)
        checks["database"] = f"unavailable ({type(exc).__name__})"
    try:
        age = cluster_heartbeat_age()
        checks["cache"] = OK
    except Exception as exc:
        logger.warning("readiness: the cache failed", exc_info=True)
        checks["cache"] = f"unavailable ({type(exc).__name__})"
        checks["cluster"] = "unknown (the cache is unavailable)"
        return checks
    if age is None:
        checks["cluster"] = "no heartbeat from a task cluster"
    elif age > CLUSTER_HEARTBEAT_MAX_AGE_SECONDS:
        checks["cluster"] = f"last heartbeat {age:.0f} s ago (more than {CLUSTER_HEARTBEAT_MAX_AGE_SECONDS} s)"
    else:
        checks["cluster"] = OK
    return checks
