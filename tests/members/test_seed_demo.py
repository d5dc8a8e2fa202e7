"""seed_demo on a small mall: the books add up, the reports equal the ledger, tiers differ,
and a second run changes nothing."""

from collections import Counter
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from members import ledger, ledger_checks
from members.models import Checkin, Member, Merchant, PointsTransaction, TierChange
from payments.models import Order, Purchase, PurchaseRefund, Redemption

pytestmark = pytest.mark.django_db(transaction=False)


MEMBERS = 40


def by_kind():
    # Time moves between the runs: a tier extra whose refund window ends in between is
    # released by the second, as the every-few-minutes job would.
    return dict(Counter(PointsTransaction.objects.exclude(kind=PointsTransaction.Kind.RELEASE).values_list("kind", flat=True)))


def test_the_seeded_mall_keeps_the_books_and_a_second_run_changes_nothing(settings):
    settings.DEBUG = True
    settings.O2O_SANDBOX = True
    out = StringIO()
    call_command("seed_demo", members=MEMBERS, stdout=out)
    demo = out.getvalue()
    assert f"Demo mall ready: 4 plazas, 30 stores, {MEMBERS} members" in demo
    assert "login admin / admin" in demo and "Demo POS key:" in demo and "A demo member:" in demo
    assert ledger_checks.ledger_violations() == []
    assert ledger_checks.orphan_earns() == []
    # Every merchant's daily report equals the ledger, over the whole year in 92-day slices.
    today = timezone.localdate()
    for merchant in Merchant.objects.all():
        for back in range(0, 368, 92):
            last = today - timedelta(days=back)
            assert ledger_checks.report_violations(merchant=merchant, first=last - timedelta(days=91), last=last) == []
    # A year of history through the services: sales with and without the code, refunds,
    # redemptions, check-ins, paid orders, expiries.
    assert Purchase.objects.filter(member_present=True).exists() and Purchase.objects.filter(member_present=False).exists()
    assert PurchaseRefund.objects.exists() and Redemption.objects.exists() and Checkin.objects.exists()
    assert Order.objects.filter(paid_at__isnull=False).exists()
    assert PointsTransaction.objects.filter(kind=PointsTransaction.Kind.EXPIRE).exists()
    first = Purchase.objects.order_by("created_at").first().created_at
    assert timezone.now() - first > timedelta(days=250)
    assert not PointsTransaction.objects.filter(idempotency_key__startswith="seed:").exists()

    # Tiers differ across members, and moved up with scanned sales.
    tiers = set(Member.objects.values_list("tier__code", flat=True))
    assert len(tiers) >= 2, tiers
    assert TierChange.objects.filter(reason=TierChange.Reason.UPGRADE, to_tier__threshold_fen__gt=0).exists()

    # Run again: nothing is booked twice.
    counts = (Member.objects.count(), Purchase.objects.count(), Order.objects.count(), by_kind())
    balances = sorted(ledger.member_points_balance(member=m) for m in Member.objects.all())
    call_command("seed_demo", members=MEMBERS, stdout=StringIO())
    assert (Member.objects.count(), Purchase.objects.count(), Order.objects.count(), by_kind()) == counts
    assert sorted(ledger.member_points_balance(member=m) for m in Member.objects.all()) == balances


def test_an_old_demo_is_refused_with_a_way_out(settings):
    settings.DEBUG = True
    from tests.factories import make_member

    member = make_member()
    ledger.points_grant(member=member, points=5, reason="old", idempotency_key="seed:earn:1:0")
    with pytest.raises(CommandError, match="make clean"):
        call_command("seed_demo", members=5, stdout=StringIO())
