"""Orders paid through WeChat Pay APIv3 (payments.gateways.wechat_v3) against the local
fake of WeChat Pay (tests/fakes/wechat_pay_v3.py), with keys made for the test: the
prepay request, the signed and encrypted notification through /payments/notify/wechat/v3/,
points once, closing, refunds and their notifications, and everything forged refused."""

import base64
import json
import secrets
import time
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.test import Client
from django.utils import timezone

from core.platforms import PlatformBadResponse, PlatformRejected, PlatformUnavailable
from core.platforms import wechat_pay_v3 as v3
from members import ledger
from members.models import Identity, Member, PointsTransaction, Visit
from payments import tasks
from payments.gateways import ChargeRequest, NotificationRejected, RefundRequest, RefundState, TradeState, gateway_for
from payments.gateways.wechat_v3 import WeChatPayV3Gateway, refusal_reason
from payments.models import Order, OrderRefund, PaymentNotification
from tests.factories import assert_ledger_invariants, make_member
from tests.fakes.platform_server import Reply, json_reply, rsa_key_pair
from tests.fakes.wechat_pay_v3 import (
    FakeWeChatPayV3,
    encrypt_resource,
    notification,
    notification_body,
    request_signature_valid,
    rsa_sha256_valid,
    signed_headers,
    wechat_pay_v3_keys,
)
from tests.payments.conftest import Api, build_shop
from tests.payments.orders_support import Shopper, order_pushes

pytestmark = pytest.mark.django_db

OFFICIAL_APPID = "wx0fficia1acc0unt"
MINIAPP_APPID = "wxm1n1pr0gram0001"
SITE = "https://mall.example.com"
NOTIFY_PATH = "/payments/notify/wechat/v3/"
SUCCESS_TIME = "2025-06-08T10:34:56+08:00"
REFUNDS_PATH = "/v3/refund/domestic/refunds"


@pytest.fixture(scope="module")
def keys():
    return wechat_pay_v3_keys()


@pytest.fixture
def wechat_pay(platform_server, keys, settings):
    """The fake, configured as WeChat Pay, opening JSAPI and Native trades."""
    fake = FakeWeChatPayV3(platform_server, keys)
    for name, value in fake.settings().items():
        setattr(settings, name, value)
    settings.WECHAT_APP_ID = OFFICIAL_APPID
    settings.WECHAT_MINIAPP_ID = MINIAPP_APPID
    settings.O2O_PUBLIC_BASE_URL = SITE
    settings.PLATFORM_TIMEOUT_SECONDS = 2
    for kind in ("jsapi", "native"):
        for prefix in ("/v3/pay/transactions/", "/v3/pay/partner/transactions/"):
            fake.answer(prefix + kind, _opened(fake, kind))
    return fake


def _opened(fake, kind):
    def respond(request):
        if kind == "native":
            return fake.reply({"code_url": "weixin://wxpay/bizpayurl?pr=" + secrets.token_hex(4)})
        return fake.reply({"prepay_id": "wx" + secrets.token_hex(15)})

    return respond


def _shopper(*, points: int = 0, openid: str = "oMiniPayer0001") -> Member:
    member = make_member()
    Identity.objects.create(member=member, channel=Identity.Channel.MINIAPP_OPENID, external_id=openid)
    if points:
        ledger.points_grant(member=member, points=points, reason="gift", idempotency_key=f"gift:{member.pk}")
    return member


def _order(shop, member, *, amount_fen: int = 10_000, points_to_use: int = 0) -> Order:
    response = Shopper(member).order(store_code=shop.store.code, amount_fen=amount_fen, channel="wechat",
                                     points_to_use=points_to_use)
    assert response.status_code == 201, response.content
    return Order.objects.get(out_trade_no=response.json()["out_trade_no"])


def _transaction(keys, order: Order, **overrides) -> dict:
    """The TRANSACTION.SUCCESS resource WeChat Pay sends for ``order`` (direct mode)."""
    payload = {
        "mchid": keys.mch_id,
        "appid": MINIAPP_APPID,
        "out_trade_no": order.out_trade_no,
        "transaction_id": "42000" + "".join(secrets.choice("0123456789") for _ in range(23)),
        "trade_type": "JSAPI",
        "trade_state": "SUCCESS",
        "trade_state_desc": "支付成功",
        "bank_type": "OTHERS",
        "attach": "",
        "success_time": SUCCESS_TIME,
        "payer": {"openid": order.payer_id or "oMiniPayer0001"},
        "amount": {"total": order.payable_fen, "payer_total": order.payable_fen, "currency": "CNY",
                   "payer_currency": "CNY"},
    }
    payload.update(overrides)
    return payload


def _refund_resource(keys, refund: OrderRefund, status: str) -> dict:
    order = refund.order
    return {
        "mchid": keys.mch_id,
        "out_trade_no": order.out_trade_no,
        "transaction_id": order.transaction_id,
        "out_refund_no": refund.out_refund_no,
        "refund_id": "50300" + "".join(secrets.choice("0123456789") for _ in range(24)),
        "refund_status": status,
        "success_time": SUCCESS_TIME,
        "user_received_account": "支付用户零钱",
        "amount": {"total": order.payable_fen, "refund": refund.cash_fen, "payer_total": order.payable_fen,
                   "payer_refund": refund.cash_fen},
    }


