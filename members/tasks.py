"""Scheduled work on the ledger and the outbox. Thin and safe to run twice: the services are idempotent.
A long nightly run stops between batches at its slice's end and is queued again (core.jobs)."""

import time

from django.utils import timezone

from core.errors import ApplicationError
from core.jobs import run_in_slices
from members import ledger, pushes, reminders, segments, spend, tiers

BATCH = 500
# Due lots expired in one transaction (one lock statement, bulk writes).
EXPIRE_BATCH = 500


def points_expire_due() -> int:
    """Expire every lot that reached its expiry, EXPIRE_BATCH lots a transaction (set-based:
    ``ledger.points_expire_due``). Killed half-way, the next run finishes the rest.
    Returns how many lots were expired."""
    return run_in_slices(
        "members.tasks.points_expire_due", lambda deadline: ledger.points_expire_due(batch_size=EXPIRE_BATCH, deadline=deadline)
    )


def expiry_reminders_send() -> int:
    """Remind members of points expiring within 30 days (one push per member and day).
    Returns how many reminders were written."""
    run = run_in_slices("members.tasks.expiry_reminders_send", lambda deadline: reminders.expiry_reminders_send(deadline=deadline))
    return run.written if run is not None else None


def points_release_due() -> int:
    """Release pending points whose hold is over (merchants over their daily cap: held).
    Returns how many lots were released."""
    now = timezone.now()
    released = 0
    last_id = 0
    while True:
        lots = list(ledger.lots_release_due(now=now).filter(pk__gt=last_id).order_by("pk")[:BATCH])
        if not lots:
            return released
        for lot in lots:
            try:
                if ledger.points_release_lot(lot=lot) is not None:
                    released += 1
            except ApplicationError:
                continue  # moved or cancelled meanwhile; the next run sees the truth
        last_id = lots[-1].pk


def spend_authorizations_purge() -> int:
    return spend.spend_authorizations_purge()


def ledger_rollup() -> int:
    return ledger.ledger_rollup()


def push_deliver(push_id: int) -> None:
    pushes.push_deliver(push_id=push_id)


# The sweep stops taking new pushes after this long, well inside the cluster's task
# timeout (Q_CLUSTER["timeout"]); the next run, a minute later, goes on.
PUSH_SWEEP_SECONDS = 40


def push_deliver_due() -> int:
    """Every minute: give up on claims whose worker died, then deliver the pushes due for
    a retry (and any whose first task was lost). Returns how many were attempted."""
    pushes.push_claims_expire()
    started = time.monotonic()
    attempted = 0
    for push_id in pushes.pushes_due(limit=BATCH):
        if time.monotonic() - started > PUSH_SWEEP_SECONDS:
            break
        pushes.push_deliver(push_id=push_id)
        attempted += 1
    return attempted


def pushes_deliver(push_ids: list[int]) -> int:
    """Deliver a batch of pushes written together (a campaign's batch): one task, not one
    per push. What the time budget leaves is sent by the sweep once due. Returns how many
    were attempted."""
    started = time.monotonic()
    attempted = 0
    for push_id in push_ids:
        if time.monotonic() - started > PUSH_SWEEP_SECONDS:
            break
        pushes.push_deliver(push_id=push_id)
        attempted += 1
    return attempted


def segments_tag_nightly() -> int:
    """Tag every member with a lifecycle segment; a rerun the same day finishes or does
    nothing. Returns how many members hold a segment."""
    run = run_in_slices("members.tasks.segments_tag_nightly", lambda deadline: segments.segments_tag(deadline=deadline))
    return run.members if run is not None else None


def tiers_review_nightly() -> int:
    """Recompute every member's 12-month spend, move them up, and down after the grace
    period; a rerun the same day finishes or does nothing. Returns the day's tier changes."""
    run = run_in_slices("members.tasks.tiers_review_nightly", lambda deadline: tiers.tiers_review(deadline=deadline))
    return run.upgrades + run.downgrades if run is not None else None
