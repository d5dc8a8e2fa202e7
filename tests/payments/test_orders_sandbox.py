"""Paying a shop through the sandbox cashier: the order, its held points, the signed
notification through /payments/notify/sandbox/, points once, one push."""

import json
from datetime import timedelta

import pytest
import time_machine
from django.test import Client
from django.utils import timezone

from members import ledger
from members.models import Account, Visit
from payments import tasks
from payments.gateways import sandbox
from payments.models import Order, OrderEvent, PaymentNotification, SandboxTrade
from tests.factories import assert_ledger_invariants, make_member
from tests.payments.conftest import build_shop
from tests.payments.orders_support import Shopper, order_pushes

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("sandbox_on")]


@pytest.fixture
def sandbox_on(settings):
    settings.O2O_SANDBOX = True


def _notify(headers, body, client=None):
    client = client or Client()
    return client.post("/payments/notify/sandbox/", data=body, content_type="application/json",
                       headers={k: v for k, v in headers.items()})


def test_an_order_holds_the_points_it_uses_and_the_cashier_pays_the_rest():
    shop = build_shop()
    member = make_member()
    ledger.points_grant(member=member, points=1_000, reason="gift", idempotency_key="g")

    response = Shopper(member).order(store_code=shop.store.code, amount_fen=10_000, points_to_use=800)

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["status"], body["payable_fen"], body["points_used"]) == ("created", 9_200, 800)
    assert body["pay_params"]["cashier_url"].startswith("/payments/sandbox/")
    assert ledger.member_points_balance(member=member) == 200
    order = Order.objects.get(out_trade_no=body["out_trade_no"])
    assert order.points_hold.points == -800 and order.gateway == "sandbox"

    headers, raw = sandbox.trade_pay(out_trade_no=order.out_trade_no)
    answer = _notify(headers, raw)

    assert answer.status_code == 200
    order.refresh_from_db()
    assert order.status == "paid" and order.transaction_id.startswith("SBX")
    # 92 points for ¥92 paid at 1 %; the 800 points now belong to the shop's merchant.
    assert order.earn.points == 92 and order.earn.idempotency_key == f"pay:sandbox:{order.transaction_id}"
    assert ledger.member_points_balance(member=member) == 292
    acceptance = Account.objects.get(kind="merchant_acceptance", merchant=shop.merchant)
    assert sum(e.amount for e in acceptance.entries.all()) == 800
    assert len(order_pushes(order)) == 1
    assert Visit.objects.filter(member=member, kind="payment", store=shop.store).count() == 1
    assert [e.kind for e in OrderEvent.objects.filter(order=order)] == ["created", "paid"]
    assert PaymentNotification.objects.get().outcome == "processed"
    assert_ledger_invariants()

    # The platform retries: acknowledged, nothing moves again.
    again = _notify(*sandbox.notification_for(SandboxTrade.objects.get(out_trade_no=order.out_trade_no)))
    assert again.status_code == 200
    assert ledger.member_points_balance(member=member) == 292 and len(order_pushes(order)) == 1
    assert PaymentNotification.objects.filter(outcome="duplicate").count() == 1


def test_points_paying_the_whole_bill_complete_the_order_at_once():
    shop = build_shop()
    member = make_member()
    ledger.points_grant(member=member, points=5_000, reason="gift", idempotency_key="g")

    body = Shopper(member).order(store_code=shop.store.code, amount_fen=3_000, points_to_use=3_000).json()

    assert (body["status"], body["payable_fen"], body["channel"], body["pay_params"]) == ("paid", 0, "points", {})
    assert ledger.member_points_balance(member=member) == 2_000
    order = Order.objects.get()
    assert order.earn is None and len(order_pushes(order)) == 1
    assert_ledger_invariants()


