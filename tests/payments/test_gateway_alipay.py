"""Paying a shop through Alipay: the H5 page's wap pay, the POS's precreate QR, the
mini-program's trade.create; the signed form notification at /payments/notify/alipay/;
stale orders closed, refunds answered synchronously. Alipay is the local fake server,
with RSA keys made for the test session: it checks our signature on every call and
signs its answers and notifications with its own key."""

import base64
import json
from datetime import datetime, timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
import time_machine
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from django.test import Client, override_settings
from django.utils import timezone

from core.platforms import ALIPAY_TIMEZONE, PlatformRejected
from members import ledger, web_auth
from members.models import Identity, Visit
from payments import tasks
from payments.gateways import ChargeRequest, RefundState, TradeState, gateway_for
from payments.models import Order, OrderEvent, OrderRefund, PaymentNotification
from tests.factories import assert_ledger_invariants, make_member
from tests.fakes.platform_server import (
    Reply,
    alipay_request_signature_valid,
    alipay_signed_response,
    json_reply,
    rsa_key_pair,
)
from tests.payments.conftest import Api, build_shop
from tests.payments.orders_support import Shopper, order_pushes

pytestmark = pytest.mark.django_db

APP_ID = "2021000000000001"
SELLER_ID = "2088000000000001"
BUYER_ID = "2088102177846875"
BUYER_OPEN_ID = "074a1CcTG1LelxKe4xQC0zgNdId0nxi95b5lsNpazWYoCo5"
NOTIFY_PATH = "/payments/notify/alipay/"


# --- The fake Alipay ------------------------------------------------------------------


class FakeAlipay:
    """Alipay's gateway: refuses a request our app key did not sign (unsigned, as Alipay
    does), answers each method from its script, signed with Alipay's key."""

    def __init__(self, server, app_keys, alipay_keys):
        self.server, self.app_keys, self.alipay_keys = server, app_keys, alipay_keys
        self._answers: dict[str, dict] = {}
        server.script("/gateway.do", self._answer)

    def answer(self, method: str, **payload) -> None:
        self._answers[method] = {"code": "10000", "msg": "Success", **payload}

    def refuse(self, method: str, sub_code: str) -> None:
        self._answers[method] = {"code": "40004", "msg": "Business Failed", "sub_code": sub_code, "sub_msg": sub_code}

    def _answer(self, request) -> Reply:
        form = request.form
        if request.method != "POST" or not alipay_request_signature_valid(form, self.app_keys.public_pem):
            return json_reply({"error_response": {"code": "40002", "msg": "Invalid Arguments",
                                                  "sub_code": "isv.invalid-signature"}})
        payload = self._answers.get(form["method"])
        if payload is None:
            return json_reply({"fake": f"no answer for {form['method']}"}, status=404)
        response_key = form["method"].replace(".", "_") + "_response"
        return Reply(body=alipay_signed_response(response_key, payload, self.alipay_keys.private_pem))

    def calls(self, method: str | None = None) -> list[dict]:
        """The forms we POSTed (``biz`` holding biz_content parsed), in order."""
        forms = [request.form for request in self.server.requests_to("/gateway.do")]
        return [{**form, "biz": json.loads(form.get("biz_content", "{}"))}
                for form in forms if method is None or form["method"] == method]

    def methods(self) -> list[str]:
        return [call["method"] for call in self.calls()]


@pytest.fixture
def alipay(platform_server, app_keys, alipay_keys):
    with override_settings(
        **platform_server.settings(),
        ALIPAY_APP_ID=APP_ID,
        ALIPAY_APP_PRIVATE_KEY=app_keys.private_pem,
        ALIPAY_PUBLIC_KEY=alipay_keys.public_pem,
        ALIPAY_SELLER_ID=SELLER_ID,
        PLATFORM_TIMEOUT_SECONDS=2,
        O2O_PUBLIC_BASE_URL="",
    ):
        yield FakeAlipay(platform_server, app_keys, alipay_keys)


# --- Notifications, as Alipay sends them ----------------------------------------------


def _rsa2(content: bytes, private_pem: str) -> str:
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    return base64.b64encode(key.sign(content, padding.PKCS1v15(), hashes.SHA256())).decode()