def _refund_notification(keys, resource: dict, *, event_type: str) -> tuple[dict, bytes]:
    """As WeChat Pay sends refunds: associated_data and original_type "refund"."""
    sealed = encrypt_resource(json.dumps(resource, ensure_ascii=False).encode(), keys.api_v3_key,
                              associated_data="refund")
    body = notification_body({**sealed, "original_type": "refund"}, event_type=event_type)
    return signed_headers(body, keys), body


def _notify(headers: dict, body: bytes):
    return Client().post(NOTIFY_PATH, data=body, content_type="application/json", headers=headers)


def _signed(keys, resource) -> tuple[dict, bytes]:
    """A notification WeChat Pay signed around ``resource`` (a dict as sent, tampered or not)."""
    body = notification_body(resource)
    return signed_headers(body, keys), body


def _balance(member: Member) -> int:
    return ledger.member_points_balance(member=member)


def _query_path(order: Order) -> str:
    return f"/v3/pay/transactions/out-trade-no/{order.out_trade_no}"


# --- 1. Paying from the mini-program ------------------------------------------------------------


def test_a_miniapp_order_opens_a_signed_jsapi_trade_and_its_notification_pays_it_once(wechat_pay, keys):
    shop = build_shop()
    member = _shopper(points=1_000, openid="oMiniHappy01")

    response = Shopper(member).order(store_code=shop.store.code, amount_fen=10_000, channel="wechat", points_to_use=800)

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["status"], body["payable_fen"], body["points_used"]) == ("created", 9_200, 800)
    order = Order.objects.get(out_trade_no=body["out_trade_no"])
    assert (order.gateway, order.client, order.payer_id) == ("wechat_v3", "miniapp", "oMiniHappy01")
    [prepay] = wechat_pay.requests_to("/v3/pay/transactions/jsapi")
    assert request_signature_valid(prepay, keys)
    sent = prepay.json()
    assert (sent["appid"], sent["mchid"], sent["out_trade_no"]) == (MINIAPP_APPID, keys.mch_id, order.out_trade_no)
    assert sent["amount"] == {"total": 9_200, "currency": "CNY"}
    assert sent["payer"] == {"openid": "oMiniHappy01"}
    assert sent["notify_url"] == SITE + NOTIFY_PATH
    assert datetime.fromisoformat(sent["time_expire"]) == order.expires_at.replace(microsecond=0)
    params = body["pay_params"]
    assert (params["appId"], params["signType"]) == (MINIAPP_APPID, "RSA")
    assert params["package"].startswith("prepay_id=wx")
    signed = f"{params['appId']}\n{params['timeStamp']}\n{params['nonceStr']}\n{params['package']}\n".encode()
    assert rsa_sha256_valid(signed, params["paySign"], keys.merchant.public_pem)
    assert _balance(member) == 200

    paid = _transaction(keys, order, payer={"openid": "oMiniHappy01"})
    answer = _notify(*notification(keys, paid))

    assert (answer.status_code, answer.content) == (204, b"")
    order.refresh_from_db()
    assert (order.status, order.transaction_id) == ("paid", paid["transaction_id"])
    assert order.paid_at == datetime(2025, 6, 8, 2, 34, 56, tzinfo=UTC)
    # 92 points for ¥92 paid at 1 %, under the payment's own key.
    assert (order.earn.points, order.earn.idempotency_key) == (92, f"pay:wechat:{paid['transaction_id']}")
    assert _balance(member) == 292
    assert len(order_pushes(order)) == 1
    assert Visit.objects.filter(member=member, kind="payment", store=shop.store).count() == 1
    note = PaymentNotification.objects.get()
    assert (note.gateway, note.kind, note.outcome, note.order, note.transaction_id) == (
        "wechat_v3", "payment", "processed", order, paid["transaction_id"])
    assert note.headers["wechatpay-serial"] == keys.public_key_id
    assert_ledger_invariants()


def test_ten_deliveries_of_one_payment_are_all_acknowledged_and_earn_once(wechat_pay, keys):
    shop = build_shop()
    member = _shopper(points=500)
    order = _order(shop, member, amount_fen=5_000, points_to_use=500)
    paid = _transaction(keys, order)
    first = notification(keys, paid)

    # WeChat Pay retries with fresh signatures; a replay of the very same delivery, too.
    deliveries = [first, first] + [notification(keys, paid) for _ in range(8)]
    answers = [_notify(*delivery).status_code for delivery in deliveries]

    assert answers == [204] * 10
    order.refresh_from_db()
    assert order.status == "paid" and order.earn.points == 45
    assert PointsTransaction.objects.filter(idempotency_key=f"pay:wechat:{paid['transaction_id']}").count() == 1
    assert _balance(member) == 45
    assert len(order_pushes(order)) == 1
    outcomes = list(PaymentNotification.objects.order_by("pk").values_list("outcome", flat=True))
    assert outcomes == ["processed"] + ["duplicate"] * 9
    assert_ledger_invariants()


