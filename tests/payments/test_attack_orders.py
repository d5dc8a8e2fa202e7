"""Hostile tests of paying a shop by its QR: a dishonest merchant, a points-farming
shopper, a stranger forging platform notifications.

Each attack that succeeds today is a failing test stating what should happen; each
attack that is defended is a passing test, so that it stays defended.
"""

import datetime as dt
import json
import secrets
import threading
import time
import uuid

import pytest
import time_machine
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from members import ledger
from members.identity import member_merge
from members.models import Identity, Member, PointsTransaction, Push
from members.web_auth import SESSION_MEMBER
from payments import orders as order_services
from payments import tasks
from payments.gateways import RefundResult, RefundState, sandbox
from payments.gateways.sandbox import SandboxGateway
from payments.models import Order, OrderRefund, PaymentNotification, SandboxTrade
from tests.concurrency import race_all_succeed
from tests.factories import assert_ledger_invariants, make_member
from tests.fakes.platform_server import Reply, wechat_pay_xml
from tests.fakes.wechat_pay_v3 import notification as v3_notification
from tests.payments.conftest import Api, build_shop, grant
from tests.payments.orders_support import Shopper
from tests.payments.test_gateway_alipay import alipay  # noqa: F401 — a fixture
from tests.payments.test_gateway_wechat_v2 import api_key, notification_fields, signed, wechat  # noqa: F401 — fixtures
from tests.payments.test_gateway_wechat_v3 import (  # noqa: F401 — keys and wechat_pay are fixtures
    REFUNDS_PATH,
    _refund_notification,
    _refund_resource,
    _refunds_answer,
    _transaction,
    keys,
    wechat_pay,
)
from tests.payments.test_gateway_wechat_v3 import _notify as v3_notify
from tests.payments.test_gateway_wechat_v3 import _order as v3_order
from tests.payments.test_gateway_wechat_v3 import _shopper as v3_shopper

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("sandbox_on")]


@pytest.fixture
def sandbox_on(settings):
    settings.O2O_SANDBOX = True


# --- helpers ------------------------------------------------------------------------------


def notify(headers, body, *, client: Client | None = None):
    client = client or Client(raise_request_exception=False)
    return client.post("/payments/notify/sandbox/", data=body, content_type="application/json", headers=headers)


def order_of(response) -> Order:
    assert response.status_code == 201, response.content
    return Order.objects.get(out_trade_no=response.json()["out_trade_no"])


def paid(shopper: Shopper, shop, *, amount_fen: int, points_to_use: int = 0) -> Order:
    order = order_of(shopper.order(store_code=shop.store.code, amount_fen=amount_fen, points_to_use=points_to_use or None))
    if order.status == Order.Status.CREATED:
        assert notify(*sandbox.trade_pay(out_trade_no=order.out_trade_no)).status_code == 200
    order.refresh_from_db()
    assert order.status == Order.Status.PAID
    return order


def refund_via_api(shop, order: Order, amount_fen: int, *, key: str | None = None):
    return Api(shop.raw_key).post(f"/api/v1/orders/{order.out_trade_no}/refunds/", {"amount_fen": amount_fen},
                                  key=key or f"k-{uuid.uuid4()}")


def balance(member) -> int:
    return ledger.member_points_balance(member=member)


def log_in(client: Client, member: Member) -> Client:
    session = client.session
    session[SESSION_MEMBER] = member.pk
    session.save()
    return client


# --- 1. points farming through refunds ----------------------------------------------------------


def test_refunding_an_order_and_the_order_its_earned_points_paid_leaves_the_shopper_no_points():
    """Earn at shop A, spend those points at shop B, have both refunded: everything went
    back, so the shopper must end with nothing. Today the earn reversal finds the earned
    lots spent (a shortfall) and B's refund then hands the same points back as new lots."""
    shop_a, shop_b = build_shop(), build_shop()
    member = make_member()
    shopper = Shopper(member)
    earning = paid(shopper, shop_a, amount_fen=10_000)  # 100 points at 1 %
    assert balance(member) == 100
    spending = paid(shopper, shop_b, amount_fen=100, points_to_use=100)  # points only
    assert balance(member) == 0

    assert refund_via_api(shop_a, earning, 10_000).json()["status"] == "succeeded"
    assert refund_via_api(shop_b, spending, 100).json()["status"] == "succeeded"

    # All the cash is back with the shopper, and the goods with the shops.
    assert SandboxTrade.objects.get(out_trade_no=earning.out_trade_no).refunded_fen == 10_000
    assert balance(member) == 0, "the shopper kept points earned by a payment that was refunded"
    assert_ledger_invariants()


def test_refunding_the_spending_order_first_then_the_earning_one_leaves_the_shopper_no_points():
    shop_a, shop_b = build_shop(), build_shop()
    member = make_member()
    shopper = Shopper(member)
    earning = paid(shopper, shop_a, amount_fen=10_000)
    spending = paid(shopper, shop_b, amount_fen=100, points_to_use=100)

    assert refund_via_api(shop_b, spending, 100).json()["status"] == "succeeded"
    assert balance(member) == 100  # the points came back; the earning payment still stands
    assert refund_via_api(shop_a, earning, 10_000).json()["status"] == "succeeded"

    assert balance(member) == 0, "the earn reversal ignored the points the other refund gave back"
    assert_ledger_invariants()


