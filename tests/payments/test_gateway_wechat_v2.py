"""WeChat Pay v2 (wechatpy, XML) end to end against the fake platform server: orders
from the mini-program and from a POS's Native QR, notifications through
/payments/notify/wechat/, closing stale orders, refunds and their notifications.

The fake answers only requests signed with the API key each test generates (its checks
are written from WeChat Pay's documentation, not with wechatpy), so a request it
accepts is signed the way WeChat Pay checks.
"""

import datetime as dt
import secrets
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.test import Client
from django.utils import timezone

from core.platforms import PlatformRejected
from members import ledger
from members.models import Account, Identity, Member
from payments import tasks
from payments.gateways import ChargeRequest, RefundRequest, RefundState, TradeState, gateway_for
from payments.gateways.wechat_v2 import ClientUnsupported
from payments.models import Order, OrderRefund, PaymentNotification
from tests.factories import assert_ledger_invariants, make_member
from tests.fakes.platform_server import (
    Reply,
    parse_wechat_pay_xml,
    wechat_pay_refund_notification,
    wechat_pay_sign,
    wechat_pay_signature_valid,
    wechat_pay_xml,
    xml_reply,
)
from tests.payments.conftest import Api, build_shop, grant
from tests.payments.orders_support import Shopper, order_pushes

pytestmark = pytest.mark.django_db

APP_ID = "wx-oa-v2"
MINIAPP_ID = "wx-mini-v2"
MCH_ID = "1900000109"
SITE = "https://mall.example"
NOTIFY_URL = SITE + "/payments/notify/wechat/"
SHANGHAI = ZoneInfo("Asia/Shanghai")


class FakeWeChatPay:
    """WeChat Pay v2 on the fake server. Like WeChat Pay it refuses a request not signed
    with the merchant's API key; what each endpoint answers otherwise is the test's to set."""

    def __init__(self, server, api_key: str):
        self.server = server
        self.api_key = api_key
        self.on("/pay/unifiedorder", self._unified_order)

    def on(self, path: str, handler) -> None:
        """``handler(fields of the request) -> XML answer`` for requests to ``path``."""

        def script(request):
            fields = parse_wechat_pay_xml(request.body)
            if not wechat_pay_signature_valid(fields, self.api_key):
                return xml_reply(wechat_pay_xml({"return_code": "FAIL", "return_msg": "签名错误"}))
            return xml_reply(handler(fields))

        self.server.script(path, script)

    def answer(self, *, appid: str = APP_ID, **fields) -> str:
        common = {"return_code": "SUCCESS", "return_msg": "OK", "appid": appid, "mch_id": MCH_ID,
                  "nonce_str": secrets.token_hex(8), "result_code": "SUCCESS"}
        return wechat_pay_xml({**common, **fields}, api_key=self.api_key)

    def refusal(self, err_code: str) -> str:
        return self.answer(result_code="FAIL", err_code=err_code, err_code_des=f"{err_code} (fake)")

    def sent(self, path: str) -> list[dict[str, str]]:
        return [parse_wechat_pay_xml(request.body) for request in self.server.requests_to(path)]

    def _unified_order(self, fields):
        if fields["trade_type"] == "NATIVE":
            return self.answer(appid=fields["appid"], trade_type="NATIVE", prepay_id="wx-prepay-n",
                               code_url=f"weixin://wxpay/bizpayurl?pr={fields['out_trade_no'][-8:]}")
        return self.answer(appid=fields["appid"], trade_type="JSAPI", prepay_id=f"wx-prepay-{fields['out_trade_no']}")


@pytest.fixture
def api_key() -> str:
    return secrets.token_hex(16)  # 32 characters, as a merchant's v2 API key


@pytest.fixture
def wechat(platform_server, settings, api_key) -> FakeWeChatPay:
    settings.WECHAT_PAY_API_BASE_URL = platform_server.url
    settings.WECHAT_APP_ID = APP_ID
    settings.WECHAT_MINIAPP_ID = MINIAPP_ID
    settings.WECHAT_PAY_MCH_ID = MCH_ID
    settings.WECHAT_PAY_API_KEY = api_key
    settings.WECHAT_PAY_API_V3_KEY = ""  # so new WeChat orders go through v2
    settings.WECHAT_PAY_CERT_PATH = settings.WECHAT_PAY_KEY_PATH = ""
    settings.O2O_PUBLIC_BASE_URL = SITE
    settings.PLATFORM_TIMEOUT_SECONDS = 2
    return FakeWeChatPay(platform_server, api_key)


