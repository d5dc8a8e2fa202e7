"""Orders under real concurrency: threads, each with its own Client and connection.

The platforms retry a notification for a day and may deliver it twice at once; a
shopper double-taps; staff and a POS refund at the same moment. Each test commits its
data (``transaction=True``) so the threads see it, and releases its threads at one
barrier so they really race.
"""

import pytest
from django.test import Client
from django.utils import timezone

from members import ledger
from members.models import PointsTransaction, Push
from payments import orders
from payments.gateways import sandbox
from payments.models import Order, OrderRefund, PaymentNotification, SandboxTrade
from tests.concurrency import race_all_succeed
from tests.factories import assert_ledger_invariants, make_member
from tests.payments.conftest import Api, build_shop
from tests.payments.orders_support import Shopper

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("sandbox_on")]


@pytest.fixture
def sandbox_on(settings):
    settings.O2O_SANDBOX = True


def _post_notification(headers, body):
    client = Client(raise_request_exception=False)
    return client.post("/payments/notify/sandbox/", data=body, content_type="application/json", headers=headers)


def _paid_trade(out_trade_no):
    SandboxTrade.objects.filter(out_trade_no=out_trade_no).update(status="SUCCESS", paid_at=timezone.now())
    return SandboxTrade.objects.get(out_trade_no=out_trade_no)


def test_ten_copies_of_one_notification_at_once_earn_once_and_push_once():
    shop = build_shop()
    member = make_member()
    ledger.points_grant(member=member, points=1_000, reason="gift", idempotency_key="g")
    out_trade_no = Shopper(member).order(store_code=shop.store.code, amount_fen=20_000, points_to_use=1_000).json()["out_trade_no"]
    trade = _paid_trade(out_trade_no)
    copies = [sandbox.notification_for(trade) for _ in range(10)]

    responses = race_all_succeed([lambda c=c: _post_notification(*c) for c in copies], name="notify-race")

    assert [r.status_code for r in responses] == [200] * 10
    order = Order.objects.get(out_trade_no=out_trade_no)
    assert order.status == "paid"
    assert PointsTransaction.objects.filter(kind="earn", member=member).count() == 1
    assert PointsTransaction.objects.filter(kind="capture").count() == 1
    assert ledger.member_points_balance(member=member) == 190
    assert Push.objects.filter(member=member, event="order_paid").count() == 1
    outcomes = sorted(PaymentNotification.objects.values_list("outcome", flat=True))
    assert outcomes == ["duplicate"] * 9 + ["processed"]
    assert_ledger_invariants()


def test_a_payment_racing_the_close_of_its_order_is_booked_once_one_way_or_the_other():
    shop = build_shop()
    member = make_member()
    ledger.points_grant(member=member, points=500, reason="gift", idempotency_key="g")
    out_trade_no = Shopper(member).order(store_code=shop.store.code, amount_fen=5_000, points_to_use=500).json()["out_trade_no"]
    trade = _paid_trade(out_trade_no)
    order = Order.objects.get(out_trade_no=out_trade_no)

    race_all_succeed([
        lambda: orders.order_close(order=order),
        lambda: _post_notification(*sandbox.notification_for(trade)),
        lambda: _post_notification(*sandbox.notification_for(trade)),
    ], name="close-race")

    order.refresh_from_db()
    # The platform says it was paid, so closing books the payment rather than closing.
    assert order.status == "paid"
    assert PointsTransaction.objects.filter(kind="earn").count() == 1
    assert PointsTransaction.objects.filter(kind="capture").count() == 1
    assert not PointsTransaction.objects.filter(kind="reverse").exists()
    assert ledger.member_points_balance(member=member) == 45
    assert_ledger_invariants()


def test_a_double_tap_cannot_spend_the_same_points_twice():
    shop = build_shop()
    member = make_member()
    ledger.points_grant(member=member, points=1_000, reason="gift", idempotency_key="g")

    def order():
        return Shopper(member, client=Client(raise_request_exception=False)).order(
            store_code=shop.store.code, amount_fen=2_000, points_to_use=400)

    responses = race_all_succeed([order] * 5, name="order-race")

    codes = sorted(str(r.status_code) if r.status_code < 400 else r.json()["code"] for r in responses)
    assert codes == ["201", "201", "insufficient_points", "insufficient_points", "insufficient_points"]
    assert ledger.member_points_balance(member=member) == 200
    assert Order.objects.count() == 2
    assert_ledger_invariants()


def test_two_refunds_at_once_cannot_refund_more_than_the_order():
    shop = build_shop()
    member = make_member()
    out_trade_no = Shopper(member).order(store_code=shop.store.code, amount_fen=10_000).json()["out_trade_no"]
    _post_notification(*sandbox.trade_pay(out_trade_no=out_trade_no))
    assert Order.objects.get(out_trade_no=out_trade_no).status == "paid"

    def refund(key):
        api = Api(shop.raw_key, client=Client(raise_request_exception=False))
        return api.post(f"/api/v1/orders/{out_trade_no}/refunds/", {"amount_fen": 6_000}, key=key)

    responses = race_all_succeed([lambda k=k: refund(k) for k in ("a", "b", "c")], name="refund-race")

    codes = sorted(str(r.status_code) if r.status_code < 400 else r.json()["code"] for r in responses)
    assert codes == ["201", "refund_exceeds_order", "refund_exceeds_order"]
    order = Order.objects.get(out_trade_no=out_trade_no)
    assert order.refunded_fen == 6_000 and order.status == "partially_refunded"
    assert OrderRefund.objects.get().status == "succeeded"
    assert SandboxTrade.objects.get(out_trade_no=out_trade_no).refunded_fen == 6_000
    assert ledger.member_points_balance(member=member) == 40
    assert_ledger_invariants()