def test_a_forged_or_stale_notification_changes_nothing():
    shop = build_shop()
    member = make_member()
    order = Order.objects.get(out_trade_no=Shopper(member).order(store_code=shop.store.code, amount_fen=5_000).json()["out_trade_no"])
    trade = SandboxTrade.objects.get(out_trade_no=order.out_trade_no)
    trade.status = "SUCCESS"
    trade.paid_at = timezone.now()
    headers, body = sandbox.notification_for(trade)

    tampered = body.replace(b'"amount_fen":5000', b'"amount_fen":50')
    assert _notify(headers, tampered).status_code == 400
    assert _notify({**headers, sandbox.SIGNATURE_HEADER: "0" * 64}, body).status_code == 400
    old = sandbox.notification_for(trade, timestamp=int(timezone.now().timestamp()) - 3600)
    assert _notify(*old).status_code == 400
    assert _notify({}, b"<xml>not json</xml>").status_code == 400

    order.refresh_from_db()
    assert order.status == "created" and ledger.member_points_balance(member=member) == 0
    assert list(PaymentNotification.objects.values_list("reason", flat=True).order_by("pk")) == [
        "signature_invalid", "signature_invalid", "stale", "signature_missing"]


def test_an_unpaid_order_is_closed_after_fifteen_minutes_and_its_points_come_back():
    shop = build_shop()
    member = make_member()
    ledger.points_grant(member=member, points=1_000, reason="gift", idempotency_key="g")
    out_trade_no = Shopper(member).order(store_code=shop.store.code, amount_fen=2_000, points_to_use=500).json()["out_trade_no"]
    assert ledger.member_points_balance(member=member) == 500

    with time_machine.travel(timezone.now() + timedelta(minutes=14)):
        assert tasks.orders_close_stale() == 0
    with time_machine.travel(timezone.now() + timedelta(minutes=16)):
        assert tasks.orders_close_stale() == 1

    order = Order.objects.get(out_trade_no=out_trade_no)
    assert order.status == "closed"
    assert SandboxTrade.objects.get(out_trade_no=out_trade_no).status == "CLOSED"
    assert ledger.member_points_balance(member=member) == 1_000
    assert_ledger_invariants()


def test_a_payment_after_the_order_closed_is_refunded_automatically(django_capture_on_commit_callbacks):
    shop = build_shop()
    member = make_member()
    out_trade_no = Shopper(member).order(store_code=shop.store.code, amount_fen=2_000).json()["out_trade_no"]
    order = Order.objects.get(out_trade_no=out_trade_no)
    # The platform was paid, but the order here was closed first (its close never reached the platform).
    Order.objects.filter(pk=order.pk).update(status="closed", closed_at=timezone.now())
    headers, body = sandbox.trade_pay(out_trade_no=out_trade_no)

    with django_capture_on_commit_callbacks(execute=True):
        assert _notify(headers, body).status_code == 200

    order.refresh_from_db()
    assert order.status == "closed" and order.earn is None
    refund = order.refunds.get()
    assert (refund.kind, refund.status, refund.cash_fen) == ("late_payment", "succeeded", 2_000)
    assert SandboxTrade.objects.get(out_trade_no=out_trade_no).refunded_fen == 2_000
    assert ledger.member_points_balance(member=member) == 0
    assert "late_payment" in [e.kind for e in order.events.all()]