@pytest.fixture
def merchant_certificate(wechat, settings, tmp_path):
    """A self-signed merchant certificate and key, as files, configured for refunds."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, MCH_ID)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + timedelta(days=1))
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "apiclient_cert.pem", tmp_path / "apiclient_key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    settings.WECHAT_PAY_CERT_PATH, settings.WECHAT_PAY_KEY_PATH = str(cert_path), str(key_path)


# --- helpers ----------------------------------------------------------------------------


def shopper_with_miniapp_openid(points: int = 0, openid: str | None = None) -> Member:
    member = make_member()
    openid = openid or f"o-mini-{secrets.token_hex(4)}"
    Identity.objects.create(member=member, channel=Identity.Channel.MINIAPP_OPENID, external_id=openid)
    if points:
        grant(member, points)
    return member


def open_order(shop, member, *, amount_fen: int, points_to_use: int = 0) -> Order:
    response = Shopper(member).order(store_code=shop.store.code, amount_fen=amount_fen, channel="wechat",
                                     points_to_use=points_to_use)
    assert response.status_code == 201, response.content
    return Order.objects.get(out_trade_no=response.json()["out_trade_no"])


def notification_fields(order: Order, **fields) -> dict:
    """A payment notification of ``order`` (unsigned), as WeChat Pay sends it."""
    openid = order.payer_id or f"o-{secrets.token_hex(4)}"
    return {
        "appid": MINIAPP_ID if order.client == "miniapp" else APP_ID, "mch_id": MCH_ID,
        "nonce_str": secrets.token_hex(8),
        "return_code": "SUCCESS", "result_code": "SUCCESS", "openid": openid, "is_subscribe": "N",
        "trade_type": "NATIVE" if order.client == "native" else "JSAPI", "bank_type": "CMB_DEBIT", "fee_type": "CNY",
        "total_fee": str(order.payable_fen), "cash_fee": str(order.payable_fen), "out_trade_no": order.out_trade_no,
        "transaction_id": f"4200{secrets.randbelow(10**24):024d}",
        "time_end": timezone.now().astimezone(SHANGHAI).strftime("%Y%m%d%H%M%S"), **fields,
    }


def signed(fields: dict, api_key: str, *, sign_type: str = "MD5") -> bytes:
    if sign_type != "MD5":
        fields = {**fields, "sign_type": sign_type}
    return wechat_pay_xml({**fields, "sign": wechat_pay_sign(fields, api_key, sign_type=sign_type)}).encode()


def notify(body: bytes, content_type: str = "text/xml"):
    return Client().post("/payments/notify/wechat/", data=body, content_type=content_type)


def answer_of(response) -> dict:
    assert response.status_code == 200, (response.status_code, response.content[:300])
    assert response["Content-Type"].startswith("application/xml")
    return parse_wechat_pay_xml(response.content)


def paid_order(wechat, shop, member, *, amount_fen: int, points_to_use: int = 0) -> Order:
    order = open_order(shop, member, amount_fen=amount_fen, points_to_use=points_to_use)
    assert answer_of(notify(signed(notification_fields(order), wechat.api_key)))["return_code"] == "SUCCESS"
    order.refresh_from_db()
    assert order.status == "paid"
    return order


# --- paying from the mini-program -------------------------------------------------------


def test_a_miniapp_order_opens_a_signed_unified_order_and_its_notification_pays_it_once(wechat, api_key):
    shop = build_shop()
    member = shopper_with_miniapp_openid(points=1_000, openid="o-mini-1")

    response = Shopper(member).order(store_code=shop.store.code, amount_fen=10_000, channel="wechat", points_to_use=800)

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["status"], body["payable_fen"], body["channel"]) == ("created", 9_200, "wechat")
    order = Order.objects.get(out_trade_no=body["out_trade_no"])
    assert (order.gateway, order.client) == ("wechat_v2", "miniapp")
    [sent] = wechat.sent("/pay/unifiedorder")
    assert wechat_pay_signature_valid(sent, api_key)
    assert {name: sent[name] for name in ("appid", "mch_id", "trade_type", "openid", "total_fee", "out_trade_no",
                                          "notify_url", "time_expire", "spbill_create_ip", "body")} == {
        "appid": MINIAPP_ID, "mch_id": MCH_ID, "trade_type": "JSAPI", "openid": "o-mini-1", "total_fee": "9200",
        "out_trade_no": order.out_trade_no, "notify_url": NOTIFY_URL,
        "time_expire": order.expires_at.astimezone(SHANGHAI).strftime("%Y%m%d%H%M%S"), "spbill_create_ip": "127.0.0.1",
        "body": shop.store.name,
    }
    assert "sub_mch_id" not in sent
    # What wx.requestPayment needs, signed with the API key.
    pay_params = body["pay_params"]
    assert set(pay_params) == {"appId", "timeStamp", "nonceStr", "package", "signType", "paySign"}
    assert (pay_params["appId"], pay_params["package"], pay_params["signType"]) == (
        MINIAPP_ID, f"prepay_id=wx-prepay-{order.out_trade_no}", "MD5")
    assert pay_params["paySign"] == wechat_pay_sign({k: v for k, v in pay_params.items() if k != "paySign"}, api_key)
    assert ledger.member_points_balance(member=member) == 200

    fields = notification_fields(order)
    answer = answer_of(notify(signed(fields, api_key)))

    assert answer == {"return_code": "SUCCESS", "return_msg": "OK"}
    order.refresh_from_db()
    assert (order.status, order.transaction_id, order.member_id) == ("paid", fields["transaction_id"], member.pk)
    assert order.paid_at == dt.datetime.strptime(fields["time_end"], "%Y%m%d%H%M%S").replace(tzinfo=SHANGHAI)
    # 92 points for ¥92 paid at 1 %, earned once under the payment's key; the 800 used go to the shop.
    assert (order.earn.points, order.earn.idempotency_key) == (92, f"pay:wechat:{fields['transaction_id']}")
    assert ledger.member_points_balance(member=member) == 292
    acceptance = Account.objects.get(kind="merchant_acceptance", merchant=shop.merchant)
    assert sum(entry.amount for entry in acceptance.entries.all()) == 800
    assert len(order_pushes(order)) == 1
    note = PaymentNotification.objects.get()
    assert (note.gateway, note.outcome, note.kind, note.order_id, note.transaction_id) == (
        "wechat_v2", "processed", "payment", order.pk, fields["transaction_id"])
    assert_ledger_invariants()


def test_a_repeated_payment_notification_is_acknowledged_and_moves_nothing(wechat, api_key):
    shop = build_shop()
    member = shopper_with_miniapp_openid(points=1_000)
    order = open_order(shop, member, amount_fen=5_000, points_to_use=500)
    body = signed(notification_fields(order), api_key)
    assert answer_of(notify(body))["return_code"] == "SUCCESS"
    balance = ledger.member_points_balance(member=member)

    again = answer_of(notify(body))

    assert again == {"return_code": "SUCCESS", "return_msg": "OK"}
    assert ledger.member_points_balance(member=member) == balance == 500 + 45
    assert len(order_pushes(order)) == 1
    outcomes = PaymentNotification.objects.order_by("pk").values_list("outcome", flat=True)
    assert list(outcomes) == ["processed", "duplicate"]
    assert_ledger_invariants()


def test_a_notification_signed_with_hmac_sha256_is_accepted(wechat, api_key):
    shop = build_shop()
    member = shopper_with_miniapp_openid()
    order = open_order(shop, member, amount_fen=3_000)

    answer = answer_of(notify(signed(notification_fields(order), api_key, sign_type="HMAC-SHA256")))

    assert answer["return_code"] == "SUCCESS"
    order.refresh_from_db()
    assert order.status == "paid" and order.earn.points == 30


BILLION_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY a "ha"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
    '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">]>'
    "<xml><return_code>SUCCESS</return_code><attach>&d;</attach></xml>"
)


def _signed(**fields):
    """The order's notification with ``fields`` changed, signed with the API key."""
    return lambda order, key: signed(notification_fields(order, **fields), key)


