from datetime import timedelta

import pytest
from django.utils import timezone

from members import ledger
from members.models import Account, Entry
from tests.factories import make_member, make_store

pytestmark = pytest.mark.django_db


def test_settlement_nets_points_accepted_against_points_funded(settings):
    settings.POINT_VALUE_FEN = 1
    shop, other, member = make_store(earn_rate_bp=100), make_store(), make_member()
    start = timezone.now() - timedelta(hours=1)
    earn = ledger.points_earn(member=member, store=shop, amount_fen=50_000, idempotency_key="e")  # funds 500
    ledger.points_earn(member=member, store=other, amount_fen=30_000, idempotency_key="e2")  # other funds 300
    ledger.points_redeem(member=member, store=shop, points=200, idempotency_key="r")  # shop accepts 200
    ledger.points_reverse(original=earn, amount_fen=10_000, idempotency_key="refund")  # 100 back to shop
    end = timezone.now() + timedelta(hours=1)
    s = ledger.merchant_settlement(merchant=shop.merchant, start=start, end=end)
    assert (s.funded_points, s.accepted_points) == (400, 200)
    assert s.net_fen == -200  # the shop owes the pool ¥2.00
    assert ledger.merchant_settlement(merchant=other.merchant, start=start, end=end).net_fen == -300


def test_settlement_counts_only_the_period():
    shop, member = make_store(), make_member()
    ledger.points_earn(member=member, store=shop, amount_fen=50_000, idempotency_key="e")
    later = timezone.now() + timedelta(days=1)
    s = ledger.merchant_settlement(merchant=shop.merchant, start=later, end=later + timedelta(days=1))
    assert (s.funded_points, s.accepted_points, s.net_fen) == (0, 0, 0)


def test_rollup_folds_settled_entries_into_system_balances_once():
    shop, member = make_store(), make_member()
    ledger.points_earn(member=member, store=shop, amount_fen=50_000, idempotency_key="e")
    Entry.objects.update(created_at=timezone.now() - timedelta(hours=1))
    assert ledger.ledger_rollup() >= 1
    ledger.ledger_rollup()
    funding = Account.objects.get(kind=Account.Kind.MERCHANT_FUNDING, merchant=shop.merchant)
    assert funding.balance == -500 and funding.rolled_up_at is not None
    # Entries younger than the settle window wait for the next run.
    ledger.points_earn(member=member, store=shop, amount_fen=10_000, idempotency_key="e2")
    ledger.ledger_rollup()
    funding.refresh_from_db()
    assert funding.balance == -500
