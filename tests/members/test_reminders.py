"""Reminders of points about to expire: one push per member and expiry day, written in
bulk, idempotent, resumable."""

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from members import ledger, reminders
from members.models import InboxMessage, Push
from tests.factories import make_member

pytestmark = pytest.mark.django_db


def _grant(member, points, *, expires_in_days, key):
    return ledger.points_grant(
        member=member, points=points, reason="gift", idempotency_key=key,
        expires_at=timezone.now() + timedelta(days=expires_in_days),
    )


def test_points_expiring_within_thirty_days_get_one_reminder_per_member_and_day():
    ann, bob, cy = make_member(), make_member(), make_member()
    _grant(ann, 100, expires_in_days=10, key="a1")
    _grant(ann, 50, expires_in_days=10, key="a2")  # same day: one reminder for 150
    _grant(ann, 70, expires_in_days=20, key="a3")  # another day: another reminder
    _grant(bob, 30, expires_in_days=40, key="b1")  # outside the window
    _grant(cy, 5, expires_in_days=29, key="c1")

    run = reminders.expiry_reminders_send()

    assert (run.members, run.written) == (2, 3)
    pushes = {(p.member_id, p.data["points"]) for p in Push.objects.filter(event="expiry_reminder")}
    assert pushes == {(ann.pk, 150), (ann.pk, 70), (cy.pk, 5)}
    assert InboxMessage.objects.filter(push__event="expiry_reminder").count() == 3
    assert all(p.next_attempt_at is not None and p.status == "pending" for p in Push.objects.all())
    assert "150" in Push.objects.get(member=ann, data__points=150).body


def test_a_second_run_writes_nothing_and_a_run_killed_half_way_finishes_on_the_next():
    members = [make_member() for _ in range(5)]
    for i, member in enumerate(members):
        _grant(member, 10 + i, expires_in_days=5, key=f"g{i}")

    original = reminders._write
    calls = {"n": 0}

    def dies_after_the_first_batch(wanted, now):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("killed")
        return original(wanted, now)

    reminders._write = dies_after_the_first_batch
    try:
        with pytest.raises(RuntimeError):
            reminders.expiry_reminders_send(batch_size=2)
    finally:
        reminders._write = original
    assert Push.objects.count() == 2

    assert reminders.expiry_reminders_send(batch_size=2).written == 3
    assert reminders.expiry_reminders_send(batch_size=2).written == 0
    assert Push.objects.count() == InboxMessage.objects.count() == 5


def test_spent_expired_and_inactive_members_points_are_not_reminded():
    spent, banned = make_member(), make_member()
    _grant(spent, 100, expires_in_days=3, key="s")
    from tests.factories import make_store

    store = make_store()
    ledger.points_redeem(member=spent, store=store, points=100, idempotency_key="r")
    _grant(banned, 100, expires_in_days=3, key="b")
    banned.status = "banned"
    banned.save(update_fields=["status"])

    assert reminders.expiry_reminders_send().written == 0


def test_the_window_moves_with_the_clock():
    member = make_member()
    _grant(member, 40, expires_in_days=45, key="x")
    assert reminders.expiry_reminders_send().written == 0

    with time_machine.travel(timezone.now() + timedelta(days=16)):
        assert reminders.expiry_reminders_send().written == 1


def test_batches_cost_the_same_number_of_queries_whatever_their_size(django_assert_max_num_queries):
    for i in range(30):
        _grant(make_member(), 10, expires_in_days=7, key=f"m{i}")

    # One listing, then per batch: the grouped read, the existing keys, two bulk inserts
    # (plus savepoint statements).
    with django_assert_max_num_queries(12):
        assert reminders.expiry_reminders_send(batch_size=100).written == 30