def _signed_then(edit):
    """The order's notification signed with the API key, then ``edit``ed."""
    return lambda order, key: edit(signed(notification_fields(order), key), order)


def _raw(body: bytes):
    return lambda order, key: body


FORGED = {
    # case: (the body, a function of the order and the API key; the reason stored)
    "signed-with-another-key": (lambda order, key: signed(notification_fields(order), secrets.token_hex(16)),
                                "signature_invalid"),
    "unsigned": (lambda order, key: wechat_pay_xml(notification_fields(order)).encode(), "signature_invalid"),
    "tampered-total-fee": (_signed_then(lambda body, order: body.replace(
        f"<total_fee><![CDATA[{order.payable_fen}]]>".encode(), b"<total_fee><![CDATA[1]]>")), "signature_invalid"),
    "hmac-declared-md5-signed": (_signed(sign_type="HMAC-SHA256"), "signature_invalid"),
    "another-appid": (_signed(appid="wx-someone-else"), "app_mismatch"),
    "another-mch-id": (_signed(mch_id="1900000999"), "merchant_mismatch"),
    "another-sub-merchant": (_signed(sub_mch_id="1900000888"), "merchant_mismatch"),
    "amount-not-the-orders": (_signed(total_fee="1", cash_fee="1"), "amount_mismatch"),
    "fractional-total-fee": (_signed(total_fee="97.00"), "malformed"),
    "unknown-out-trade-no": (_signed(out_trade_no="P20250101" + "0" * 20), "order_not_found"),
    "result-fail": (_signed(result_code="FAIL", err_code="NOTENOUGH"), "not_success"),
    "return-fail": (_raw(wechat_pay_xml({"return_code": "FAIL", "return_msg": "x"}).encode()), "not_success"),
    "billion-laughs": (_raw(BILLION_LAUGHS.encode()), "dtd"),
    "doctype-before-a-signed-body": (_signed_then(lambda body, order: b"<!DOCTYPE xml>" + body), "dtd"),
    "over-the-size-limit": (_signed(attach="x" * 70_000), "too_large"),
    "malformed": (_raw(b"<xml><return_code>SUCCESS</return_code>"), "malformed"),
    "nested-fields": (_raw(b"<xml><return_code>SUCCESS</return_code><a><b>1</b></a></xml>"), "malformed"),
    "repeated-field": (_signed_then(lambda body, order: body.replace(b"</xml>", b"<total_fee>1</total_fee></xml>")),
                       "malformed"),
    "gbk-declared": (_signed_then(lambda body, order: b'<?xml version="1.0" encoding="GBK"?>' + body), "charset"),
    "gbk-bytes": (lambda order, key: wechat_pay_xml({**notification_fields(order), "attach": "商场"}).encode("gbk"),
                  "charset"),
    "empty": (_raw(b""), "malformed"),
    "nul-byte": (_raw(b"<xml><return_code>SUCCESS\x00</return_code></xml>"), "malformed"),
}



