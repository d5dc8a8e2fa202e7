from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from members import ledger
from members.models import Member
from tests.factories import assert_ledger_invariants, make_member

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff():
    return get_user_model().objects.create_user("ops", is_staff=True)


def test_transfer_moves_everything_and_keeps_each_expiry():
    a, b = make_member(), make_member()
    soon, late = timezone.now() + timedelta(days=3), timezone.now() + timedelta(days=300)
    ledger.points_grant(member=a, points=40, reason="x", idempotency_key="g1", expires_at=soon)
    ledger.points_grant(member=a, points=60, reason="x", idempotency_key="g2", expires_at=late)
    ledger.points_grant(member=b, points=5, reason="x", idempotency_key="g3")
    txn = ledger.points_transfer(source=a, target=b, reason="merge", idempotency_key="m")
    assert txn.points == -100 and txn.counterparty_id == b.pk
    assert ledger.member_points_balance(member=a) == 0
    assert ledger.member_points_balance(member=b) == 105
    assert sorted((lot.amount, lot.expires_at) for lot in b.lots.filter(transaction=txn)) == [(40, soon), (60, late)]
    assert ledger.points_transfer(source=a, target=b, reason="merge", idempotency_key="m").pk == txn.pk
    assert_ledger_invariants()


def test_transfer_of_part_refuses_more_than_the_balance():
    a, b = make_member(), make_member()
    ledger.points_grant(member=a, points=10, reason="x", idempotency_key="g")
    with pytest.raises(ledger.InsufficientPoints):
        ledger.points_transfer(source=a, target=b, points=11, reason="gift", idempotency_key="t")
    assert ledger.member_points_balance(member=a) == 10


def test_transfer_to_self_is_refused_and_to_a_merged_member_reaches_the_survivor():
    a, b = make_member(), make_member()
    ledger.points_grant(member=a, points=10, reason="x", idempotency_key="g")
    with pytest.raises(ledger.ApplicationError) as exc:
        ledger.points_transfer(source=a, target=a, reason="x", idempotency_key="t1")
    assert exc.value.code == "same_member"
    c = make_member()
    Member.objects.filter(pk=b.pk).update(status=Member.Status.MERGED, merged_into=c)
    txn = ledger.points_transfer(source=a, target=b, reason="x", idempotency_key="t2")
    assert txn.counterparty_id == c.pk
    assert ledger.member_points_balance(member=a) == 0
    assert ledger.member_points_balance(member=b) == 0
    assert ledger.member_points_balance(member=c) == 10


def test_adjust_credits_and_debits_with_operator_and_reason(staff):
    member = make_member()
    up = ledger.points_adjust(member=member, points=50, operator=staff, reason="goodwill", idempotency_key="a1")
    down = ledger.points_adjust(member=member, points=-20, operator=staff, reason="duplicate receipt", idempotency_key="a2")
    assert (up.operator, up.reason, down.points) == (staff, "goodwill", -20)
    assert ledger.member_points_balance(member=member) == 30
    assert_ledger_invariants()


def test_adjust_refuses_to_go_below_zero(staff):
    member = make_member()
    with pytest.raises(ledger.InsufficientPoints):
        ledger.points_adjust(member=member, points=-1, operator=staff, reason="x", idempotency_key="a")


@pytest.mark.parametrize(
    "points, reason, use_operator, code",
    [(10, "", True, "reason_required"), (10, "   ", True, "reason_required"), (10, "why", False, "operator_required"),
     (0, "why", True, "invalid_amount"), ("5", "why", True, "invalid_amount")],
)
def test_adjust_refuses_incomplete_requests(staff, points, reason, use_operator, code):
    member = make_member()
    with pytest.raises(ledger.ApplicationError) as exc:
        ledger.points_adjust(
            member=member, points=points, operator=staff if use_operator else None, reason=reason, idempotency_key="a"
        )
    assert exc.value.code == code
    assert ledger.member_points_balance(member=member) == 0


def test_grant_is_funded_by_promotions_and_refuses_bad_points():
    member = make_member()
    txn = ledger.points_grant(member=member, points=10, reason="check-in", idempotency_key="checkin:1")
    assert txn.entries.get(account__kind="promotions").amount == -10
    with pytest.raises(ledger.InvalidPoints):
        ledger.points_grant(member=member, points=0, reason="x", idempotency_key="g0")
    assert_ledger_invariants()


def test_a_merge_moves_lots_past_their_expiry_that_the_sweep_has_not_reached():
    """The survivor must not pay, at the next sweep, for the merged member's due points."""
    import time_machine

    from members import identity, tasks

    survivor, duplicate = make_member(), make_member()
    ledger.points_grant(member=survivor, points=30, reason="x", idempotency_key="s")
    ledger.points_grant(member=duplicate, points=100, reason="x", idempotency_key="d1",
                        expires_at=timezone.now() + timedelta(days=1))
    ledger.points_grant(member=duplicate, points=400, reason="x", idempotency_key="d2")
    with time_machine.travel(timezone.now() + timedelta(days=2)):
        identity.member_merge(source=duplicate, target=survivor, reason="same person")
        assert ledger.member_points_balance(member=duplicate) == 0
        assert ledger.member_points_balance(member=survivor) == 530
        assert tasks.points_expire_due() == 1  # the 100 that were due, now the survivor's, and only those
        assert ledger.member_points_balance(member=survivor) == 430
    assert_ledger_invariants()