def test_the_shortfall_of_a_refund_is_exactly_what_the_shopper_spent_of_the_earned_points():
    shop_a, shop_b = build_shop(), build_shop()
    member = make_member()
    shopper = Shopper(member)
    earning = paid(shopper, shop_a, amount_fen=10_000)
    paid(shopper, shop_b, amount_fen=60, points_to_use=60)

    response = refund_via_api(shop_a, earning, 10_000)

    assert response.json()["status"] == "succeeded"
    reversal = OrderRefund.objects.get(out_refund_no=response.json()["out_refund_no"]).earn_reversal
    assert (reversal.points, reversal.shortfall) == (-40, 60)
    assert balance(member) == 0
    assert_ledger_invariants()


def test_points_paying_part_of_an_order_earn_nothing():
    shop = build_shop()
    member = make_member()
    grant(member, 5_000)

    order = paid(Shopper(member), shop, amount_fen=10_000, points_to_use=5_000)

    # 1 % of the ¥50 paid in cash; the ¥50 paid with points earns nothing.
    assert order.earn.points == 50
    assert balance(member) == 50


# --- 2. hostile input that becomes a 500 --------------------------------------------------------


@pytest.mark.parametrize("amount", ["1e999999", "9E+999999"])
def test_the_pay_page_refuses_an_overflowing_amount_without_a_500(amount):
    shop = build_shop()
    member = make_member()
    client = log_in(Client(raise_request_exception=False), member)

    response = client.post(f"/m/pay/{shop.store.code}/", {"amount": amount, "points": "0", "channel": "sandbox"})

    assert response.status_code == 400, response.status_code
    assert not Order.objects.exists()


@pytest.mark.parametrize("amount", ["1e999999", "9E+999999"])
def test_the_admin_refund_form_refuses_an_overflowing_amount_without_a_500(amount):
    shop = build_shop()
    order = paid(Shopper(make_member()), shop, amount_fen=5_000)
    admin = User.objects.create_superuser("root", password="pw")
    client = Client(raise_request_exception=False)
    client.force_login(admin)

    response = client.post(reverse("admin:payments_order_refund", args=[order.pk]),
                           {"token": str(uuid.uuid4()), "amount": amount, "reason": "overflow"})

    assert response.status_code == 200, response.status_code  # the form again, with its error
    assert not OrderRefund.objects.exists()


# --- 3. shops that should not take payments -----------------------------------------------------


def test_a_shop_in_a_closed_plaza_takes_no_order_through_the_shopper_api():
    shop = build_shop()
    plaza = shop.store.plaza
    plaza.is_active = False
    plaza.save(update_fields=["is_active"])
    member = make_member()

    # The pay page already refuses it (the shop's code "is not valid").
    page = log_in(Client(), member).get(f"/m/pay/{shop.store.code}/")
    assert page.status_code == 404
    response = Shopper(member).order(store_code=shop.store.code, amount_fen=5_000)

    assert response.status_code == 403, response.content
    assert response.json()["code"] == "merchant_not_active"
    assert not Order.objects.exists()


def test_a_shop_in_a_closed_plaza_shows_no_payment_qr_on_its_pos():
    shop = build_shop()
    plaza = shop.store.plaza
    plaza.is_active = False
    plaza.save(update_fields=["is_active"])

    response = shop.api.post("/api/v1/orders/", {"store_code": shop.store.code, "amount_fen": 5_000, "channel": "sandbox"})

    assert (response.status_code, response.json().get("code")) == (403, "merchant_not_active")
    assert not Order.objects.exists()


# --- 4. the sandbox outside sandbox mode --------------------------------------------------------


def test_the_sandbox_notification_endpoint_books_nothing_outside_sandbox_mode(settings):
    """The cashier and the sandbox channel vanish when O2O_SANDBOX is off; its notify
    endpoint must too, or whoever holds the sandbox key (a migration wrote it into the
    database) still pays the sandbox orders left open."""
    shop = build_shop()
    member = make_member()
    order = order_of(Shopper(member).order(store_code=shop.store.code, amount_fen=5_000))
    payment = sandbox.trade_pay(out_trade_no=order.out_trade_no)
    settings.O2O_SANDBOX = False

    response = notify(*payment)

    assert response.status_code in (400, 404)
    order.refresh_from_db()
    assert order.status == Order.Status.CREATED and balance(member) == 0


# --- 5. a member merged while an order is open --------------------------------------------------


def test_a_shopper_merged_after_ordering_still_sees_the_order_and_gets_its_push():
    shop = build_shop()
    older, newer = make_member(), make_member()
    shopper = Shopper(newer)
    order = order_of(shopper.order(store_code=shop.store.code, amount_fen=5_000))
    member_merge(source=newer, target=older, reason="same unionid")

    assert notify(*sandbox.trade_pay(out_trade_no=order.out_trade_no)).status_code == 200

    assert balance(older) == 50  # the points follow the merge
    followed = shopper.get(f"orders/{order.out_trade_no}/")  # the old token now speaks for `older`
    page = log_in(Client(), newer).get(f"/m/pay/orders/{order.out_trade_no}/status.json")
    pushes = list(Push.objects.filter(event="order_paid").values_list("member_id", flat=True))
    assert (followed.status_code, page.status_code, pushes) == (200, 200, [older.pk])