@pytest.mark.parametrize("case", FORGED)
def test_a_forged_or_mismatched_notification_is_refused_and_changes_nothing(wechat, api_key, settings, request, case):
    make_body, reason = FORGED[case]
    shop = build_shop()
    member = shopper_with_miniapp_openid(points=1_000)
    order = open_order(shop, member, amount_fen=10_000, points_to_use=300)
    body = make_body(order, api_key)
    if case == "over-the-size-limit":
        assert len(body) > settings.PAYMENT_NOTIFY_MAX_BYTES

    answer = answer_of(notify(body))

    assert answer["return_code"] == "FAIL" and answer["return_msg"]
    order.refresh_from_db()
    assert (order.status, order.transaction_id, order.earn_id) == ("created", "", None)
    assert ledger.member_points_balance(member=member) == 700
    assert order_pushes(order) == []
    note = PaymentNotification.objects.get()
    assert (note.outcome, note.reason) == ("rejected", reason)
    assert_ledger_invariants()


# --- closing ----------------------------------------------------------------------------


def test_an_unpaid_order_is_closed_at_wechat_after_fifteen_minutes_and_its_points_come_back(wechat, api_key):
    shop = build_shop()
    member = shopper_with_miniapp_openid(points=1_000)
    order = open_order(shop, member, amount_fen=2_000, points_to_use=500)
    wechat.on("/pay/orderquery", lambda fields: wechat.answer(trade_state="NOTPAY", out_trade_no=fields["out_trade_no"]))
    wechat.on("/pay/closeorder", lambda fields: wechat.answer())

    with time_machine.travel(timezone.now() + timedelta(minutes=14)):
        assert tasks.orders_close_stale() == 0
    assert wechat.sent("/pay/orderquery") == []
    with time_machine.travel(timezone.now() + timedelta(minutes=16)):
        assert tasks.orders_close_stale() == 1

    order.refresh_from_db()
    assert order.status == "closed"
    assert [request.path for request in wechat.server.requests][1:] == ["/pay/orderquery", "/pay/closeorder"]
    [query], [close] = wechat.sent("/pay/orderquery"), wechat.sent("/pay/closeorder")
    assert (query["out_trade_no"], close["out_trade_no"], close["appid"], close["mch_id"]) == (
        order.out_trade_no, order.out_trade_no, APP_ID, MCH_ID)
    assert wechat_pay_signature_valid(close, api_key)
    assert ledger.member_points_balance(member=member) == 1_000
    assert_ledger_invariants()