def test_a_partner_mode_order_is_opened_for_the_sub_merchant_and_paid_through_it(wechat_pay, keys):
    shop = build_shop()
    shop.merchant.wechat_sub_mch_id = "1900000200"
    shop.merchant.save(update_fields=["wechat_sub_mch_id"])
    member = _shopper(openid="oMiniPartner1")

    order = _order(shop, member, amount_fen=3_000)

    assert (order.collector, order.sub_merchant_id) == ("partner", "1900000200")
    [prepay] = wechat_pay.requests_to("/v3/pay/partner/transactions/jsapi")
    sent = prepay.json()
    assert (sent["sp_appid"], sent["sp_mchid"], sent["sub_mchid"]) == (MINIAPP_APPID, keys.mch_id, "1900000200")
    assert sent["payer"] == {"sp_openid": "oMiniPartner1"}
    partner = {
        "sp_mchid": keys.mch_id, "sp_appid": MINIAPP_APPID, "sub_mchid": "1900000200",
        "payer": {"sp_openid": "oMiniPartner1", "sub_openid": "oSubApp"},
    }
    resource = {name: value for name, value in _transaction(keys, order, **partner).items()
                if name not in ("mchid", "appid")}

    other = _notify(*notification(keys, {**resource, "sub_mchid": "1900000999"}))
    assert other.status_code == 400 and other.json() == {"code": "FAIL", "message": "merchant_mismatch"}
    assert _notify(*notification(keys, resource)).status_code == 204

    order.refresh_from_db()
    assert (order.status, order.earn.points) == ("paid", 30)


# --- 3. Forged, tampered, stale, not ours, not matching ---------------------------------------


def _tampered(keys, order):
    resource = encrypt_resource(json.dumps(_transaction(keys, order)).encode(), keys.api_v3_key)
    sealed = bytearray(base64.b64decode(resource["ciphertext"]))
    sealed[5] ^= 0x01
    return _signed(keys, {**resource, "ciphertext": base64.b64encode(bytes(sealed)).decode()})


def _signed_by_us_with_another_body(keys, order):
    headers, _ = notification(keys, _transaction(keys, order))
    _, other = notification(keys, _transaction(keys, order, amount={"total": 1}))
    return headers, other


def _with_bad_signature(keys, order):
    headers, body = notification(keys, _transaction(keys, order))
    return {**headers, "Wechatpay-Signature": base64.b64encode(b"\x00" * 256).decode()}, body


def _raw(body: bytes):
    return lambda keys, order: (signed_headers(body, keys), body)


def _paid(changes=lambda order: {}, signing=lambda: {}):
    """A genuine notification of the order's payment, with ``changes(order)`` to its
    resource and ``signing()`` overrides (made when the test runs: timestamps)."""
    return lambda keys, order: notification(keys, _transaction(keys, order, **changes(order)), **signing())


def _under_another_api_v3_key(keys, order):
    return _signed(keys, encrypt_resource(json.dumps(_transaction(keys, order)).encode(), "k" * 32))


def _unsigned(keys, order):
    return {}, notification(keys, _transaction(keys, order))[1]


MALFORMED_JSON = b'{"id": "EV-1", "event_type": "TRANSACTION.SUCCESS", "resource": '

FORGERIES = [
    pytest.param(_with_bad_signature, "signature_invalid", id="bad-signature"),
    pytest.param(_signed_by_us_with_another_body, "signature_invalid", id="body-swapped"),
    pytest.param(_paid(signing=lambda: {"private_pem": rsa_key_pair().private_pem}), "signature_invalid",
                 id="signed-by-another-key"),
    pytest.param(_paid(signing=lambda: {"timestamp": int(time.time()) - 360}), "stale", id="stale-timestamp"),
    pytest.param(_paid(signing=lambda: {"timestamp": int(time.time()) + 360}), "stale", id="future-timestamp"),
    pytest.param(_paid(signing=lambda: {"serial": "PUB_KEY_ID_0000000000000000"}), "serial_unknown",
                 id="unknown-serial"),
    pytest.param(_tampered, "decrypt_failed", id="tampered-ciphertext"),
    pytest.param(_under_another_api_v3_key, "decrypt_failed", id="wrong-api-v3-key"),
    pytest.param(_paid(lambda order: {"mchid": "1900000999"}), "merchant_mismatch", id="another-mchid"),
    pytest.param(_paid(lambda order: {"appid": "wxanotherapp00001"}), "app_mismatch", id="another-appid"),
    pytest.param(_paid(lambda order: {"amount": {"total": order.payable_fen - 1}}), "amount_mismatch",
                 id="amount-not-the-orders"),
    pytest.param(_paid(lambda order: {"out_trade_no": "P20250608deadbeefdeadbeef00"}), "order_not_found",
                 id="unknown-out-trade-no"),
    pytest.param(_paid(lambda order: {"amount": {"total": str(order.payable_fen)}}), "malformed", id="amount-as-text"),
    pytest.param(_paid(lambda order: {"trade_state": "PAID_MAYBE"}), "malformed", id="unknown-trade-state"),
    pytest.param(_paid(lambda order: {"success_time": "yesterday"}), "malformed", id="bad-success-time"),
    pytest.param(_raw(MALFORMED_JSON), "malformed", id="malformed-json"),
    pytest.param(_raw(b"[]"), "malformed", id="json-array"),
    pytest.param(_raw(b" " * 70_000), "too_large", id="huge-body"),
    pytest.param(_raw(b'{"id": "\x00"}'), "malformed", id="nul-byte"),
    pytest.param(_unsigned, "signature_missing", id="missing-headers"),
]




@pytest.mark.parametrize("forge,reason", FORGERIES)
def test_a_forged_tampered_foreign_or_mismatched_notification_is_refused_and_changes_nothing(
    wechat_pay, keys, forge, reason, request
):
    shop = build_shop()
    member = _shopper(points=300)
    order = _order(shop, member, amount_fen=2_000, points_to_use=300)
    headers, body = forge(keys, order)

    answer = _notify(headers, body)

    assert answer.status_code == 400, answer.content
    assert answer["Content-Type"] == "application/json"
    # The message is the reason (notifications.py words the size refusal itself).
    assert answer.json() == {"code": "FAIL", "message": "too large" if reason == "too_large" else reason}
    order.refresh_from_db()
    assert (order.status, order.transaction_id, order.earn) == ("created", "", None)
    assert _balance(member) == 0 and order.points_hold.points == -300
    assert order_pushes(order) == []
    note = PaymentNotification.objects.get()
    assert (note.gateway, note.outcome, note.reason) == ("wechat_v3", "rejected", reason)
    assert_ledger_invariants()