def test_a_refund_takes_back_points_earned_and_gives_back_points_used():
    shop = build_shop()
    member = make_member()
    ledger.points_grant(member=member, points=1_000, reason="gift", idempotency_key="g")
    out_trade_no = Shopper(member).order(store_code=shop.store.code, amount_fen=10_000, points_to_use=1_000).json()["out_trade_no"]
    _notify(*sandbox.trade_pay(out_trade_no=out_trade_no))
    assert ledger.member_points_balance(member=member) == 90

    from tests.payments.conftest import Api

    pos = Api(shop.raw_key)
    half = pos.post(f"/api/v1/orders/{out_trade_no}/refunds/", {"amount_fen": 5_000}, key="r1")
    assert half.status_code == 201, half.content
    assert (half.json()["status"], half.json()["cash_fen"], half.json()["points"]) == ("succeeded", 4_500, 500)
    assert ledger.member_points_balance(member=member) == 90 - 45 + 500
    replay = pos.post(f"/api/v1/orders/{out_trade_no}/refunds/", {"amount_fen": 5_000}, key="r1")
    assert replay.json()["out_refund_no"] == half.json()["out_refund_no"]
    rest = pos.post(f"/api/v1/orders/{out_trade_no}/refunds/", {"amount_fen": 5_000}, key="r2")
    assert rest.json()["status"] == "succeeded"
    order = Order.objects.get(out_trade_no=out_trade_no)
    assert order.status == "refunded" and order.refunded_fen == 10_000
    assert ledger.member_points_balance(member=member) == 1_000
    too_much = pos.post(f"/api/v1/orders/{out_trade_no}/refunds/", {"amount_fen": 1}, key="r3")
    assert too_much.status_code == 409 and too_much.json()["code"] == "order_not_refundable"
    assert_ledger_invariants()


def test_a_member_banned_before_the_payment_arrives_gets_no_points_but_the_payment_is_booked():
    shop = build_shop()
    member = make_member()
    out_trade_no = Shopper(member).order(store_code=shop.store.code, amount_fen=5_000).json()["out_trade_no"]
    member.status = "banned"
    member.save(update_fields=["status"])

    assert _notify(*sandbox.trade_pay(out_trade_no=out_trade_no)).status_code == 200

    order = Order.objects.get(out_trade_no=out_trade_no)
    assert order.status == "paid" and order.earn is None
    assert "earn_refused" in [e.kind for e in order.events.all()]
    assert PaymentNotification.objects.get().outcome == "processed"


@pytest.mark.parametrize("body, status, code", [
    ({"amount_fen": "100"}, 400, "validation_error"),
    ({"amount_fen": 0}, 400, "validation_error"),
    ({"amount_fen": 1.5}, 400, "validation_error"),
    ({"amount_fen": 100, "points_to_use": -1}, 400, "validation_error"),
    ({"amount_fen": 100, "points_to_use": 101}, 400, "points_exceed_amount"),
    ({"amount_fen": 100, "channel": "cash"}, 400, "validation_error"),
    ({"amount_fen": 100, "coupon_code": "NOPE"}, 404, "coupon_not_found"),
    ({"amount_fen": 100, "store_code": "no-such-shop"}, 404, "store_not_found"),
    ({"amount_fen": 100, "points_to_use": 50}, 409, "insufficient_points"),
    ({"amount_fen": 100, "channel": "wechat"}, 400, "channel_unavailable"),
])
def test_a_bad_order_is_refused_with_its_code_and_nothing_is_written(body, status, code):
    shop = build_shop()
    member = make_member()
    request = {"store_code": shop.store.code, "channel": "sandbox", **body}

    response = Shopper(member).post("orders/", request)

    assert (response.status_code, response.json()["code"]) == (status, code)
    assert not Order.objects.exists() and not SandboxTrade.objects.exists()
    assert ledger.member_points_balance(member=member) == 0


def test_the_sandbox_cashier_does_not_exist_outside_sandbox_mode(settings):
    shop = build_shop()
    member = make_member()
    out_trade_no = Shopper(member).order(store_code=shop.store.code, amount_fen=5_000).json()["out_trade_no"]
    settings.O2O_SANDBOX = False

    assert Client().get(f"/payments/sandbox/{out_trade_no}/").status_code == 404
    assert Shopper(member).order(store_code=shop.store.code, amount_fen=5_000).json()["code"] == "channel_unavailable"