def test_a_stale_order_wechat_says_is_paid_is_booked_instead_of_closed(wechat):
    shop = build_shop()
    member = shopper_with_miniapp_openid(points=1_000, openid="o-mini-9")
    order = open_order(shop, member, amount_fen=2_000, points_to_use=500)
    wechat.on("/pay/orderquery", lambda fields: wechat.answer(
        appid=MINIAPP_ID, trade_state="SUCCESS", out_trade_no=fields["out_trade_no"], transaction_id="4200000000000001",
        total_fee="1500", cash_fee="1500", openid="o-mini-9", time_end="20250301120000", trade_type="JSAPI"))

    with time_machine.travel(timezone.now() + timedelta(minutes=16)):
        assert tasks.orders_close_stale() == 0

    order.refresh_from_db()
    assert (order.status, order.transaction_id) == ("paid", "4200000000000001")
    assert order.paid_at == dt.datetime(2025, 3, 1, 12, tzinfo=SHANGHAI)
    assert wechat.sent("/pay/closeorder") == []
    assert ledger.member_points_balance(member=member) == 500 + 15
    assert len(order_pushes(order)) == 1
    assert_ledger_invariants()


@pytest.mark.parametrize(
    ("trade_state", "expected"),
    [("SUCCESS", TradeState.PAID), ("REFUND", TradeState.PAID), ("NOTPAY", TradeState.PENDING),
     ("USERPAYING", TradeState.PENDING), ("CLOSED", TradeState.CLOSED), ("REVOKED", TradeState.CLOSED),
     ("PAYERROR", TradeState.CLOSED)],
)
def test_a_query_tells_the_trade_state_in_our_words(wechat, trade_state, expected):
    wechat.on("/pay/orderquery", lambda fields: wechat.answer(
        appid=fields["appid"], trade_state=trade_state, out_trade_no=fields["out_trade_no"],
        transaction_id="4200000000000002", total_fee="1500", openid="o-oa-1", sub_mch_id="1900000555",
        time_end="20250301120000"))

    payment = gateway_for("wechat_v2").query(out_trade_no="P1", sub_merchant_id="1900000555")

    assert (payment.state, payment.amount_fen, payment.transaction_id) == (expected, 1_500, "4200000000000002")
    assert (payment.payer_id, payment.payer_channel, payment.sub_merchant_id) == (
        "o-oa-1", "wechat_openid", "1900000555")
    [sent] = wechat.sent("/pay/orderquery")
    assert (sent["appid"], sent["out_trade_no"], sent["sub_mch_id"]) == (APP_ID, "P1", "1900000555")


def test_a_trade_wechat_never_heard_of_is_not_found_under_either_appid(wechat):
    wechat.on("/pay/orderquery", lambda fields: wechat.refusal("ORDERNOTEXIST"))

    assert gateway_for("wechat_v2").query(out_trade_no="P404").state == TradeState.NOT_FOUND
    assert [sent["appid"] for sent in wechat.sent("/pay/orderquery")] == [APP_ID, MINIAPP_ID]


def test_a_trade_opened_in_the_miniapp_is_found_under_its_appid(wechat):
    paid = wechat.answer(appid=MINIAPP_ID, trade_state="SUCCESS", out_trade_no="P2", transaction_id="42",
                         total_fee="10", openid="o-mini-2")
    wechat.on("/pay/orderquery", lambda fields: wechat.refusal("ORDERNOTEXIST") if fields["appid"] == APP_ID else paid)

    payment = gateway_for("wechat_v2").query(out_trade_no="P2")

    assert (payment.state, payment.payer_id, payment.payer_channel) == (TradeState.PAID, "o-mini-2", "miniapp_openid")