# --- defended: notifications --------------------------------------------------------------------


def _verified(payment: dict) -> tuple[dict, bytes]:
    """A notification as the sandbox platform would sign it, saying whatever ``payment`` says."""
    body = json.dumps({"event": "payment", "trade_state": "SUCCESS", "paid_at": timezone.now().isoformat(),
                       "nonce": secrets.token_hex(8), **payment}).encode()
    stamp = str(int(timezone.now().timestamp()))
    return {sandbox.TIMESTAMP_HEADER: stamp, sandbox.SIGNATURE_HEADER: sandbox.sign(stamp, body)}, body


def test_a_verified_payment_of_less_than_the_order_books_nothing():
    shop = build_shop()
    member = make_member()
    order = order_of(Shopper(member).order(store_code=shop.store.code, amount_fen=5_000))
    trade = SandboxTrade.objects.get(out_trade_no=order.out_trade_no)

    response = notify(*_verified({"out_trade_no": order.out_trade_no, "transaction_id": trade.transaction_id,
                                  "amount_fen": 1}))

    assert response.status_code == 400
    order.refresh_from_db()
    assert (order.status, balance(member)) == ("created", 0)
    assert PaymentNotification.objects.get().reason == "amount_mismatch"


def test_order_a_s_payment_named_for_order_b_books_nothing_and_is_no_500():
    shop = build_shop()
    member = make_member()
    shopper = Shopper(member)
    first = paid(shopper, shop, amount_fen=5_000)
    second = order_of(shopper.order(store_code=shop.store.code, amount_fen=5_000))

    response = notify(*_verified({"out_trade_no": second.out_trade_no, "transaction_id": first.transaction_id,
                                  "amount_fen": 5_000}))

    assert response.status_code == 400
    second.refresh_from_db()
    assert second.status == "created" and balance(member) == 50
    assert PointsTransaction.objects.filter(kind="earn").count() == 1


def test_a_second_payment_of_a_paid_order_under_another_transaction_is_refused():
    shop = build_shop()
    member = make_member()
    order = paid(Shopper(member), shop, amount_fen=5_000)

    response = notify(*_verified({"out_trade_no": order.out_trade_no, "transaction_id": "SBX-other", "amount_fen": 5_000}))

    assert response.status_code == 400 and json.loads(response.content)["message"] == "transaction_mismatch"
    assert balance(member) == 50


@pytest.mark.parametrize("body", [
    b"", b"\x00" * 100, b"\xff\xfe<\x00x\x00", b'{"a":' * 10_000, "<xml>\u202e</xml>".encode(),
    b'<?xml version="1.0" encoding="GBK"?><xml><a>\xb0\xa1</a></xml>',
    b'<!DOCTYPE x [<!ENTITY a "aaaa">]><xml><a>&a;</a></xml>',
])
@pytest.mark.parametrize("path", ["sandbox/", "wechat/", "wechat/v3/", "alipay/"])
def test_hostile_bodies_on_every_notify_endpoint_are_refused_without_a_500(path, body):
    response = Client(raise_request_exception=False).post(
        f"/payments/notify/{path}", data=body, content_type="application/json",
        headers={sandbox.SIGNATURE_HEADER: "<script>", sandbox.TIMESTAMP_HEADER: "1"})

    assert response.status_code in (200, 400)
    assert PaymentNotification.objects.get().outcome == "rejected"


def test_a_notification_body_and_headers_show_escaped_in_the_admin():
    Client().post("/payments/notify/sandbox/", data=b'<script>alert(1)</script>', content_type="application/json",
                  headers={sandbox.SIGNATURE_HEADER: "<img src=x onerror=alert(2)>", sandbox.TIMESTAMP_HEADER: "1"})
    note = PaymentNotification.objects.get()
    client = Client()
    client.force_login(User.objects.create_superuser("root", password="pw"))

    page = client.get(reverse("admin:payments_paymentnotification_change", args=[note.pk])).content.decode()

    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)" in page
    assert "<img src=x" not in page


# --- defended: shopper input ----------------------------------------------------------------------


@pytest.mark.parametrize("change, status, code", [
    ({"amount_fen": True}, 400, "validation_error"),
    ({"amount_fen": 100.0}, 400, "validation_error"),
    ({"amount_fen": None}, 400, "validation_error"),
    ({"amount_fen": {"$gt": 0}}, 400, "validation_error"),
    ({"amount_fen": [100]}, 400, "validation_error"),
    ({"amount_fen": 2**63}, 400, "validation_error"),
    ({"amount_fen": -100}, 400, "validation_error"),
    ({"points_to_use": True}, 400, "validation_error"),
    ({"points_to_use": "50"}, 400, "validation_error"),
    ({"points_to_use": 2**70}, 400, "validation_error"),
    ({"store_code": ["x"]}, 400, "validation_error"),
    ({"store_code": "store\x00"}, 400, "validation_error"),
    ({"channel": "points"}, 400, "validation_error"),
    ({"coupon_code": "' OR 1=1 --"}, 404, "coupon_not_found"),
    ({"coupon_code": {"code": "x"}}, 400, "validation_error"),
])
def test_type_confused_order_bodies_are_refused_and_write_nothing(change, status, code):
    shop = build_shop()
    member = make_member()
    grant(member, 100)

    response = Shopper(member).post("orders/", {"store_code": shop.store.code, "amount_fen": 100, "channel": "sandbox",
                                                **change})

    assert (response.status_code, response.json()["code"]) == (status, code)
    assert not Order.objects.exists() and balance(member) == 100