def notification_fields(order: Order | None = None, *, private_pem: str, **overrides) -> dict[str, str]:
    """A trade_status_sync notification of ``order`` paid, signed as Alipay signs it:
    every field but sign and sign_type, sorted, ``k=v&…``, in the notification's charset.
    ``None`` in overrides removes a field."""
    now = timezone.now().astimezone(ALIPAY_TIMEZONE).strftime("%Y-%m-%d %H:%M:%S")
    fields = {
        "notify_time": now, "notify_type": "trade_status_sync", "notify_id": "2024a1b2c3d4e5f6", "charset": "utf-8",
        "version": "1.0", "sign_type": "RSA2", "app_id": APP_ID, "auth_app_id": APP_ID,
        "trade_no": f"20240501220014{order.pk if order else 0:014d}", "out_trade_no": order.out_trade_no if order else "P0",
        "trade_status": "TRADE_SUCCESS", "total_amount": _yuan(order.payable_fen) if order else "1.00",
        "receipt_amount": _yuan(order.payable_fen) if order else "1.00", "buyer_id": BUYER_ID, "seller_id": SELLER_ID,
        "subject": "商场一号店", "gmt_create": now, "gmt_payment": now, "fund_bill_list": '[{"amount":"1.00","fundChannel":"ALIPAYACCOUNT"}]',
    }
    for name, value in overrides.items():
        if value is None:
            fields.pop(name, None)
        else:
            fields[name] = value
    content = "&".join(f"{name}={fields[name]}" for name in sorted(fields) if name not in ("sign", "sign_type"))
    charset = "gbk" if fields.get("charset") == "gbk" else "utf-8"
    return {**fields, "sign": _rsa2(content.encode(charset), private_pem)}


def _yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def form_body(fields: dict[str, str], charset: str = "utf-8") -> bytes:
    return urlencode(fields, encoding=charset).encode("ascii")


def notify(body: bytes, *, content_type: str = "application/x-www-form-urlencoded; charset=utf-8"):
    return Client().post(NOTIFY_PATH, data=body, content_type=content_type)


def log_in(client: Client, member) -> None:
    session = client.session
    session[web_auth.SESSION_MEMBER] = member.pk
    session.save()


def miniapp_order(alipay, *, shop, member, amount_fen: int, points: int = 0) -> Order:
    """An order the mini-program opened with alipay.trade.create (member holds an Alipay identity)."""
    if not member.identities.filter(channel=Identity.Channel.ALIPAY_USER_ID).exists():
        Identity.objects.create(member=member, channel=Identity.Channel.ALIPAY_USER_ID, external_id=BUYER_ID)
    alipay.answer("alipay.trade.create", out_trade_no="-", trade_no="2024050122001446751234567890")
    body = {"points_to_use": points} if points else {}
    response = Shopper(member).order(store_code=shop.store.code, amount_fen=amount_fen, channel="alipay", **body)
    assert response.status_code == 201, response.content
    return Order.objects.get(out_trade_no=response.json()["out_trade_no"])


def paid_order(alipay, alipay_keys, *, shop, member, amount_fen: int, points: int = 0) -> Order:
    order = miniapp_order(alipay, shop=shop, member=member, amount_fen=amount_fen, points=points)
    answer = notify(form_body(notification_fields(order, private_pem=alipay_keys.private_pem)))
    assert answer.content == b"success"
    order.refresh_from_db()
    assert order.status == "paid"
    return order


# --- 1. The H5 flow -------------------------------------------------------------------