def test_an_event_of_a_kind_we_do_not_act_on_is_acknowledged_with_nothing_to_do(wechat_pay, keys):
    shop = build_shop()
    order = _order(shop, _shopper(), amount_fen=1_000)

    answer = _notify(*notification(keys, _transaction(keys, order), event_type="TRANSACTION.PARTNER_NOTIFY"))

    assert answer.status_code == 204
    order.refresh_from_db()
    assert order.status == "created"
    note = PaymentNotification.objects.get()
    assert (note.outcome, note.kind, note.reason, note.out_trade_no) == ("processed", "other", "nothing_to_do",
                                                                         order.out_trade_no)


# --- 4. Closing unpaid orders -----------------------------------------------------------------


def _trade(keys, order, state: str, **more) -> dict:
    return {"mchid": keys.mch_id, "appid": MINIAPP_APPID, "out_trade_no": order.out_trade_no, "trade_state": state,
            "trade_state_desc": state, "amount": {"total": order.payable_fen, "currency": "CNY"}, **more}


def test_a_stale_unpaid_order_is_closed_at_wechat_pay_and_its_points_come_back(wechat_pay, keys):
    shop = build_shop()
    member = _shopper(points=1_000)
    order = _order(shop, member, amount_fen=2_000, points_to_use=500)
    wechat_pay.answer(_query_path(order), lambda request: wechat_pay.reply(_trade(keys, order, "NOTPAY")))
    close_path = _query_path(order) + "/close"
    wechat_pay.answer(close_path, lambda request: wechat_pay.reply(None, status=204))

    with time_machine.travel(timezone.now() + timedelta(minutes=14)):
        assert tasks.orders_close_stale() == 0
    assert wechat_pay.requests_to(_query_path(order)) == []
    with time_machine.travel(timezone.now() + timedelta(minutes=16)):
        assert tasks.orders_close_stale() == 1

    [query] = wechat_pay.requests_to(_query_path(order))
    assert request_signature_valid(query, keys) and query.param("mchid") == keys.mch_id
    [close] = wechat_pay.requests_to(close_path)
    assert request_signature_valid(close, keys) and close.json() == {"mchid": keys.mch_id}
    order.refresh_from_db()
    assert order.status == "closed" and _balance(member) == 1_000
    assert_ledger_invariants()


def test_a_stale_order_wechat_pay_says_was_paid_is_booked_not_closed(wechat_pay, keys):
    shop = build_shop()
    member = _shopper()
    order = _order(shop, member, amount_fen=2_000)
    paid = _transaction(keys, order)
    wechat_pay.answer(_query_path(order), lambda request: wechat_pay.reply(paid))

    with time_machine.travel(timezone.now() + timedelta(minutes=16)):
        assert tasks.orders_close_stale() == 0

    assert wechat_pay.requests_to(_query_path(order) + "/close") == []
    order.refresh_from_db()
    assert (order.status, order.transaction_id, order.earn.points) == ("paid", paid["transaction_id"], 20)
    assert order.earn.idempotency_key == f"pay:wechat:{paid['transaction_id']}"
    assert _balance(member) == 20 and len(order_pushes(order)) == 1
    assert_ledger_invariants()


def test_a_stale_order_wechat_pay_never_heard_of_is_closed_without_asking_to_close(wechat_pay, keys):
    shop = build_shop()
    order = _order(shop, _shopper(), amount_fen=2_000)
    missing = {"code": "ORDER_NOT_EXIST", "message": "订单不存在"}
    wechat_pay.answer(_query_path(order), lambda request: wechat_pay.reply(missing, status=404))

    with time_machine.travel(timezone.now() + timedelta(minutes=16)):
        assert tasks.orders_close_stale() == 1

    assert wechat_pay.requests_to(_query_path(order) + "/close") == []
    order.refresh_from_db()
    assert order.status == "closed"


def test_a_stale_order_whose_close_wechat_pay_refuses_as_paid_stays_open_for_the_next_run(wechat_pay, keys):
    shop = build_shop()
    member = _shopper(points=400)
    order = _order(shop, member, amount_fen=2_000, points_to_use=400)
    wechat_pay.answer(_query_path(order), lambda request: wechat_pay.reply(_trade(keys, order, "USERPAYING")))
    wechat_pay.answer(_query_path(order) + "/close",
                      lambda request: wechat_pay.reply({"code": "ORDERPAID", "message": "订单已支付"}, status=400))

    with time_machine.travel(timezone.now() + timedelta(minutes=16)):
        assert tasks.orders_close_stale() == 0

    order.refresh_from_db()
    assert order.status == "created" and _balance(member) == 0 and order.points_hold.points == -400


# --- 5. Refunds -----------------------------------------------------------------------------


def _refunds_answer(fake, status: str):
    def respond(request):
        sent = request.json()
        return fake.reply({
            "refund_id": "50300" + secrets.token_hex(12), "out_refund_no": sent["out_refund_no"],
            "out_trade_no": sent["out_trade_no"], "transaction_id": "4200", "channel": "ORIGINAL",
            "user_received_account": "支付用户零钱", "create_time": SUCCESS_TIME, "status": status,
            "amount": {"total": sent["amount"]["total"], "refund": sent["amount"]["refund"], "currency": "CNY",
                       "payer_total": sent["amount"]["total"], "payer_refund": sent["amount"]["refund"]},
        })

    return respond