def test_closing_a_trade_paid_meanwhile_is_refused_and_a_closed_one_is_fine(wechat):
    gateway = gateway_for("wechat_v2")
    wechat.on("/pay/closeorder", lambda fields: wechat.refusal("ORDERPAID"))
    with pytest.raises(PlatformRejected) as refused:
        gateway.close(out_trade_no="P3")
    assert refused.value.platform_code == "ORDERPAID"

    wechat.on("/pay/closeorder", lambda fields: wechat.refusal("ORDERCLOSED"))
    assert gateway.close(out_trade_no="P3") is None


def test_an_order_wechat_refuses_to_close_because_it_was_paid_stays_open_for_the_next_run(wechat):
    shop = build_shop()
    member = shopper_with_miniapp_openid(points=1_000)
    order = open_order(shop, member, amount_fen=2_000, points_to_use=500)
    wechat.on("/pay/orderquery",
              lambda fields: wechat.answer(trade_state="USERPAYING", out_trade_no=fields["out_trade_no"]))
    wechat.on("/pay/closeorder", lambda fields: wechat.refusal("ORDERPAID"))

    with time_machine.travel(timezone.now() + timedelta(minutes=16)):
        assert tasks.orders_close_stale() == 0

    order.refresh_from_db()
    assert order.status == "created" and ledger.member_points_balance(member=member) == 500


# --- refunds ----------------------------------------------------------------------------


@pytest.mark.usefixtures("merchant_certificate")
def test_a_refund_is_sent_signed_with_the_certificate_and_takes_back_points(wechat, api_key):
    shop = build_shop()
    member = shopper_with_miniapp_openid(points=1_000)
    order = paid_order(wechat, shop, member, amount_fen=10_000, points_to_use=800)
    assert ledger.member_points_balance(member=member) == 292
    wechat.on("/secapi/pay/refund", lambda fields: wechat.answer(
        out_trade_no=fields["out_trade_no"], out_refund_no=fields["out_refund_no"], refund_id="50000000000001",
        refund_fee=fields["refund_fee"], total_fee=fields["total_fee"]))

    response = Api(shop.raw_key).post(f"/api/v1/orders/{order.out_trade_no}/refunds/", {"amount_fen": 5_000}, key="r1")

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["status"], body["cash_fen"], body["points"]) == ("succeeded", 4_600, 400)
    [sent] = wechat.sent("/secapi/pay/refund")
    assert wechat_pay_signature_valid(sent, api_key)
    assert {name: sent[name] for name in ("appid", "mch_id", "out_trade_no", "transaction_id", "out_refund_no",
                                          "total_fee", "refund_fee", "notify_url")} == {
        "appid": APP_ID, "mch_id": MCH_ID, "out_trade_no": order.out_trade_no, "transaction_id": order.transaction_id,
        "out_refund_no": body["out_refund_no"], "total_fee": "9200", "refund_fee": "4600", "notify_url": NOTIFY_URL,
    }
    refund = OrderRefund.objects.get()
    assert (refund.status, refund.refund_id) == ("succeeded", "50000000000001")
    # 46 of the 92 points earned go back with half the cash; 400 of the 800 points used return.
    assert ledger.member_points_balance(member=member) == 292 - 46 + 400
    order.refresh_from_db()
    assert (order.status, order.refunded_fen) == ("partially_refunded", 5_000)
    assert_ledger_invariants()


@pytest.mark.usefixtures("merchant_certificate")
def test_a_refund_wechat_refuses_fails_and_moves_no_points(wechat):
    shop = build_shop()
    member = shopper_with_miniapp_openid(points=1_000)
    order = paid_order(wechat, shop, member, amount_fen=10_000, points_to_use=800)
    wechat.on("/secapi/pay/refund", lambda fields: wechat.refusal("NOTENOUGH"))

    response = Api(shop.raw_key).post(f"/api/v1/orders/{order.out_trade_no}/refunds/", {"amount_fen": 10_000})

    assert response.status_code == 201, response.content
    assert response.json()["status"] == "failed" and "NOTENOUGH" in response.json()["failure"]
    order.refresh_from_db()
    assert (order.status, order.refunded_fen) == ("paid", 0)
    assert ledger.member_points_balance(member=member) == 292
    assert_ledger_invariants()