@pytest.mark.parametrize("raw", [b"[]", b'"x"', b"not json", b'{"amount_fen": 1' + b"0" * 5000 + b"}", b"\x00"])
def test_a_body_that_is_not_a_json_object_is_a_400(raw):
    response = Client(raise_request_exception=False).post(
        "/api/mp/v1/orders/", data=raw, content_type="application/json", headers=Shopper(make_member()).headers)

    assert response.status_code == 400, response.content[:200]
    assert not Order.objects.exists()


def test_a_banned_shopper_cannot_order_through_the_api_or_the_pay_page():
    shop = build_shop()
    member = make_member()
    grant(member, 500)
    shopper = Shopper(member)
    member.status = Member.Status.BANNED
    member.save(update_fields=["status"])

    api = shopper.order(store_code=shop.store.code, amount_fen=500, points_to_use=500)
    page = log_in(Client(), member).post(f"/m/pay/{shop.store.code}/", {"amount": "5", "points": "500", "channel": ""})

    assert (api.status_code, page.status_code) == (403, 403)
    assert not Order.objects.exists() and balance(member) == 500


def test_another_shoppers_order_is_not_found_on_any_page():
    shop = build_shop()
    owner, stranger = make_member(), make_member()
    order = order_of(Shopper(owner).order(store_code=shop.store.code, amount_fen=5_000))
    client = log_in(Client(), stranger)

    assert Shopper(stranger).get(f"orders/{order.out_trade_no}/").status_code == 404
    assert client.get(f"/m/pay/orders/{order.out_trade_no}/").status_code == 404
    assert client.get(f"/m/pay/orders/{order.out_trade_no}/status.json").status_code == 404
    assert Client().get(f"/m/pay/orders/{order.out_trade_no}/status.json").status_code == 401


def test_out_trade_numbers_carry_eighty_random_bits():
    shop = build_shop()
    shopper = Shopper(make_member())
    numbers = [shopper.order(store_code=shop.store.code, amount_fen=100).json()["out_trade_no"] for _ in range(3)]

    assert len(set(numbers)) == 3
    assert all(len(n) == 29 and int(n[9:], 16) >= 0 for n in numbers)
    assert len({n[9:] for n in numbers}) == 3


def test_the_pay_page_refuses_a_cross_site_post():
    shop = build_shop()
    member = make_member()
    grant(member, 500)
    client = log_in(Client(enforce_csrf_checks=True), member)

    response = client.post(f"/m/pay/{shop.store.code}/", {"amount": "5", "points": "500", "channel": ""})

    assert response.status_code == 403
    assert not Order.objects.exists() and balance(member) == 500


@pytest.mark.parametrize("target", [
    "https://evil.example/", "//evil.example/", "/\\evil.example/", "\\\\evil.example", "https://testserver@evil.example/",
    "javascript:alert(1)", "http:/\\/evil.example", " //evil.example",
])
def test_the_cashier_never_sends_the_payer_off_site(target):
    shop = build_shop()
    order = order_of(Shopper(make_member()).order(store_code=shop.store.code, amount_fen=100))
    url = f"/payments/sandbox/{order.out_trade_no}/"

    shown = Client().get(url, {"next": target}).content.decode()
    response = Client().post(url, {"next": target})

    # (The footer's language switcher carries the page's own URL, encoded: not a link.)
    cashier = shown.split("<footer")[0]
    assert "evil.example" not in cashier and "javascript:" not in cashier
    assert response.status_code == 200  # paid, and the cashier page again instead of a redirect
    assert Order.objects.get(pk=order.pk).status == "paid"


def test_a_store_name_with_markup_is_escaped_on_the_pay_page_the_cashier_and_the_admin():
    shop = build_shop(name="Shop")
    shop.store.name = '<script>alert("x")</script>'
    shop.store.save(update_fields=["name"])
    member = make_member()
    client = log_in(Client(), member)
    order = order_of(Shopper(member).order(store_code=shop.store.code, amount_fen=100))
    admin = Client()
    admin.force_login(User.objects.create_superuser("root", password="pw"))

    pages = [
        client.get(f"/m/pay/{shop.store.code}/"), Client().get(f"/payments/sandbox/{order.out_trade_no}/"),
        client.get(f"/m/pay/orders/{order.out_trade_no}/"),
        admin.get(reverse("admin:payments_order_change", args=[order.pk])),
        admin.get(reverse("admin:payments_order_changelist")),
    ]

    for page in pages:
        assert page.status_code == 200
        assert '<script>alert("x")' not in page.content.decode()


# --- defended: merchants ------------------------------------------------------------------------