def test_orders_are_private_to_their_shopper_and_their_merchant():
    shop, other_shop = build_shop(), build_shop()
    member, stranger = make_member(), make_member()
    out_trade_no = Shopper(member).order(store_code=shop.store.code, amount_fen=5_000).json()["out_trade_no"]
    _notify(*sandbox.trade_pay(out_trade_no=out_trade_no))
    from tests.payments.conftest import Api

    assert Shopper(member).get(f"orders/{out_trade_no}/").json()["status"] == "paid"
    assert Shopper(stranger).get(f"orders/{out_trade_no}/").status_code == 404
    assert Api(shop.raw_key).get(f"/api/v1/orders/{out_trade_no}/").json()["status"] == "paid"
    assert Api(other_shop.raw_key).get(f"/api/v1/orders/{out_trade_no}/").status_code == 404
    refused = Api(other_shop.raw_key).post(f"/api/v1/orders/{out_trade_no}/refunds/", {"amount_fen": 100})
    assert (refused.status_code, refused.json()["code"]) == (404, "order_not_found")
    assert Order.objects.get(out_trade_no=out_trade_no).refunded_fen == 0


def test_a_notification_for_an_unknown_order_or_with_a_hostile_body_is_refused_without_a_500():
    trade = SandboxTrade(out_trade_no="P20260101nope", transaction_id="SBXnope", amount_fen=100, status="SUCCESS",
                         paid_at=timezone.now())
    headers, body = sandbox.notification_for(trade)
    client = Client(raise_request_exception=False)

    unknown = _notify(headers, body, client)
    huge = client.post("/payments/notify/sandbox/", data=b"x" * 70_000, content_type="application/json")
    nested = client.post("/payments/notify/sandbox/", data=b"[" * 50_000, content_type="application/json", headers=headers)

    assert [r.status_code for r in (unknown, huge, nested)] == [400, 400, 400]
    assert json.loads(unknown.content)["message"] == "order_not_found"
    assert sorted(PaymentNotification.objects.values_list("reason", flat=True)) == [
        "order_not_found", "signature_invalid", "too_large"]


def test_a_signature_that_is_not_ascii_is_refused_without_a_500():
    answer = Client(raise_request_exception=False).post(
        "/payments/notify/sandbox/", data=b"{}", content_type="application/json",
        headers={sandbox.TIMESTAMP_HEADER: "²", sandbox.SIGNATURE_HEADER: "é"},
    )
    other = Client(raise_request_exception=False).post(
        "/payments/notify/sandbox/", data=b"{}", content_type="application/json",
        headers={sandbox.TIMESTAMP_HEADER: str(int(timezone.now().timestamp())), sandbox.SIGNATURE_HEADER: "é" * 64},
    )

    assert (answer.status_code, other.status_code) == (400, 400)
    assert sorted(PaymentNotification.objects.values_list("reason", flat=True)) == ["signature_invalid", "signature_missing"]


def test_the_sandbox_notification_endpoint_does_not_exist_outside_sandbox_mode(settings):
    settings.O2O_SANDBOX = False

    assert Client().post("/payments/notify/sandbox/", data=b"{}", content_type="application/json").status_code == 404


def test_the_monthly_statement_shows_what_the_mall_collected_for_the_merchant_and_owes_it():
    shop = build_shop()
    member = make_member()
    ledger.points_grant(member=member, points=1_000, reason="gift", idempotency_key="g")
    out_trade_no = Shopper(member).order(store_code=shop.store.code, amount_fen=10_000, points_to_use=1_000).json()["out_trade_no"]
    _notify(*sandbox.trade_pay(out_trade_no=out_trade_no))
    from tests.payments.conftest import Api

    pos = Api(shop.raw_key)
    assert pos.post(f"/api/v1/orders/{out_trade_no}/refunds/", {"amount_fen": 5_000}).json()["status"] == "succeeded"
    period = timezone.localdate().strftime("%Y-%m")

    statement = pos.get("/api/v1/settlements/", {"period": period}).json()

    # ¥90 paid in cash, ¥45 refunded; 1,000 points taken as payment, 500 given back; 90 points funded, 45 taken back.
    assert (statement["collected_fen"], statement["refunded_fen"], statement["payments_due_fen"]) == (9_000, 4_500, 4_500)
    assert (statement["accepted_points"], statement["funded_points"]) == (500, 45)
    assert statement["total_due_fen"] == statement["net_fen"] + 4_500 == 455 + 4_500