@pytest.mark.usefixtures("merchant_certificate")
def test_a_refund_notification_settles_a_refund_left_pending(wechat, api_key):
    shop = build_shop()
    member = shopper_with_miniapp_openid(points=1_000)
    order = paid_order(wechat, shop, member, amount_fen=10_000, points_to_use=800)
    wechat.server.script("/secapi/pay/refund", Reply(status=500, body="busy", content_type="text/plain"))
    response = Api(shop.raw_key).post(f"/api/v1/orders/{order.out_trade_no}/refunds/", {"amount_fen": 10_000})
    assert response.json()["status"] == "pending"
    out_refund_no = response.json()["out_refund_no"]
    refund_fields = {
        "transaction_id": order.transaction_id, "out_trade_no": order.out_trade_no, "refund_id": "50000000000002",
        "out_refund_no": out_refund_no, "total_fee": "9200", "refund_fee": "9200", "settlement_refund_fee": "9200",
        "refund_status": "SUCCESS", "success_time": "2025-03-01 12:00:00", "refund_recv_accout": "招商银行信用卡0403",
        "refund_account": "REFUND_SOURCE_RECHARGE_FUNDS", "refund_request_source": "API",
    }
    forged = wechat_pay_refund_notification(refund_fields, appid=APP_ID, mch_id=MCH_ID, api_key=secrets.token_hex(16))

    assert answer_of(notify(forged.encode())) == {"return_code": "FAIL", "return_msg": "decrypt_failed"}
    assert OrderRefund.objects.get().status == "pending"

    genuine = wechat_pay_refund_notification(refund_fields, appid=APP_ID, mch_id=MCH_ID, api_key=api_key)
    assert answer_of(notify(genuine.encode())) == {"return_code": "SUCCESS", "return_msg": "OK"}

    refund = OrderRefund.objects.get()
    assert (refund.status, refund.refund_id) == ("succeeded", "50000000000002")
    order.refresh_from_db()
    assert order.status == "refunded"
    assert ledger.member_points_balance(member=member) == 1_000
    assert list(PaymentNotification.objects.filter(kind="refund").values_list("outcome", "out_trade_no")) == [
        ("processed", order.out_trade_no)]
    # Told again: acknowledged, nothing moves.
    assert answer_of(notify(genuine.encode()))["return_code"] == "SUCCESS"
    assert ledger.member_points_balance(member=member) == 1_000
    assert_ledger_invariants()


@pytest.mark.parametrize(
    ("refund_status", "expected"),
    [("SUCCESS", RefundState.SUCCEEDED), ("PROCESSING", RefundState.PENDING), ("CHANGE", RefundState.FAILED),
     ("REFUNDCLOSE", RefundState.FAILED)],
)
def test_a_refund_query_tells_the_refund_state_in_our_words(wechat, refund_status, expected):
    wechat.on("/pay/refundquery", lambda fields: wechat.answer(
        out_trade_no="P5", refund_count="1", out_refund_no_0=fields["out_refund_no"], refund_id_0="50000000000003",
        refund_fee_0="600", refund_status_0=refund_status))

    result = gateway_for("wechat_v2").refund_query(out_trade_no="P5", out_refund_no="P5R1")

    assert (result.out_refund_no, result.state, result.refund_id, result.refund_fen) == (
        "P5R1", expected, "50000000000003", 600)
    assert wechat.sent("/pay/refundquery")[0]["out_refund_no"] == "P5R1"


def test_a_refund_without_the_merchant_certificate_is_refused_before_calling(wechat):
    request = RefundRequest(out_trade_no="P6", out_refund_no="P6R1", refund_fen=1, total_fen=1)

    with pytest.raises(PlatformRejected) as refused:
        gateway_for("wechat_v2").refund(request)

    assert refused.value.platform_code == "CERT_REQUIRED"
    assert wechat.server.requests == []


@pytest.mark.usefixtures("merchant_certificate")
def test_a_refund_whose_certificate_file_is_missing_fails_without_a_500(wechat, settings, tmp_path):
    shop = build_shop()
    member = shopper_with_miniapp_openid(points=1_000)
    order = paid_order(wechat, shop, member, amount_fen=10_000, points_to_use=800)
    # requests is handed the files: one it cannot find stops the call before anything is sent.
    settings.WECHAT_PAY_CERT_PATH = str(tmp_path / "missing.pem")
    wechat.on("/secapi/pay/refund", lambda fields: wechat.refusal("SHOULD_NOT_BE_CALLED"))

    response = Api(shop.raw_key).post(f"/api/v1/orders/{order.out_trade_no}/refunds/", {"amount_fen": 10_000})

    assert response.status_code == 201, response.content
    assert response.json()["status"] == "failed" and "readable files" in response.json()["failure"]
    assert wechat.sent("/secapi/pay/refund") == []
    assert ledger.member_points_balance(member=member) == 292