def test_a_refund_key_reused_for_another_amount_is_a_conflict_and_refunds_once():
    shop = build_shop()
    order = paid(Shopper(make_member()), shop, amount_fen=5_000)

    first = refund_via_api(shop, order, 1_000, key="same")
    other = refund_via_api(shop, order, 2_000, key="same")

    assert first.status_code == 201
    assert (other.status_code, other.json()["code"]) == (409, "idempotency_conflict")
    assert Order.objects.get(pk=order.pk).refunded_fen == 1_000
    assert SandboxTrade.objects.get(out_trade_no=order.out_trade_no).refunded_fen == 1_000


@pytest.mark.parametrize("body", [{"amount_fen": "5000"}, {"amount_fen": 5000.0}, {"amount_fen": True},
                                  {"amount_fen": 2**64}, {"amount_fen": 0}, {"amount_fen": 100, "reason": {"x": 1}}])
def test_a_type_confused_refund_is_a_400_and_refunds_nothing(body):
    shop = build_shop()
    order = paid(Shopper(make_member()), shop, amount_fen=5_000)

    response = Api(shop.raw_key).post(f"/api/v1/orders/{order.out_trade_no}/refunds/", body)

    assert (response.status_code, response.json()["code"]) == (400, "validation_error")
    assert Order.objects.get(pk=order.pk).refunded_fen == 0


def test_a_merchant_cannot_refund_or_read_another_merchants_order_nor_order_at_its_store():
    shop, rival = build_shop(), build_shop()
    order = paid(Shopper(make_member()), shop, amount_fen=5_000)

    read = rival.api.get(f"/api/v1/orders/{order.out_trade_no}/")
    refund = refund_via_api(rival, order, 5_000)
    qr = rival.api.post("/api/v1/orders/", {"store_code": shop.store.code, "amount_fen": 100, "channel": "sandbox"})

    assert [r.status_code for r in (read, refund, qr)] == [404, 404, 404]
    assert Order.objects.get(pk=order.pk).refunded_fen == 0 and Order.objects.count() == 1


def test_a_late_payment_of_an_order_with_points_refunds_the_cash_and_earns_nothing(django_capture_on_commit_callbacks):
    shop = build_shop()
    member = make_member()
    grant(member, 1_000)
    order = order_of(Shopper(member).order(store_code=shop.store.code, amount_fen=2_000, points_to_use=1_000))
    # The shopper pays at the platform just as the order is closed here.
    SandboxTrade.objects.filter(pk=SandboxTrade.objects.get(out_trade_no=order.out_trade_no).pk).update(
        status="SUCCESS", paid_at=timezone.now())
    late = sandbox.notification_for(SandboxTrade.objects.get(out_trade_no=order.out_trade_no))
    order_services._close(order, now=timezone.now(), kind="closed")
    with django_capture_on_commit_callbacks(execute=True):
        assert notify(*late).status_code == 200
        assert notify(*late).status_code == 200  # the platform's retry

    order.refresh_from_db()
    assert (order.status, order.earn_id) == ("closed", None)
    assert [(r.kind, r.status, r.cash_fen) for r in order.refunds.all()] == [("late_payment", "succeeded", 1_000)]
    assert balance(member) == 1_000  # the held points came back once; nothing earned
    assert_ledger_invariants()


# --- defended: a POS QR paid by a banned or a merged member (WeChat Pay v2 on the fake server) ----


def _pos_qr(shop) -> Order:
    response = shop.api.post("/api/v1/orders/", {"store_code": shop.store.code, "amount_fen": 3_800, "channel": "wechat"})
    assert response.status_code == 201, response.content
    return Order.objects.get(out_trade_no=response.json()["out_trade_no"])


def _wechat_notify(body: bytes):
    return Client(raise_request_exception=False).post("/payments/notify/wechat/", data=body, content_type="text/xml")


def test_a_pos_qr_paid_by_a_banned_member_is_booked_without_points(wechat, api_key):
    shop = build_shop()
    banned = make_member()
    Identity.objects.create(member=banned, channel=Identity.Channel.WECHAT_OPENID, external_id="o-banned")
    banned.status = Member.Status.BANNED
    banned.save(update_fields=["status"])
    order = _pos_qr(shop)

    answer = _wechat_notify(signed(notification_fields(order, openid="o-banned"), api_key))

    assert b"SUCCESS" in answer.content
    order.refresh_from_db()
    assert (order.status, order.member_id, order.earn_id) == ("paid", banned.pk, None)
    assert balance(banned) == 0 and not Push.objects.filter(member=banned).exists()


def test_a_pos_qr_paid_by_a_merged_members_openid_earns_for_the_member_it_was_merged_into(wechat, api_key):
    shop = build_shop()
    older, newer = make_member(), make_member()
    Identity.objects.create(member=newer, channel=Identity.Channel.WECHAT_OPENID, external_id="o-merged")
    member_merge(source=newer, target=older, reason="same unionid")
    order = _pos_qr(shop)

    assert b"SUCCESS" in _wechat_notify(signed(notification_fields(order, openid="o-merged"), api_key)).content

    order.refresh_from_db()
    assert order.member_id == older.pk and balance(older) == 38 and balance(newer) == 0


# --- defended: races (threads, each on its own connection; PostgreSQL through DATABASE_URL) --------