def test_h5_pay_redirects_to_a_signed_wap_pay_url_and_the_notification_pays_once(alipay, app_keys, alipay_keys, platform_server):
    shop = build_shop()
    member = make_member()
    ledger.points_grant(member=member, points=1_000, reason="gift", idempotency_key="g")
    browser = Client()
    log_in(browser, member)

    response = browser.post(f"/m/pay/{shop.store.code}/", {"amount": "68.00", "points": "800", "channel": "alipay"})

    assert response.status_code == 302, response.content[:500]
    order = Order.objects.get()
    assert (order.gateway, order.client, order.payable_fen, order.points_used) == ("alipay", "wap", 6_000, 800)
    location = response["Location"]
    assert location.startswith(platform_server.url + "gateway.do?")
    params = dict(parse_qsl(urlsplit(location).query, keep_blank_values=True))
    assert alipay_request_signature_valid(params, app_keys.public_pem)
    assert (params["method"], params["app_id"], params["sign_type"], params["charset"]) == (
        "alipay.trade.wap.pay", APP_ID, "RSA2", "utf-8")
    assert params["notify_url"] == "http://testserver" + NOTIFY_PATH
    biz = json.loads(params["biz_content"])
    assert (biz["out_trade_no"], biz["total_amount"], biz["product_code"]) == (order.out_trade_no, "60.00", "QUICK_WAP_WAY")
    assert biz["time_expire"] == order.expires_at.astimezone(ALIPAY_TIMEZONE).strftime("%Y-%m-%d %H:%M:%S")
    assert order.pay_params == {"pay_url": location}
    assert platform_server.requests_to("/gateway.do") == []  # the browser opens it, we call nothing
    assert ledger.member_points_balance(member=member) == 200

    fields = notification_fields(order, private_pem=alipay_keys.private_pem)
    answer = notify(form_body(fields))

    assert (answer.status_code, answer.content, answer["Content-Type"]) == (200, b"success", "text/plain; charset=utf-8")
    order.refresh_from_db()
    assert order.status == "paid" and order.transaction_id == fields["trade_no"] and order.payer_id == BUYER_ID
    assert order.paid_at == datetime.strptime(fields["gmt_payment"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=ALIPAY_TIMEZONE)
    assert order.earn.points == 60 and order.earn.idempotency_key == f"pay:alipay:{fields['trade_no']}"
    assert ledger.member_points_balance(member=member) == 260
    assert len(order_pushes(order)) == 1
    assert Visit.objects.filter(member=member, kind="payment", store=shop.store).count() == 1
    assert [e.kind for e in OrderEvent.objects.filter(order=order)] == ["created", "paid"]
    note = PaymentNotification.objects.get()
    assert (note.gateway, note.outcome, note.kind, note.order, note.transaction_id) == (
        "alipay", "processed", "payment", order, fields["trade_no"])
    assert_ledger_invariants()


def test_a_gbk_notification_is_verified_over_its_gbk_bytes(alipay, alipay_keys):
    shop = build_shop()
    order = miniapp_order(alipay, shop=shop, member=make_member(), amount_fen=3_000)
    fields = notification_fields(order, private_pem=alipay_keys.private_pem, charset="gbk", subject="商场·一号店")

    answer = notify(form_body(fields, "gbk"), content_type="application/x-www-form-urlencoded; charset=gbk")

    assert answer.content == b"success"
    order.refresh_from_db()
    assert order.status == "paid"


# --- 2. Duplicates --------------------------------------------------------------------


def test_a_repeated_notification_is_acknowledged_and_moves_nothing_again(alipay, alipay_keys):
    shop = build_shop()
    member = make_member()
    order = paid_order(alipay, alipay_keys, shop=shop, member=member, amount_fen=5_000)
    assert ledger.member_points_balance(member=member) == 50

    again = notify(form_body(notification_fields(order, private_pem=alipay_keys.private_pem, notify_id="other")))

    assert (again.status_code, again.content) == (200, b"success")
    assert ledger.member_points_balance(member=member) == 50 and len(order_pushes(order)) == 1
    assert list(PaymentNotification.objects.order_by("pk").values_list("outcome", flat=True)) == ["processed", "duplicate"]
    assert [e.kind for e in order.events.all()] == ["created", "paid"]
    assert_ledger_invariants()


# --- 3. Forged, mismatched, malformed -------------------------------------------------


def test_forged_mismatched_and_malformed_notifications_change_nothing_and_answer_failure(alipay, alipay_keys):
    shop = build_shop()
    member = make_member()
    ledger.points_grant(member=member, points=500, reason="gift", idempotency_key="g")
    order = miniapp_order(alipay, shop=shop, member=member, amount_fen=6_800, points=500)
    key = alipay_keys.private_pem
    good = notification_fields(order, private_pem=key)
    impostor = rsa_key_pair().private_pem
    undecodable = notification_fields(order, private_pem=key, subject="x")
    gbk_in_utf8 = form_body(undecodable).replace(b"subject=x", b"subject=%C9%CC%B3%A1")  # GBK bytes, charset utf-8
    attempts = [
        ("signature_invalid", form_body(notification_fields(order, private_pem=impostor))),
        ("signature_invalid", form_body({**good, "total_amount": "0.01"})),
        ("signature_missing", form_body({name: value for name, value in good.items() if name != "sign"})),
        ("app_mismatch", form_body(notification_fields(order, private_pem=key, app_id="2021000000000999"))),
        ("merchant_mismatch", form_body(notification_fields(order, private_pem=key, seller_id="2088000000000999"))),
        ("amount_mismatch", form_body(notification_fields(order, private_pem=key, total_amount="0.01"))),
        ("order_not_found", form_body(notification_fields(order, private_pem=key, out_trade_no="P20240101deadbeef"))),
        ("malformed", form_body(notification_fields(order, private_pem=key, total_amount="63.005"))),
        ("malformed", form_body(notification_fields(order, private_pem=key, total_amount="12.345"))),
        ("charset", gbk_in_utf8),
        ("charset", form_body(notification_fields(order, private_pem=key, charset="big5"))),
        ("malformed", form_body({**good, "total_amount": "63.00"}) + b"&total_amount=1.00"),
        ("malformed", json.dumps(good).encode()),
        ("malformed", b""),
    ]

    for reason, body in attempts:
        answer = notify(body)
        assert (answer.status_code, answer.content) == (200, b"failure"), reason
    json_answer = notify(json.dumps(good).encode(), content_type="application/json")

    assert (json_answer.status_code, json_answer.content) == (200, b"failure")
    order.refresh_from_db()
    assert (order.status, order.transaction_id, order.earn) == ("created", "", None)
    assert ledger.member_points_balance(member=member) == 0  # still held, not captured
    assert order_pushes(order) == []
    notes = PaymentNotification.objects.order_by("pk")
    assert [note.reason for note in notes] == [reason for reason, _ in attempts] + ["malformed"]
    assert {note.outcome for note in notes} == {"rejected"}
    assert_ledger_invariants()


@pytest.mark.parametrize("body", [b"a=" + b"x" * 70_000, b"notify_type=trade_status_sync&a=\0"], ids=["huge", "nul-byte"])
def test_an_oversized_or_nul_carrying_body_is_refused_without_a_500(alipay, settings, body):
    settings.PAYMENT_NOTIFY_MAX_BYTES = 65_536

    answer = notify(body)

    assert (answer.status_code, answer.content) == (200, b"failure")
    assert PaymentNotification.objects.get().reason == ("too_large" if len(body) > 65_536 else "signature_missing")


def test_waiting_and_closed_notifications_are_acknowledged_without_paying(alipay, alipay_keys):
    shop = build_shop()
    order = miniapp_order(alipay, shop=shop, member=make_member(), amount_fen=2_000)

    waiting = notify(form_body(notification_fields(order, private_pem=alipay_keys.private_pem, trade_status="WAIT_BUYER_PAY",
                                                   gmt_payment=None)))
    closed = notify(form_body(notification_fields(order, private_pem=alipay_keys.private_pem, trade_status="TRADE_CLOSED",
                                                  gmt_payment=None, gmt_close="2024-05-01 12:00:00")))

    assert (waiting.content, closed.content) == (b"success", b"success")
    order.refresh_from_db()
    assert order.status == "created"
    assert list(PaymentNotification.objects.order_by("pk").values_list("reason", flat=True)) == ["state_pending", "state_closed"]


# --- 4. Stale orders ------------------------------------------------------------------


def test_a_stale_order_is_queried_closed_at_alipay_and_here_and_its_points_come_back(alipay):
    shop = build_shop()
    member = make_member()
    ledger.points_grant(member=member, points=1_000, reason="gift", idempotency_key="g")
    order = miniapp_order(alipay, shop=shop, member=member, amount_fen=2_000, points=500)
    alipay.answer("alipay.trade.query", out_trade_no=order.out_trade_no, trade_no="2024050122001446751234567890",
                  trade_status="WAIT_BUYER_PAY", total_amount="15.00", buyer_user_id=BUYER_ID)
    alipay.answer("alipay.trade.close", out_trade_no=order.out_trade_no, trade_no="2024050122001446751234567890")

    with time_machine.travel(timezone.now() + timedelta(minutes=14)):
        assert tasks.orders_close_stale() == 0
    with time_machine.travel(timezone.now() + timedelta(minutes=16)):
        assert tasks.orders_close_stale() == 1

    order.refresh_from_db()
    assert order.status == "closed"
    assert alipay.methods() == ["alipay.trade.create", "alipay.trade.query", "alipay.trade.close"]
    assert alipay.calls("alipay.trade.close")[0]["biz"] == {"out_trade_no": order.out_trade_no}
    assert ledger.member_points_balance(member=member) == 1_000
    assert_ledger_invariants()


def test_a_stale_order_alipay_never_heard_of_is_closed_here_without_closing_there(alipay):
    shop = build_shop()
    member = make_member()
    ledger.points_grant(member=member, points=300, reason="gift", idempotency_key="g")
    order = miniapp_order(alipay, shop=shop, member=member, amount_fen=2_000, points=300)
    alipay.refuse("alipay.trade.query", "ACQ.TRADE_NOT_EXIST")

    with time_machine.travel(timezone.now() + timedelta(minutes=16)):
        assert tasks.orders_close_stale() == 1

    order.refresh_from_db()
    assert order.status == "closed"
    assert alipay.methods() == ["alipay.trade.create", "alipay.trade.query"]
    assert ledger.member_points_balance(member=member) == 300
    assert_ledger_invariants()


def test_a_stale_order_alipay_says_is_paid_is_booked_not_closed(alipay):
    """trade.query names no seller; with ALIPAY_SELLER_ID set the mall's own trade still books."""
    shop = build_shop()
    member = make_member()
    order = miniapp_order(alipay, shop=shop, member=member, amount_fen=2_000)
    alipay.answer("alipay.trade.query", out_trade_no=order.out_trade_no, trade_no="2024050122001446750000000001",
                  trade_status="TRADE_SUCCESS", total_amount="20.00", buyer_user_id=BUYER_ID,
                  send_pay_date="2024-05-01 12:00:00")

    with time_machine.travel(timezone.now() + timedelta(minutes=16)):
        assert tasks.orders_close_stale() == 0

    order.refresh_from_db()
    assert (order.status, order.transaction_id) == ("paid", "2024050122001446750000000001")
    assert ledger.member_points_balance(member=member) == 20
    assert "alipay.trade.close" not in alipay.methods()
    assert_ledger_invariants()


# --- 5. Refunds -----------------------------------------------------------------------


def test_a_refund_is_answered_at_once_and_moves_points_in_proportion(alipay, alipay_keys):
    shop = build_shop()
    member = make_member()
    ledger.points_grant(member=member, points=1_000, reason="gift", idempotency_key="g")
    order = paid_order(alipay, alipay_keys, shop=shop, member=member, amount_fen=10_000, points=1_000)
    assert ledger.member_points_balance(member=member) == 90
    alipay.answer("alipay.trade.refund", trade_no=order.transaction_id, out_trade_no=order.out_trade_no,
                  buyer_logon_id="159****5620", fund_change="Y", refund_fee="45.00")

    pos = Api(shop.raw_key)
    half = pos.post(f"/api/v1/orders/{order.out_trade_no}/refunds/", {"amount_fen": 5_000, "reason": "退一半"}, key="r1")

    assert half.status_code == 201, half.content
    body = half.json()
    assert (body["status"], body["cash_fen"], body["points"], body["out_refund_no"]) == (
        "succeeded", 4_500, 500, f"{order.out_trade_no}R1")
    [call] = alipay.calls("alipay.trade.refund")
    assert call["biz"] == {"out_trade_no": order.out_trade_no, "refund_amount": "45.00",
                           "out_request_no": f"{order.out_trade_no}R1", "refund_reason": "退一半"}
    assert OrderRefund.objects.get().refund_id == f"{order.transaction_id}:{order.out_trade_no}R1"
    assert ledger.member_points_balance(member=member) == 90 - 45 + 500
    replay = pos.post(f"/api/v1/orders/{order.out_trade_no}/refunds/", {"amount_fen": 5_000, "reason": "退一半"}, key="r1")
    assert replay.json()["out_refund_no"] == body["out_refund_no"]
    assert len(alipay.calls("alipay.trade.refund")) == 1
    order.refresh_from_db()
    assert (order.status, order.refunded_fen) == ("partially_refunded", 5_000)
    assert_ledger_invariants()


def test_a_refund_alipay_had_made_before_is_confirmed_by_its_refund_query(alipay, alipay_keys):
    shop = build_shop()
    member = make_member()
    order = paid_order(alipay, alipay_keys, shop=shop, member=member, amount_fen=3_000)
    alipay.answer("alipay.trade.refund", trade_no=order.transaction_id, out_trade_no=order.out_trade_no, fund_change="N",
                  refund_fee="30.00")
    alipay.answer("alipay.trade.fastpay.refund.query", trade_no=order.transaction_id, out_trade_no=order.out_trade_no,
                  out_request_no=f"{order.out_trade_no}R1", refund_amount="30.00", total_amount="30.00",
                  refund_status="REFUND_SUCCESS")

    response = Api(shop.raw_key).post(f"/api/v1/orders/{order.out_trade_no}/refunds/", {"amount_fen": 3_000})

    assert response.json()["status"] == "succeeded"
    assert alipay.calls("alipay.trade.fastpay.refund.query")[0]["biz"]["out_request_no"] == f"{order.out_trade_no}R1"
    order.refresh_from_db()
    assert order.status == "refunded" and ledger.member_points_balance(member=member) == 0
    assert_ledger_invariants()


def test_a_refund_alipay_refuses_fails_and_gives_the_order_back_its_refundable_amount(alipay, alipay_keys):
    shop = build_shop()
    member = make_member()
    ledger.points_grant(member=member, points=1_000, reason="gift", idempotency_key="g")
    order = paid_order(alipay, alipay_keys, shop=shop, member=member, amount_fen=10_000, points=1_000)
    alipay.refuse("alipay.trade.refund", "ACQ.TRADE_HAS_FINISHED")

    response = Api(shop.raw_key).post(f"/api/v1/orders/{order.out_trade_no}/refunds/", {"amount_fen": 5_000})

    assert response.status_code == 201, response.content
    assert response.json()["status"] == "failed" and "ACQ.TRADE_HAS_FINISHED" in response.json()["failure"]
    order.refresh_from_db()
    assert (order.status, order.refunded_fen) == ("paid", 0)
    assert ledger.member_points_balance(member=member) == 90
    assert [e.kind for e in order.events.all()] == ["created", "paid", "refund_requested", "refund_failed"]
    assert_ledger_invariants()


def test_a_refund_alipay_cannot_say_the_fate_of_stays_pending_and_is_sent_again_under_its_number(alipay, alipay_keys):
    shop = build_shop()
    member = make_member()
    order = paid_order(alipay, alipay_keys, shop=shop, member=member, amount_fen=3_000)
    alipay.refuse("alipay.trade.refund", "ACQ.SYSTEM_ERROR")

    response = Api(shop.raw_key).post(f"/api/v1/orders/{order.out_trade_no}/refunds/", {"amount_fen": 1_000})

    assert response.json()["status"] == "pending"
    order.refresh_from_db()
    assert (order.refunded_fen, ledger.member_points_balance(member=member)) == (1_000, 30)

    # The first request did go through: Alipay answers the same number with no money moving.
    alipay.answer("alipay.trade.refund", trade_no=order.transaction_id, fund_change="N", refund_fee="10.00")
    alipay.answer("alipay.trade.fastpay.refund.query", trade_no=order.transaction_id, out_request_no=f"{order.out_trade_no}R1",
                  refund_amount="10.00", refund_status="REFUND_SUCCESS")
    with time_machine.travel(timezone.now() + timedelta(minutes=2)):
        assert tasks.refunds_reconcile() == 1

    assert [call["biz"]["out_request_no"] for call in alipay.calls("alipay.trade.refund")] == [f"{order.out_trade_no}R1"] * 2
    refund = OrderRefund.objects.get()
    assert (refund.status, refund.cash_fen) == ("succeeded", 1_000)
    assert ledger.member_points_balance(member=member) == 20
    assert_ledger_invariants()


def test_refund_notifications_are_acknowledged_without_moving_anything(alipay, alipay_keys):
    shop = build_shop()
    member = make_member()
    order = paid_order(alipay, alipay_keys, shop=shop, member=member, amount_fen=4_000)
    alipay.answer("alipay.trade.refund", trade_no=order.transaction_id, fund_change="Y", refund_fee="40.00")
    assert Api(shop.raw_key).post(f"/api/v1/orders/{order.out_trade_no}/refunds/", {"amount_fen": 4_000}).json()["status"] == "succeeded"
    refund = {"gmt_refund": "2024-05-01 12:30:00.123", "refund_fee": "40.00", "out_biz_no": f"{order.out_trade_no}R1"}

    closed = notify(form_body(notification_fields(order, private_pem=alipay_keys.private_pem, trade_status="TRADE_CLOSED",
                                                  gmt_close="2024-05-01 12:30:00", **refund)))
    partial = notify(form_body(notification_fields(order, private_pem=alipay_keys.private_pem, **refund)))

    assert (closed.content, partial.content) == (b"success", b"success")
    order.refresh_from_db()
    assert order.status == "refunded" and ledger.member_points_balance(member=member) == 0
    notes = list(PaymentNotification.objects.order_by("pk").values_list("kind", "outcome", "reason"))
    assert notes[1:] == [("other", "processed", "nothing_to_do"), ("payment", "duplicate", "")]
    assert_ledger_invariants()


# --- 6. The POS's QR and the mini-program ---------------------------------------------


@pytest.mark.parametrize(
    ("buyer", "channel"),
    [({"buyer_id": BUYER_ID}, "alipay_user_id"), ({"buyer_id": None, "buyer_open_id": BUYER_OPEN_ID}, "alipay_open_id")],
    ids=["user_id", "open_id"],
)
def test_a_pos_qr_is_precreated_and_its_payer_becomes_a_member_who_earns(alipay, alipay_keys, platform_server, buyer, channel):
    shop = build_shop()
    qr_code = platform_server.url + "qr/bax08861mwsqmkqrfwkf0065"
    alipay.answer("alipay.trade.precreate", out_trade_no="-", qr_code=qr_code)

    response = Api(shop.raw_key).post("/api/v1/orders/", {"store_code": shop.store.code, "amount_fen": 3_800,
                                                          "channel": "alipay", "order_ref": "POS-1"})

    assert response.status_code == 201, response.content
    assert response.json()["code_url"] == qr_code
    order = Order.objects.get(out_trade_no=response.json()["out_trade_no"])
    assert (order.client, order.member, order.pay_params) == ("native", None, {"code_url": qr_code})
    [call] = alipay.calls("alipay.trade.precreate")
    assert (call["biz"]["total_amount"], call["biz"]["out_trade_no"]) == ("38.00", order.out_trade_no)
    assert call["notify_url"] == "http://testserver" + NOTIFY_PATH and "app_auth_token" not in call

    external_id = buyer.get("buyer_open_id") or BUYER_ID
    answer = notify(form_body(notification_fields(order, private_pem=alipay_keys.private_pem, **buyer)))

    assert answer.content == b"success"
    order.refresh_from_db()
    identity = Identity.objects.get(channel=channel, external_id=external_id)
    assert order.status == "paid" and order.member == identity.member and order.payer_id == external_id
    assert order.earn.points == 38 and ledger.member_points_balance(member=identity.member) == 38
    assert len(order_pushes(order)) == 1
    assert_ledger_invariants()


def test_a_partner_shop_collects_with_its_own_app_auth_token(alipay, alipay_keys, platform_server):
    shop = build_shop()
    shop.merchant.alipay_app_auth_token = "202405BB-tenant-token"
    shop.merchant.save(update_fields=["alipay_app_auth_token"])
    alipay.answer("alipay.trade.precreate", out_trade_no="-", qr_code=platform_server.url + "qr/partner")

    response = Api(shop.raw_key).post("/api/v1/orders/", {"store_code": shop.store.code, "amount_fen": 1_000, "channel": "alipay"})
    order = Order.objects.get(out_trade_no=response.json()["out_trade_no"])
    # The tenant's own account collected: another seller than the mall's, and that is right.
    answer = notify(form_body(notification_fields(order, private_pem=alipay_keys.private_pem, seller_id="2088000000000777")))

    assert answer.content == b"success"
    assert alipay.calls("alipay.trade.precreate")[0]["app_auth_token"] == "202405BB-tenant-token"
    order.refresh_from_db()
    assert (order.collector, order.status) == ("partner", "paid")


@pytest.mark.parametrize(
    ("identity_channel", "external_id", "buyer_field"),
    [("alipay_user_id", BUYER_ID, "buyer_id"), ("alipay_open_id", BUYER_OPEN_ID, "buyer_open_id")],
    ids=["user_id", "open_id"],
)
def test_the_miniapp_opens_a_trade_for_its_alipay_user(alipay, identity_channel, external_id, buyer_field):
    shop = build_shop()
    member = make_member()
    Identity.objects.create(member=member, channel=identity_channel, external_id=external_id)
    alipay.answer("alipay.trade.create", out_trade_no="-", trade_no="2024050122001446759999999999")

    response = Shopper(member).order(store_code=shop.store.code, amount_fen=2_500, channel="alipay")

    assert response.status_code == 201, response.content
    assert response.json()["pay_params"] == {"trade_no": "2024050122001446759999999999"}
    [call] = alipay.calls("alipay.trade.create")
    biz = call["biz"]
    assert (biz[buyer_field], biz["total_amount"], biz["product_code"]) == (external_id, "25.00", "JSAPI_PAY")
    other_field = ({"buyer_id", "buyer_open_id"} - {buyer_field}).pop()
    assert other_field not in biz


def test_a_refused_trade_create_closes_the_order_and_gives_its_points_back(alipay):
    shop = build_shop()
    member = make_member()
    ledger.points_grant(member=member, points=100, reason="gift", idempotency_key="g")
    Identity.objects.create(member=member, channel=Identity.Channel.ALIPAY_USER_ID, external_id=BUYER_ID)
    alipay.refuse("alipay.trade.create", "ACQ.ACCESS_FORBIDDEN")

    response = Shopper(member).order(store_code=shop.store.code, amount_fen=2_500, channel="alipay", points_to_use=100)

    assert (response.status_code, response.json()["code"]) == (502, "platform_rejected")
    assert Order.objects.get().status == "closed"
    assert ledger.member_points_balance(member=member) == 100
    assert_ledger_invariants()


# --- The gateway itself ---------------------------------------------------------------


def _charge(**overrides) -> ChargeRequest:
    fields = {
        "out_trade_no": "P20240501abc", "amount_fen": 6_805, "description": "Tea & Cake/Shop", "client": "wap",
        "notify_url": "https://mall.test/payments/notify/alipay/", "time_expire": timezone.now() + timedelta(minutes=15),
    }
    return ChargeRequest(**{**fields, **overrides})


def test_a_wap_pay_url_carries_the_return_url_and_a_partner_token(alipay, app_keys, platform_server):
    request = _charge(return_url="https://mall.test/m/pay/orders/P20240501abc/", app_auth_token="tenant-token")

    url = gateway_for("alipay").charge(request).pay_params["pay_url"]

    assert url.startswith(platform_server.url + "gateway.do?")
    params = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
    assert alipay_request_signature_valid(params, app_keys.public_pem)
    assert (params["return_url"], params["notify_url"], params["app_auth_token"]) == (
        request.return_url, request.notify_url, "tenant-token")
    biz = json.loads(params["biz_content"])
    assert (biz["total_amount"], biz["subject"], biz["quit_url"]) == ("68.05", "Tea   Cake Shop", request.return_url)
    assert biz["time_expire"] == request.time_expire.astimezone(ALIPAY_TIMEZONE).strftime("%Y-%m-%d %H:%M:%S")


@pytest.mark.parametrize(
    ("status", "state", "amount_fen"),
    [("WAIT_BUYER_PAY", TradeState.PENDING, None), ("TRADE_SUCCESS", TradeState.PAID, 6_805),
     ("TRADE_FINISHED", TradeState.PAID, 6_805), ("TRADE_CLOSED", TradeState.CLOSED, None)],
)
def test_query_reads_alipays_trade_status(alipay, status, state, amount_fen):
    alipay.answer("alipay.trade.query", out_trade_no="P1", trade_no="T1", trade_status=status, total_amount="68.05",
                  buyer_open_id=BUYER_OPEN_ID, send_pay_date="2024-05-01 12:00:00")

    payment = gateway_for("alipay").query(out_trade_no="P1", app_auth_token="tenant-token")

    assert (payment.state, payment.amount_fen, payment.transaction_id) == (state, amount_fen, "T1")
    assert (payment.payer_id, payment.payer_channel, payment.seller_id) == (BUYER_OPEN_ID, "alipay_open_id", "")
    assert payment.paid_at == datetime(2024, 5, 1, 12, 0, tzinfo=ALIPAY_TIMEZONE)
    assert alipay.calls()[0]["app_auth_token"] == "tenant-token"


def test_close_accepts_a_trade_alipay_never_opened_and_refuses_to_hide_a_paid_one(alipay):
    gateway = gateway_for("alipay")
    alipay.refuse("alipay.trade.close", "ACQ.TRADE_NOT_EXIST")
    assert gateway.close(out_trade_no="P1") is None

    alipay.refuse("alipay.trade.close", "ACQ.TRADE_STATUS_ERROR")
    with pytest.raises(PlatformRejected) as caught:
        gateway.close(out_trade_no="P1")
    assert caught.value.platform_code == "ACQ.TRADE_STATUS_ERROR"


@pytest.mark.parametrize(
    ("payload", "state", "failure"),
    [({"out_request_no": "P1R1", "refund_amount": "10.00", "refund_status": "REFUND_SUCCESS"}, RefundState.SUCCEEDED, ""),
     ({}, RefundState.FAILED, "no such refund"),
     ({"out_request_no": "P1R1", "refund_amount": "10.00"}, RefundState.PENDING, "")],
    ids=["succeeded", "unknown", "in-progress"],
)
def test_refund_query_reads_the_refund_status(alipay, payload, state, failure):
    alipay.answer("alipay.trade.fastpay.refund.query", trade_no="T1", out_trade_no="P1", **payload)

    result = gateway_for("alipay").refund_query(out_trade_no="P1", out_refund_no="P1R1")

    assert (result.state, result.failure) == (state, failure)
    assert result.refund_fen == (1_000 if state == RefundState.SUCCEEDED else None)