def test_a_refund_is_pending_until_its_notification_then_moves_points_and_a_failed_one_is_released(wechat_pay, keys):
    shop = build_shop()
    member = _shopper(points=1_000)
    order = _order(shop, member, amount_fen=10_000, points_to_use=1_000)
    assert _notify(*notification(keys, _transaction(keys, order))).status_code == 204
    assert _balance(member) == 90
    wechat_pay.answer(REFUNDS_PATH, _refunds_answer(wechat_pay, "PROCESSING"))
    pos = Api(shop.raw_key)

    half = pos.post(f"/api/v1/orders/{order.out_trade_no}/refunds/", {"amount_fen": 5_000, "reason": "退货"}, key="r1")

    assert half.status_code == 201, half.content
    assert (half.json()["status"], half.json()["cash_fen"], half.json()["points"]) == ("pending", 4_500, 500)
    [sent] = wechat_pay.requests_to(REFUNDS_PATH)
    assert request_signature_valid(sent, keys)
    assert sent.json() == {
        "out_trade_no": order.out_trade_no, "out_refund_no": half.json()["out_refund_no"],
        "notify_url": SITE + NOTIFY_PATH, "amount": {"refund": 4_500, "total": 9_000, "currency": "CNY"},
        "reason": "退货",
    }
    assert _balance(member) == 90  # nothing moves before WeChat Pay says so
    first = OrderRefund.objects.get(out_refund_no=half.json()["out_refund_no"])

    answer = _notify(*_refund_notification(keys, _refund_resource(keys, first, "SUCCESS"), event_type="REFUND.SUCCESS"))

    assert answer.status_code == 204
    first.refresh_from_db()
    assert first.status == "succeeded" and first.refund_id.startswith("50300")
    # 45 of the 90 earned go back with half the cash; the 500 points it used come back.
    assert _balance(member) == 90 - 45 + 500
    order.refresh_from_db()
    assert (order.status, order.refunded_fen) == ("partially_refunded", 5_000)

    rest = pos.post(f"/api/v1/orders/{order.out_trade_no}/refunds/", {"amount_fen": 5_000}, key="r2")
    assert rest.json()["status"] == "pending"
    second = OrderRefund.objects.get(out_refund_no=rest.json()["out_refund_no"])
    order.refresh_from_db()
    assert order.refunded_fen == 10_000

    abnormal = _refund_resource(keys, second, "ABNORMAL")
    answer = _notify(*_refund_notification(keys, abnormal, event_type="REFUND.ABNORMAL"))

    assert answer.status_code == 204
    second.refresh_from_db()
    assert second.status == "failed" and second.failure.startswith("abnormal")
    order.refresh_from_db()
    assert (order.status, order.refunded_fen) == ("partially_refunded", 5_000)
    assert _balance(member) == 545
    assert list(PaymentNotification.objects.filter(kind="refund").values_list("outcome", flat=True)) == [
        "processed", "processed"]
    assert_ledger_invariants()


def test_a_refund_notification_for_another_merchant_is_refused(wechat_pay, keys):
    shop = build_shop()
    member = _shopper()
    order = _order(shop, member, amount_fen=1_000)
    _notify(*notification(keys, _transaction(keys, order)))
    wechat_pay.answer(REFUNDS_PATH, _refunds_answer(wechat_pay, "PROCESSING"))
    refunded = Api(shop.raw_key).post(f"/api/v1/orders/{order.out_trade_no}/refunds/", {"amount_fen": 1_000})
    out_refund_no = refunded.json()["out_refund_no"]
    resource = {**_refund_resource(keys, OrderRefund.objects.get(out_refund_no=out_refund_no), "SUCCESS"),
                "mchid": "1900000999"}

    answer = _notify(*_refund_notification(keys, resource, event_type="REFUND.SUCCESS"))

    assert answer.status_code == 400 and answer.json()["message"] == "merchant_mismatch"
    assert OrderRefund.objects.get(out_refund_no=out_refund_no).status == "pending"
    assert _balance(member) == 10


def test_a_refund_wechat_pay_refuses_fails_and_gives_its_reservation_back(wechat_pay, keys):
    shop = build_shop()
    order = _order(shop, _shopper(), amount_fen=1_000)
    _notify(*notification(keys, _transaction(keys, order)))
    wechat_pay.answer(REFUNDS_PATH, lambda request: wechat_pay.reply({"code": "NOT_ENOUGH", "message": "余额不足"},
                                                                     status=403))

    refund = Api(shop.raw_key).post(f"/api/v1/orders/{order.out_trade_no}/refunds/", {"amount_fen": 400})

    assert refund.status_code == 201 and refund.json()["status"] == "failed"
    assert "NOT_ENOUGH" in OrderRefund.objects.get().failure
    order.refresh_from_db()
    assert (order.status, order.refunded_fen) == ("paid", 0)


# --- 6. A QR on the POS screen (Native) -------------------------------------------------------