@pytest.mark.django_db(transaction=True)
def test_staff_and_a_pos_refunding_at_once_cannot_refund_more_than_the_order():
    shop = build_shop()
    member = make_member()
    grant(member, 2_000)
    order = paid(Shopper(member), shop, amount_fen=10_000, points_to_use=2_000)
    staff_client = Client(raise_request_exception=False)
    staff_client.force_login(User.objects.create_superuser("root", password="pw"))
    url = reverse("admin:payments_order_refund", args=[order.pk])

    def by_staff():
        staff_client.post(url, {"token": str(uuid.uuid4()), "amount": "60.00", "reason": "staff"})

    def by_pos():
        Api(shop.raw_key, client=Client(raise_request_exception=False)).post(
            f"/api/v1/orders/{order.out_trade_no}/refunds/", {"amount_fen": 6_000}, key=f"pos-{uuid.uuid4()}")

    race_all_succeed([by_staff, by_pos, by_pos], name="admin-api-refund")

    order.refresh_from_db()
    done = list(order.refunds.filter(status="succeeded"))
    assert len(done) == 1 and order.refunded_fen == 6_000
    assert SandboxTrade.objects.get(out_trade_no=order.out_trade_no).refunded_fen == done[0].cash_fen == 4_800
    assert_ledger_invariants()


@pytest.mark.django_db(transaction=True)
def test_points_only_orders_at_once_cannot_spend_the_same_points_twice():
    shop = build_shop()
    member = make_member()
    grant(member, 1_000)

    def order():
        return Shopper(member, client=Client(raise_request_exception=False)).order(
            store_code=shop.store.code, amount_fen=600, points_to_use=600)

    responses = race_all_succeed([order] * 4, name="points-only-race")

    assert sorted(r.status_code for r in responses) == [201, 409, 409, 409]
    assert balance(member) == 400 and Order.objects.filter(status="paid").count() == 1
    assert_ledger_invariants()


@pytest.mark.django_db(transaction=True)
def test_spending_earned_points_while_their_order_is_refunded_never_overdraws():
    shop_a, shop_b = build_shop(), build_shop()
    member = make_member()
    earning = paid(Shopper(member), shop_a, amount_fen=10_000)

    def spend():
        return Shopper(member, client=Client(raise_request_exception=False)).order(
            store_code=shop_b.store.code, amount_fen=100, points_to_use=100)

    def refund():
        return Api(shop_a.raw_key, client=Client(raise_request_exception=False)).post(
            f"/api/v1/orders/{earning.out_trade_no}/refunds/", {"amount_fen": 10_000}, key="race")

    spent, refunded = race_all_succeed([spend, refund], name="spend-refund-race")

    assert refunded.status_code == 201 and refunded.json()["status"] == "succeeded"
    reversal = OrderRefund.objects.get().earn_reversal
    if spent.status_code == 201:
        assert (reversal.points, reversal.shortfall) == (0, 100)
    else:
        assert (spent.json()["code"], reversal.points, reversal.shortfall) == ("insufficient_points", -100, 0)
    assert balance(member) == 0
    assert_ledger_invariants()


# --- 6. money that can get stuck, and what the shopper's app is told ------------------------------


def test_a_late_payment_whose_refund_the_platform_refused_once_is_still_refunded(monkeypatch, django_capture_on_commit_callbacks):
    """A payment after the order closed is refunded automatically. If the platform refuses
    that refund once (e.g. WeChat Pay's NOTENOUGH: the account is short that minute), the
    refund is marked failed, the schedule resends only pending refunds, and the admin
    offers no refund of a closed order: the shopper's money is never returned."""
    shop = build_shop()
    order = order_of(Shopper(make_member()).order(store_code=shop.store.code, amount_fen=2_000))
    SandboxTrade.objects.filter(out_trade_no=order.out_trade_no).update(status="SUCCESS", paid_at=timezone.now())
    late = sandbox.notification_for(SandboxTrade.objects.get(out_trade_no=order.out_trade_no))
    order_services._close(order, now=timezone.now(), kind="closed")
    real_refund, calls = SandboxGateway.refund, []

    def refuse_once(self, request):
        calls.append(request.out_refund_no)
        if len(calls) == 1:
            return RefundResult(out_refund_no=request.out_refund_no, state=RefundState.FAILED, failure="NOTENOUGH")
        return real_refund(self, request)

    monkeypatch.setattr(SandboxGateway, "refund", refuse_once)
    with django_capture_on_commit_callbacks(execute=True):
        assert notify(*late).status_code == 200
    with time_machine.travel(timezone.now() + dt.timedelta(minutes=11)):
        tasks.refunds_reconcile()

    assert SandboxTrade.objects.get(out_trade_no=order.out_trade_no).refunded_fen == 2_000, (
        "the late payment was never refunded", list(order.refunds.values_list("status", "failure")))


def test_a_paid_order_no_longer_offers_the_app_its_pay_params():
    """The shopper API documents pay_params as "empty once paid"."""
    shop = build_shop()
    shopper = Shopper(make_member())
    order = paid(shopper, shop, amount_fen=5_000)

    body = shopper.get(f"orders/{order.out_trade_no}/").json()

    assert body["status"] == "paid"
    assert body["pay_params"] == {}


