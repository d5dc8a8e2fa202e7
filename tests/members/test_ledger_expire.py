from datetime import timedelta

import pytest
from django.utils import timezone

from members import ledger, tasks
from members.models import Account, Lot, PointsTransaction
from tests.factories import assert_ledger_invariants, make_member, make_store

pytestmark = pytest.mark.django_db


def due_lot(member, points, key):
    lot = ledger.points_grant(member=member, points=points, reason="t", idempotency_key=key).lots.get()
    Lot.objects.filter(pk=lot.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    lot.refresh_from_db()
    return lot


def test_expire_moves_what_is_left_to_the_expired_sink():
    member = make_member()
    lot = due_lot(member, 100, "g")
    txn = ledger.points_expire_lot(lot=lot)
    assert txn.points == -100 and txn.idempotency_key.startswith(f"expire:{lot.pk}:")
    assert ledger.member_points_balance(member=member) == 0
    sink = Account.objects.get(kind=Account.Kind.EXPIRED)
    assert sum(sink.entries.values_list("amount", flat=True)) == 100
    assert_ledger_invariants()


def test_expire_twice_is_one_expiry():
    member = make_member()
    lot = due_lot(member, 100, "g")
    first = ledger.points_expire_lot(lot=lot)
    again = ledger.points_expire_lot(lot=lot)
    assert again.pk == first.pk
    assert PointsTransaction.objects.filter(kind="expire").count() == 1


def test_expire_refuses_a_lot_not_yet_due():
    member = make_member()
    lot = ledger.points_grant(member=member, points=10, reason="t", idempotency_key="g").lots.get()
    with pytest.raises(ledger.LotNotDue) as exc:
        ledger.points_expire_lot(lot=lot)
    assert exc.value.code == "lot_not_due"
    assert ledger.member_points_balance(member=member) == 10


def test_expire_of_a_spent_lot_writes_nothing():
    store, member = make_store(), make_member()
    lot = ledger.points_grant(member=member, points=10, reason="t", idempotency_key="g").lots.get()
    ledger.points_redeem(member=member, store=store, points=10, idempotency_key="r")
    Lot.objects.filter(pk=lot.pk).update(expires_at=timezone.now() - timedelta(days=1))
    lot.refresh_from_db()
    assert ledger.points_expire_lot(lot=lot) is None
    assert not PointsTransaction.objects.filter(kind="expire").exists()


def test_nightly_sweep_expires_every_due_lot_and_only_those():
    alice, bob = make_member(), make_member()
    due_lot(alice, 10, "a1")
    due_lot(alice, 20, "a2")
    due_lot(bob, 30, "b1")
    ledger.points_grant(member=bob, points=5, reason="fresh", idempotency_key="b2")
    assert tasks.points_expire_due() == 3
    assert tasks.points_expire_due() == 0
    assert ledger.member_points_balance(member=alice) == 0
    assert ledger.member_points_balance(member=bob) == 5
    assert_ledger_invariants()


# --- the set-based sweep --------------------------------------------------------------


def test_a_batch_expires_due_lots_of_many_members_in_bulk_with_the_per_lot_keys(django_assert_max_num_queries):
    members = [make_member() for _ in range(6)]
    lots = [due_lot(m, 10 * (i + 1), f"d{i}") for i, m in enumerate(members)]
    due_lot(members[0], 7, "d-extra")  # two due lots in one wallet
    fresh = ledger.points_grant(member=members[1], points=5, reason="fresh", idempotency_key="f")

    with django_assert_max_num_queries(20):  # the same for 7 lots as for 500: no query per lot
        assert ledger.points_expire_due_batch(limit=500) == 7

    assert all(ledger.member_points_balance(member=m) == 0 for m in members if m != members[1])
    assert ledger.member_points_balance(member=members[1]) == 5 and fresh.lots.get().remaining == 5
    keys = set(PointsTransaction.objects.filter(kind="expire").values_list("idempotency_key", flat=True))
    assert {ledger.expire_key(Lot.objects.get(pk=lot.pk)) for lot in lots} <= keys
    assert ledger.points_expire_due_batch() == 0
    assert_ledger_invariants()


def test_a_batch_and_the_per_lot_expiry_never_expire_a_lot_twice():
    member = make_member()
    first, second = due_lot(member, 10, "a"), due_lot(member, 20, "b")
    ledger.points_expire_lot(lot=first)

    assert ledger.points_expire_due_batch() == 1
    assert ledger.points_expire_lot(lot=second).points == -20  # the batch's own transaction, replayed
    assert PointsTransaction.objects.filter(kind="expire").count() == 2
    assert_ledger_invariants()


def test_a_pending_lot_past_its_expiry_expires_from_the_pending_account():
    store, gold = make_store(), make_member(tier_code="gold")
    ledger.points_earn(member=gold, store=store, amount_fen=10_000, idempotency_key="e", member_present=True)
    Lot.objects.update(expires_at=timezone.now() - timedelta(minutes=1))

    assert ledger.points_expire_due_batch() == 2
    assert ledger.member_points_balance(member=gold) == 0 and ledger.member_points_pending(member=gold) == 0
    assert_ledger_invariants()


def test_a_sweep_killed_between_batches_finishes_on_the_next_run(monkeypatch):
    members = [make_member() for _ in range(5)]
    for i, m in enumerate(members):
        due_lot(m, 10, f"k{i}")
    real = ledger.points_expire_due_batch
    calls = {"n": 0}

    def killed_on_the_second_batch(**kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("killed")
        return real(**kwargs)

    monkeypatch.setattr(ledger, "points_expire_due_batch", killed_on_the_second_batch)
    monkeypatch.setattr(tasks, "EXPIRE_BATCH", 2)
    with pytest.raises(RuntimeError):
        tasks.points_expire_due()
    assert PointsTransaction.objects.filter(kind="expire").count() == 2

    monkeypatch.setattr(ledger, "points_expire_due_batch", real)
    assert tasks.points_expire_due() == 3
    assert tasks.points_expire_due() == 0
    assert PointsTransaction.objects.filter(kind="expire").count() == 5
    assert_ledger_invariants()


def _expiry_written(lot) -> tuple:
    """What an expiry wrote for ``lot``, with the ids that differ between lots taken out."""
    txn = PointsTransaction.objects.get(idempotency_key=ledger.expire_key(lot))
    fields = (txn.kind, txn.points, txn.reason.replace(str(lot.pk), "<lot>"), txn.merchant_id, txn.store_id, txn.amount_fen,
              txn.shortfall, txn.reference, txn.reverses_id, txn.created_at)
    entries = sorted(
        (entry.account.kind, entry.amount, entry.lot_id == lot.pk, entry.member_id == lot.member_id, entry.created_at)
        for entry in txn.entries.select_related("account")
    )
    return fields, entries, Lot.objects.get(pk=lot.pk).remaining


def test_the_batch_writes_row_for_row_what_the_per_lot_expiry_writes():
    one, other = make_member(tier_code="gold"), make_member(tier_code="gold")  # gold: a pending mall extra
    by_lot, by_batch = due_lot(one, 30, "one"), due_lot(other, 30, "other")
    pending = ledger.points_earn(member=one, store=make_store(), amount_fen=10_000, idempotency_key="e1", member_present=True)
    pending_batch = ledger.points_earn(member=other, store=make_store(), amount_fen=10_000, idempotency_key="e2", member_present=True)
    held = [txn.lots.get(status=Lot.Status.PENDING) for txn in (pending, pending_batch) if txn.lots.filter(status=Lot.Status.PENDING)]
    assert len(held) == 2
    now = timezone.now()
    Lot.objects.filter(pk__in=[lot.pk for lot in held]).update(expires_at=now - timedelta(minutes=1))
    held = [Lot.objects.get(pk=lot.pk) for lot in held]

    ledger.points_expire_lot(lot=by_lot, at=now)
    ledger.points_expire_lot(lot=held[0], at=now)
    assert ledger.points_expire_due_batch(at=now) == 2

    assert _expiry_written(by_lot) == _expiry_written(by_batch)
    assert PointsTransaction.objects.get(idempotency_key=ledger.expire_key(by_batch)).request_hash == ledger._request_hash(
        op="expire", lot=by_batch.pk
    )
    assert _expiry_written(held[0]) == _expiry_written(held[1])
    assert_ledger_invariants()


def test_the_command_expires_what_is_due_with_a_progress_line_and_twice_does_nothing():
    from io import StringIO

    from django.core.management import call_command

    members = [make_member() for _ in range(3)]
    for i, member in enumerate(members):
        due_lot(member, 10, f"c{i}")
    out = StringIO()
    call_command("points_expire", "--batch-size", "2", stdout=out)
    assert "lots expired: 3/3" in out.getvalue() and "3 lots expired." in out.getvalue()
    assert all(ledger.member_points_balance(member=m) == 0 for m in members)
    out = StringIO()
    call_command("points_expire", stdout=out)
    assert "nothing to do" in out.getvalue()
    assert PointsTransaction.objects.filter(kind="expire").count() == 3
    assert_ledger_invariants()