# --- a POS's Native QR --------------------------------------------------------------------


def test_a_native_qr_is_paid_by_a_new_shopper_who_becomes_a_member_and_earns(wechat, api_key):
    shop = build_shop()

    response = Api(shop.raw_key).post(
        "/api/v1/orders/", {"store_code": shop.store.code, "amount_fen": 3_800, "channel": "wechat"})

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["code_url"].startswith("weixin://wxpay/bizpayurl?pr=")
    [sent] = wechat.sent("/pay/unifiedorder")
    assert wechat_pay_signature_valid(sent, api_key)
    assert (sent["appid"], sent["trade_type"], sent["product_id"], sent["total_fee"]) == (
        APP_ID, "NATIVE", body["out_trade_no"], "3800")
    assert "openid" not in sent
    order = Order.objects.get(out_trade_no=body["out_trade_no"])
    assert order.member_id is None

    answer = answer_of(notify(signed(notification_fields(order, openid="o-oa-new"), api_key)))

    assert answer["return_code"] == "SUCCESS"
    order.refresh_from_db()
    identity = Identity.objects.get(channel=Identity.Channel.WECHAT_OPENID, external_id="o-oa-new")
    assert (order.status, order.member_id, order.payer_id) == ("paid", identity.member_id, "o-oa-new")
    assert ledger.member_points_balance(member=identity.member) == 38
    assert len(order_pushes(order)) == 1
    assert_ledger_invariants()


# --- partner mode and the charge itself -----------------------------------------------------


def test_a_sub_merchants_order_names_it_and_its_payment_must_name_it_back(wechat, api_key):
    shop = build_shop()
    shop.merchant.wechat_sub_mch_id = "1900000777"
    shop.merchant.save(update_fields=["wechat_sub_mch_id"])
    member = shopper_with_miniapp_openid(openid="o-mini-3")
    order = open_order(shop, member, amount_fen=2_000)

    [sent] = wechat.sent("/pay/unifiedorder")
    assert wechat_pay_signature_valid(sent, api_key)
    assert (sent["sub_mch_id"], sent["appid"], sent["openid"]) == ("1900000777", MINIAPP_ID, "o-mini-3")
    assert (order.collector, order.sub_merchant_id) == ("partner", "1900000777")

    assert answer_of(notify(signed(notification_fields(order), api_key)))["return_msg"] == "merchant_mismatch"
    named = signed(notification_fields(order, sub_mch_id="1900000777"), api_key)
    assert answer_of(notify(named))["return_code"] == "SUCCESS"
    order.refresh_from_db()
    assert order.status == "paid"


def test_a_jsapi_charge_is_paid_under_the_official_account_with_a_body_cut_to_127_bytes(wechat, api_key):
    request = ChargeRequest(
        out_trade_no="P7", amount_fen=1, description="商场" * 50, client="jsapi", notify_url=NOTIFY_URL,
        time_expire=dt.datetime(2025, 3, 1, 4, 15, tzinfo=dt.UTC), payer_id="o-oa-7", client_ip="10.1.2.3",
    )

    result = gateway_for("wechat_v2").charge(request)

    [sent] = wechat.sent("/pay/unifiedorder")
    assert (sent["appid"], sent["openid"], sent["spbill_create_ip"]) == (APP_ID, "o-oa-7", "10.1.2.3")
    assert sent["time_expire"] == "20250301121500"
    assert sent["body"] == "商场" * 21 and len(sent["body"].encode()) == 126
    assert result.pay_params["appId"] == APP_ID


def test_a_charge_from_a_client_v2_does_not_serve_is_refused_without_a_call(wechat):
    request = ChargeRequest(out_trade_no="P8", amount_fen=1, description="x", client="wap", notify_url=NOTIFY_URL,
                            time_expire=timezone.now())

    with pytest.raises(ClientUnsupported):
        gateway_for("wechat_v2").charge(request)
    assert wechat.server.requests == []