@pytest.mark.django_db(transaction=True)
def test_a_slow_platform_opening_a_pos_qr_does_not_hold_the_database_for_everyone(wechat, api_key, settings):
    """POST /api/v1/orders/ opens the platform trade inside the Idempotency-Key
    transaction (``_once``): the database transaction stays open for the whole outbound
    call (up to PLATFORM_TIMEOUT_SECONDS). On the embedded SQLite default that is the
    write lock, so every payment notification and order in the mall waits for it."""
    settings.PLATFORM_TIMEOUT_SECONDS = 5  # the answer below comes in time, slowly
    slow_shop, shop = build_shop(), build_shop()
    member = make_member()
    waiting = order_of(Shopper(member).order(store_code=shop.store.code, amount_fen=5_000))
    payment = sandbox.trade_pay(out_trade_no=waiting.out_trade_no)

    def slow_unified_order(request):
        fields = {"return_code": "SUCCESS", "return_msg": "OK", "appid": "wx-oa-v2", "mch_id": "1900000109",
                  "nonce_str": secrets.token_hex(8), "result_code": "SUCCESS", "trade_type": "NATIVE",
                  "prepay_id": "wx-prepay-slow", "code_url": "weixin://wxpay/bizpayurl?pr=slow"}
        return Reply(body=wechat_pay_xml(fields, api_key=api_key), content_type="application/xml", delay=3.0)

    wechat.server.script("/pay/unifiedorder", slow_unified_order)
    def open_pos_qr():
        try:
            Api(slow_shop.raw_key, client=Client(raise_request_exception=False)).post(
                "/api/v1/orders/", {"store_code": slow_shop.store.code, "amount_fen": 3_800, "channel": "wechat"})
        finally:
            connection.close()

    pos = threading.Thread(target=open_pos_qr)
    pos.start()
    time.sleep(0.5)  # the POS's request is now waiting for the platform
    started = time.monotonic()
    answer = notify(*payment)
    took = time.monotonic() - started
    pos.join(timeout=30)

    assert answer.status_code == 200
    assert took < 1.0, f"a payment notification waited {took:.1f} s for another shop's platform call"


HOSTILE = {
    "wechat": ("/payments/notify/wechat/", "text/xml", [
        b"<xml>" + b"<a>" * 5_000 + b"</a>" * 5_000 + b"</xml>",
        b'<?xml version="1.0" encoding="UTF-16"?><xml><a>1</a></xml>',
        b"<xml><return_code>SUCCESS</return_code><appid>wx-oa-v2</appid><mch_id>1900000109</mch_id><sign>\xe4\xb8\xad</sign></xml>",
        b"<xml><return_code>SUCCESS</return_code><req_info>" + b"A" * 1000 + b"</req_info><appid>wx-oa-v2</appid>"
        b"<mch_id>1900000109</mch_id></xml>",
        b"<xml><return_code>SUCCESS</return_code><appid>wx-oa-v2</appid><mch_id>1900000109</mch_id>"
        b"<sign_type>HMAC-SHA256</sign_type><sign>00</sign><total_fee>1e9</total_fee></xml>",
    ]),
    "wechat_pay": ("/payments/notify/wechat/v3/", "application/json", [
        b'{"resource": {"ciphertext": "' + b"A" * 1000 + b'", "nonce": "x", "associated_data": null}}',
        b'{"event_type": "TRANSACTION.SUCCESS", "resource": []}', b"[" * 20_000, b'{"a": NaN}', b"\xef\xbb\xbf{}",
    ]),
    "alipay": ("/payments/notify/alipay/", "application/x-www-form-urlencoded; charset=utf-8", [
        b"charset=utf-7&sign=+AGEAYgBj-&app_id=x", b"sign=%ff%fe&charset=gbk&out_trade_no=%80",
        b"sign=a&sign=b", b"&".join(b"f%d=1" % i for i in range(300)), b"sign=" + b"%00" * 100,
        b"notify_type=trade_status_sync&sign_type=RSA&sign=AAAA&app_id=2021000000000000",
        b"sign=%E4%B8%AD%E6%96%87&charset=utf-8&sign_type=RSA2",
    ]),
}


@pytest.mark.parametrize("gateway, case", [(g, i) for g, (_, _, bodies) in HOSTILE.items() for i in range(len(bodies))])
def test_hostile_bodies_on_configured_gateways_are_refused_without_a_500(request, gateway, case):
    request.getfixturevalue(gateway)
    if gateway == "wechat":
        request.getfixturevalue("api_key")
    path, content_type, bodies = HOSTILE[gateway]
    headers = {"Wechatpay-Timestamp": "9" * 400, "Wechatpay-Nonce": "\u202e", "Wechatpay-Signature": "%%%",
               "Wechatpay-Serial": "PUB_KEY_ID_" + "x" * 300} if gateway == "wechat_pay" else {}

    response = Client(raise_request_exception=False).post(path, data=bodies[case], content_type=content_type, headers=headers)

    assert response.status_code in (200, 400), (response.status_code, response.content[:200])
    assert response.content not in (b"success", b"")  # never acknowledged as processed
    assert PaymentNotification.objects.get().outcome == "rejected"


# --- 7. the merchant API's Idempotency-Key contract on order refunds ------------------------------