def test_a_native_order_shows_a_code_url_and_its_payer_becomes_a_member_who_earns(wechat_pay, keys):
    shop = build_shop()

    response = Api(shop.raw_key).post("/api/v1/orders/", {"store_code": shop.store.code, "amount_fen": 3_800,
                                                           "channel": "wechat"})

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["code_url"].startswith("weixin://wxpay/bizpayurl?pr=")
    order = Order.objects.get(out_trade_no=body["out_trade_no"])
    assert (order.gateway, order.client, order.member) == ("wechat_v3", "native", None)
    [prepay] = wechat_pay.requests_to("/v3/pay/transactions/native")
    sent = prepay.json()
    assert (sent["appid"], sent["mchid"], sent["amount"]["total"]) == (OFFICIAL_APPID, keys.mch_id, 3_800)
    assert "payer" not in sent and sent["notify_url"] == SITE + NOTIFY_PATH

    paid = _transaction(keys, order, appid=OFFICIAL_APPID, trade_type="NATIVE", payer={"openid": "oOfficialNew01"})
    assert _notify(*notification(keys, paid)).status_code == 204

    order.refresh_from_db()
    identity = Identity.objects.get(channel="wechat_openid", external_id="oOfficialNew01")
    assert (order.status, order.member, order.payer_id) == ("paid", identity.member, "oOfficialNew01")
    assert order.earn.points == 38 and _balance(identity.member) == 38
    assert len(order_pushes(order)) == 1
    assert_ledger_invariants()


def test_a_payer_who_joins_by_paying_joins_through_wechat(wechat_pay, keys):
    shop = build_shop()
    created = Api(shop.raw_key).post("/api/v1/orders/", {"store_code": shop.store.code, "amount_fen": 100,
                                                          "channel": "wechat"})
    order = Order.objects.get(out_trade_no=created.json()["out_trade_no"])
    _notify(*notification(keys, _transaction(keys, order, appid=OFFICIAL_APPID, payer={"openid": "oJoiner"})))

    order.refresh_from_db()
    assert order.member.join_channel == Member.Channel.WECHAT


# --- The gateway on its own ---------------------------------------------------------------------


def _charge(**overrides) -> ChargeRequest:
    fields = {"out_trade_no": "P1", "amount_fen": 100, "description": "Shop", "client": "jsapi",
              "notify_url": SITE + NOTIFY_PATH, "time_expire": datetime(2030, 1, 1, tzinfo=UTC),
              "payer_id": "oOfficial1"}
    return ChargeRequest(**{**fields, **overrides})


def test_gateway_for_wechat_v3_is_this_gateway(wechat_pay):
    assert isinstance(gateway_for("wechat_v3"), WeChatPayV3Gateway)


def test_a_jsapi_charge_pays_under_the_official_account(wechat_pay, keys):
    result = WeChatPayV3Gateway().charge(_charge())

    [prepay] = wechat_pay.requests_to("/v3/pay/transactions/jsapi")
    assert prepay.json()["appid"] == OFFICIAL_APPID and prepay.json()["payer"] == {"openid": "oOfficial1"}
    assert prepay.json()["time_expire"] == "2030-01-01T00:00:00+00:00"
    assert set(result.pay_params) == {"appId", "timeStamp", "nonceStr", "package", "signType", "paySign"}
    assert result.pay_params["appId"] == OFFICIAL_APPID


@pytest.mark.parametrize("changes,code", [
    ({"client": "wap"}, "CLIENT_UNSUPPORTED"),
    ({"client": "miniapp", "payer_id": ""}, "PAYER_MISSING"),
])
def test_a_charge_wechat_pay_cannot_take_is_refused_without_a_call(wechat_pay, changes, code):
    with pytest.raises(PlatformRejected) as caught:
        WeChatPayV3Gateway().charge(_charge(**changes))
    assert (caught.value.platform, caught.value.platform_code) == ("wechat_pay", code)
    assert wechat_pay.server.requests == []


@pytest.mark.parametrize("trade_state,state", [
    ("SUCCESS", TradeState.PAID), ("REFUND", TradeState.PAID), ("NOTPAY", TradeState.PENDING),
    ("USERPAYING", TradeState.PENDING), ("CLOSED", TradeState.CLOSED), ("REVOKED", TradeState.CLOSED),
    ("PAYERROR", TradeState.CLOSED),
])
def test_query_tells_the_trade_state_in_our_words(wechat_pay, keys, trade_state, state):
    trade = {"mchid": keys.mch_id, "appid": OFFICIAL_APPID, "out_trade_no": "P2", "trade_state": trade_state,
             "amount": {"total": 1_234, "payer_total": 1_000, "currency": "CNY"}}
    if state == TradeState.PAID:
        trade.update(transaction_id="4200000001", success_time=SUCCESS_TIME, payer={"openid": "oOfficial2"})
    wechat_pay.answer("/v3/pay/transactions/out-trade-no/P2", lambda request: wechat_pay.reply(trade))

    payment = WeChatPayV3Gateway().query(out_trade_no="P2")

    assert (payment.out_trade_no, payment.state, payment.amount_fen) == ("P2", state, 1_234)
    if state == TradeState.PAID:
        assert (payment.transaction_id, payment.payer_id, payment.payer_channel) == ("4200000001", "oOfficial2",
                                                                                     "wechat_openid")
        assert payment.paid_at == datetime(2025, 6, 8, 2, 34, 56, tzinfo=UTC)


