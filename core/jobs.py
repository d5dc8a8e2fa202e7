"""Long jobs in slices that fit the task cluster's timeout.

A nightly job over a million members runs longer than a task may (``Q_CLUSTER
["timeout"]``): killed there and retried, it would finish (every job is resumable) but
redo its last batch and wait for the retry each time. Instead its service checks a
``Deadline`` between batches, after one has committed; when it has passed, the service
stops with ``DeadlinePassed`` and ``run_in_slices`` queues the task again, which goes on
where the last committed batch left off. Each slice does at least one batch.
"""

import logging
import time
from dataclasses import dataclass

from django.conf import settings
from django_q.tasks import async_task

logger = logging.getLogger(__name__)


def slice_seconds() -> int:
    """Three quarters of the task timeout: room for the batch under way to finish."""
    return max(int(settings.Q_CLUSTER.get("timeout", 120)) * 3 // 4, 1)


class DeadlinePassed(Exception):
    """A job stopped between batches because its slice of time is over."""


@dataclass(frozen=True)
class Deadline:
    at: float  # time.monotonic()

    @classmethod
    def after(cls, seconds: float) -> "Deadline":
        return cls(at=time.monotonic() + seconds)

    def check(self) -> None:
        if time.monotonic() >= self.at:
            raise DeadlinePassed()


def deadline_check(deadline: Deadline | None) -> None:
    """After a committed batch: stop if the slice is over (no deadline: never)."""
    if deadline is not None:
        deadline.check()


def run_in_slices(task: str, run, *args):
    """``run(deadline)`` within a slice; if it stops at the deadline, queue ``task(*args)``
    again to go on, and answer None; else what ``run`` answered."""
    try:
        return run(Deadline.after(slice_seconds()))
    except DeadlinePassed:
        logger.info("%s: slice over, queued again to go on", task)
        async_task(task, *args)
        return None