def test_a_refund_key_reused_on_another_order_is_a_conflict_as_on_every_merchant_post():
    """README: "the same key with another body is 409 idempotency_conflict" (purchase
    refunds, which go through the same ApiRequest replay store, answer so). Order refunds
    keep keys per order, so a POS that reuses a key refunds a second order."""
    shop = build_shop()
    shopper = Shopper(make_member())
    first, second = paid(shopper, shop, amount_fen=5_000), paid(shopper, shop, amount_fen=5_000)

    assert refund_via_api(shop, first, 5_000, key="till-7").status_code == 201
    again = refund_via_api(shop, second, 5_000, key="till-7")

    assert (again.status_code, again.json().get("code")) == (409, "idempotency_conflict")
    assert Order.objects.get(pk=second.pk).refunded_fen == 0


def test_a_refund_key_reused_with_another_reason_is_a_conflict():
    shop = build_shop()
    order = paid(Shopper(make_member()), shop, amount_fen=5_000)
    pos = Api(shop.raw_key)

    pos.post(f"/api/v1/orders/{order.out_trade_no}/refunds/", {"amount_fen": 1_000, "reason": "damaged"}, key="k")
    again = pos.post(f"/api/v1/orders/{order.out_trade_no}/refunds/", {"amount_fen": 1_000, "reason": "changed mind"}, key="k")

    assert (again.status_code, again.json().get("code")) == (409, "idempotency_conflict")


# --- 8. no limit on how many orders a shopper opens -----------------------------------------------


def test_one_shopper_token_cannot_open_orders_without_limit():
    """Every order opens a trade at the payment platform (an outbound call under the
    mall's merchant number, which the platform rate-limits) and a row here; the shopper
    API has no throttle (ShopperApiView.throttle_classes = []), so one token can exhaust
    the mall's quota at WeChat Pay / Alipay for every shop."""
    shop = build_shop()
    shopper = Shopper(make_member(), client=Client(raise_request_exception=False))

    codes = [shopper.order(store_code=shop.store.code, amount_fen=100).status_code for _ in range(121)]

    assert 429 in codes, f"{codes.count(201)} orders opened in a row"


@pytest.mark.parametrize("amount, points", [
    ("NaN", "0"), ("Infinity", "0"), ("sNaN", "0"), ("-5", "0"), ("0.001", "0"), ("1e-999999", "0"), ("1,00", "0"),
    ("5", "-1"), ("5", "١٢"), ("5", "9" * 12), ("5", "1e3"), ("99999999999999.9", "0"), ("\x00", "0"), ("5", "600"),
])
def test_odd_amounts_and_points_on_the_pay_page_are_a_form_error(amount, points):
    shop = build_shop()
    member = make_member()
    grant(member, 500)
    client = log_in(Client(raise_request_exception=False), member)

    response = client.post(f"/m/pay/{shop.store.code}/", {"amount": amount, "points": points, "channel": "sandbox"})

    assert response.status_code == 400, response.status_code
    assert not Order.objects.exists() and balance(member) == 500


# --- 9. partial refunds stop adding up once one of them fails (WeChat Pay APIv3 on the fake server) -


def test_partial_refunds_still_add_up_exactly_after_one_of_them_failed(wechat_pay, keys):
    """Each refund's cash and points are cumulative roundings from ``refunded_fen``, which
    counts pending refunds and drops failed ones: a refund that fails after another was
    asked shifts the base, and the last refund then asks for more points than the order
    used. Its success can never be settled: WeChat Pay has refunded the cash, the
    notification errs ("try again") for ever, and the order never completes."""
    shop = build_shop()
    member = v3_shopper(points=7_000)
    order = v3_order(shop, member, amount_fen=10_000, points_to_use=7_000)  # ¥30 cash, 7000 points
    assert v3_notify(*v3_notification(keys, _transaction(keys, order))).status_code == 204
    wechat_pay.answer(REFUNDS_PATH, _refunds_answer(wechat_pay, "PROCESSING"))
    pos = Api(shop.raw_key)

    def ask(amount_fen, key):
        response = pos.post(f"/api/v1/orders/{order.out_trade_no}/refunds/", {"amount_fen": amount_fen}, key=key)
        assert response.status_code == 201, response.content
        return OrderRefund.objects.get(out_refund_no=response.json()["out_refund_no"])

    def settle(refund, status, event_type):
        return v3_notify(*_refund_notification(keys, _refund_resource(keys, refund, status), event_type=event_type))

    first, second = ask(4, "r1"), ask(4, "r2")
    assert settle(first, "ABNORMAL", "REFUND.ABNORMAL").status_code == 204  # the payer's card was closed
    assert settle(second, "SUCCESS", "REFUND.SUCCESS").status_code == 204
    rest = ask(Order.objects.get(pk=order.pk).amount_fen - Order.objects.get(pk=order.pk).refunded_fen, "r3")

    answer = settle(rest, "SUCCESS", "REFUND.SUCCESS")

    asked = order.refunds.exclude(status="failed").order_by("pk")
    assert (sum(r.cash_fen for r in asked), sum(r.points for r in asked)) == (3_000, 7_000), (
        [(r.out_refund_no, r.status, r.cash_fen, r.points) for r in order.refunds.order_by("pk")])
    assert answer.status_code == 204, (answer.status_code, PaymentNotification.objects.last().reason)
    order.refresh_from_db()
    assert order.status == "refunded"
    assert balance(member) == 7_000
    assert_ledger_invariants()