def test_query_of_a_partner_trade_names_its_sub_merchant_and_mini_program_payer(wechat_pay, keys):
    trade = {"sp_mchid": keys.mch_id, "sp_appid": MINIAPP_APPID, "sub_mchid": "1900000200", "out_trade_no": "P3",
             "transaction_id": "4200000003", "trade_state": "SUCCESS", "amount": {"total": 500},
             "payer": {"sp_openid": "oMiniSp", "sub_openid": "oSub"}}
    path = "/v3/pay/partner/transactions/out-trade-no/P3"
    wechat_pay.answer(path, lambda request: wechat_pay.reply(trade))

    payment = WeChatPayV3Gateway().query(out_trade_no="P3", sub_merchant_id="1900000200")

    assert (payment.sub_merchant_id, payment.payer_id, payment.payer_channel) == ("1900000200", "oMiniSp",
                                                                                  "miniapp_openid")
    [request] = wechat_pay.requests_to(path)
    assert (request.param("sp_mchid"), request.param("sub_mchid")) == (keys.mch_id, "1900000200")


@pytest.mark.parametrize("code", ["ORDER_NOT_EXIST", "ORDERNOTEXIST"])
def test_query_of_a_trade_wechat_pay_never_heard_of_is_not_found(wechat_pay, code):
    wechat_pay.answer("/v3/pay/transactions/out-trade-no/P4",
                      lambda request: wechat_pay.reply({"code": code, "message": "订单不存在"}, status=404))
    assert WeChatPayV3Gateway().query(out_trade_no="P4").state == TradeState.NOT_FOUND


@pytest.mark.parametrize("answer,error", [
    pytest.param(lambda fake: fake.reply({"code": "SYSTEM_ERROR", "message": "系统异常"}, status=500), PlatformUnavailable,
                 id="5xx"),
    pytest.param(lambda fake: Reply(status=200, body="{}", delay=3), PlatformUnavailable, id="timeout"),
    pytest.param(lambda fake: json_reply({"out_trade_no": "P5", "trade_state": "SUCCESS"}), PlatformBadResponse,
                 id="unsigned"),
    pytest.param(lambda fake: fake.reply({"out_trade_no": "P5", "trade_state": "NOTPAY"},
                                         private_pem=rsa_key_pair().private_pem), PlatformBadResponse, id="forged"),
    pytest.param(lambda fake: fake.reply({"out_trade_no": "P6", "trade_state": "NOTPAY"}), PlatformBadResponse,
                 id="another-trade"),
    pytest.param(lambda fake: fake.reply({"out_trade_no": "P5", "trade_state": "SUCCESS", "transaction_id": "42",
                                          "amount": {"total": 12.5}}), PlatformBadResponse, id="amount-not-fen"),
    pytest.param(lambda fake: fake.reply({"out_trade_no": "P5", "trade_state": "SUCCESS", "amount": {"total": 1}}),
                 PlatformBadResponse, id="paid-without-transaction-id"),
    pytest.param(lambda fake: fake.reply({"code": "PARAM_ERROR", "message": "参数错误"}, status=400), PlatformRejected,
                 id="rejected"),
])
def test_query_fails_only_with_platform_error_kinds(wechat_pay, settings, answer, error):
    settings.PLATFORM_TIMEOUT_SECONDS = 0.5
    wechat_pay.answer("/v3/pay/transactions/out-trade-no/P5", lambda request: answer(wechat_pay))

    with pytest.raises(error) as caught:
        WeChatPayV3Gateway().query(out_trade_no="P5")

    if error is PlatformRejected:
        assert (caught.value.platform, caught.value.platform_code) == ("wechat_pay", "PARAM_ERROR")
        assert caught.value.status == 502


@pytest.mark.parametrize("code", ["ORDER_CLOSED", "ORDER_NOT_EXIST"])
def test_closing_a_trade_closed_or_never_opened_is_done(wechat_pay, code):
    wechat_pay.answer("/v3/pay/transactions/out-trade-no/P7/close",
                      lambda request: wechat_pay.reply({"code": code, "message": "m"}, status=400))
    assert WeChatPayV3Gateway().close(out_trade_no="P7") is None


def test_closing_a_paid_trade_is_rejected_with_wechat_pays_code(wechat_pay):
    wechat_pay.answer("/v3/pay/transactions/out-trade-no/P8/close",
                      lambda request: wechat_pay.reply({"code": "ORDERPAID", "message": "订单已支付"}, status=400))
    with pytest.raises(PlatformRejected) as caught:
        WeChatPayV3Gateway().close(out_trade_no="P8")
    assert caught.value.platform_code == "ORDERPAID"


def _refund_request(**overrides) -> RefundRequest:
    fields = {"out_trade_no": "P9", "out_refund_no": "P9R1", "refund_fen": 300, "total_fen": 1_000,
              "notify_url": SITE + NOTIFY_PATH, "reason": "长" * 100}
    return RefundRequest(**{**fields, **overrides})


@pytest.mark.parametrize("status,state", [
    ("SUCCESS", RefundState.SUCCEEDED), ("PROCESSING", RefundState.PENDING), ("CLOSED", RefundState.FAILED),
    ("ABNORMAL", RefundState.FAILED),
])
def test_a_refund_answer_tells_the_refund_state_in_our_words(wechat_pay, status, state):
    wechat_pay.answer(REFUNDS_PATH, _refunds_answer(wechat_pay, status))

    result = WeChatPayV3Gateway().refund(_refund_request(sub_merchant_id="1900000200"))

    assert (result.out_refund_no, result.state, result.refund_fen) == ("P9R1", state, 300)
    assert result.refund_id.startswith("50300") and bool(result.failure) == (state == RefundState.FAILED)
    [sent] = wechat_pay.requests_to(REFUNDS_PATH)
    assert sent.json()["reason"] == "长" * 80 and sent.json()["sub_mchid"] == "1900000200"


def test_a_refund_answer_about_another_refund_is_a_bad_response(wechat_pay):
    wechat_pay.answer(REFUNDS_PATH, lambda request: wechat_pay.reply({"out_refund_no": "OTHER", "status": "SUCCESS"}))
    with pytest.raises(PlatformBadResponse):
        WeChatPayV3Gateway().refund(_refund_request())


def test_refund_query_asks_for_the_refund_by_its_number(wechat_pay, keys):
    path = f"{REFUNDS_PATH}/P9R2"
    wechat_pay.answer(path, lambda request: wechat_pay.reply(
        {"out_refund_no": "P9R2", "refund_id": "503001", "status": "SUCCESS", "amount": {"refund": 200}}))

    result = WeChatPayV3Gateway().refund_query(out_trade_no="P9", out_refund_no="P9R2", sub_merchant_id="1900000200")

    assert (result.state, result.refund_id, result.refund_fen) == (RefundState.SUCCEEDED, "503001", 200)
    [request] = wechat_pay.requests_to(path)
    assert request.method == "GET" and request.param("sub_mchid") == "1900000200"
    assert request_signature_valid(request, keys)


def test_refund_query_of_a_refund_wechat_pay_never_heard_of_is_failed(wechat_pay):
    wechat_pay.answer(f"{REFUNDS_PATH}/P9R3", lambda request: wechat_pay.reply(
        {"code": "RESOURCE_NOT_EXISTS", "message": "退款单不存在"}, status=404))
    result = WeChatPayV3Gateway().refund_query(out_trade_no="P9", out_refund_no="P9R3")
    assert (result.state, result.failure) == (RefundState.FAILED, "no such refund")


@pytest.mark.parametrize("event_type,status,state", [
    ("REFUND.SUCCESS", "SUCCESS", RefundState.SUCCEEDED), ("REFUND.ABNORMAL", "ABNORMAL", RefundState.FAILED),
    ("REFUND.CLOSED", "CLOSED", RefundState.FAILED),
])
def test_a_refund_notification_is_a_refund_result(wechat_pay, keys, event_type, status, state):
    resource = {"mchid": keys.mch_id, "out_trade_no": "P10", "out_refund_no": "P10R1", "refund_id": "5031",
                "refund_status": status, "amount": {"total": 900, "refund": 300}}

    headers, body = _refund_notification(keys, resource, event_type=event_type)
    note = WeChatPayV3Gateway().parse_notification(headers=headers, body=body)

    assert (note.payment, note.out_trade_no) == (None, "P10")
    assert (note.refund.out_refund_no, note.refund.state, note.refund.refund_id, note.refund.refund_fen) == (
        "P10R1", state, "5031", 300)


# The client's refusals, each as its stable reason (a client change breaks this, not production).
CLIENT_REFUSALS = [
    ("missing Wechatpay-Timestamp, -Nonce, -Signature or -Serial", "signature_missing"),
    ("malformed Wechatpay-Timestamp", "signature_invalid"),
    ("Wechatpay-Timestamp is more than 5 minutes off", "stale"),
    ("malformed signature headers", "signature_invalid"),
    ("unknown Wechatpay-Serial 'PUB_KEY_ID_1'", "serial_unknown"),
    ("Wechatpay-Signature is not base64", "signature_invalid"),
    ("Wechatpay-Signature does not verify", "signature_invalid"),
    ("resource does not decrypt (wrong key, nonce, associated_data or tampered ciphertext)", "decrypt_failed"),
    ("body too large", "too_large"),
    ("body is not bytes", "malformed"),
    ("body is not a JSON object", "malformed"),
    ("no resource object", "malformed"),
    ("resource algorithm is not AEAD_AES_256_GCM", "malformed"),
    ("decrypted resource is not a JSON object", "malformed"),
    ("id or event_type missing", "malformed"),
]


@pytest.mark.parametrize("headers,body,sentence", [
    pytest.param({}, b"{}", CLIENT_REFUSALS[0][0], id="missing"),
    pytest.param({"Wechatpay-Timestamp": "-5", "Wechatpay-Nonce": "n", "Wechatpay-Signature": "s",
                  "Wechatpay-Serial": "x"}, b"{}", CLIENT_REFUSALS[1][0], id="timestamp"),
])
def test_the_clients_refusal_sentences_are_the_ones_mapped(wechat_pay, headers, body, sentence):
    with pytest.raises(v3.WeChatPayV3BadNotification) as caught:
        v3.notification_verify_and_decrypt(headers, body)
    assert caught.value.reason == sentence


@pytest.mark.parametrize("sentence,reason", CLIENT_REFUSALS)
def test_each_client_refusal_has_a_stable_reason(sentence, reason):
    assert refusal_reason(sentence) == reason


def test_a_notification_refused_by_the_client_is_rejected_with_its_reason(wechat_pay, keys):
    headers, body = notification(keys, {"out_trade_no": "P11"}, timestamp=int(time.time()) - 400)
    with pytest.raises(NotificationRejected) as caught:
        WeChatPayV3Gateway().parse_notification(headers=headers, body=body)
    assert caught.value.reason == "stale" and "5 minutes" in str(caught.value)


def test_acknowledgements_are_204_empty_or_400_json_fail():
    gateway = WeChatPayV3Gateway()
    assert gateway.acknowledge(ok=True).status == 204 and gateway.acknowledge(ok=True).body == b""
    failed = gateway.acknowledge(ok=False, message="签名错误")
    assert (failed.status, failed.content_type) == (400, "application/json")
    assert json.loads(failed.body) == {"code": "FAIL", "message": "签名错误"}
