"""WeChat Pay v2 (XML, through wechatpy): payments from the official account's pages
(JSAPI), from the mini-program and by a Native QR; closing, refunds, and the payment and
refund notifications that arrive at /payments/notify/wechat/.

Every call goes through ``core.platforms.wechat_pay_client``, which keeps it on
WECHAT_PAY_API_BASE_URL, accepts only answers signed with our API key, refuses XML with
a DTD and fails with a ``PlatformError``. A refusal of WeChat Pay arrives as
``PlatformRejected`` whose ``platform_code`` is its err_code (ORDERNOTEXIST, ORDERPAID…).

One merchant number may pay under two appids (the official account and the
mini-program), with one API key. A JSAPI payment's openid belongs to the appid the
trade was opened under, so ``charge`` picks the client by ``request.client``; the
other calls are not told the client, and ask under each configured appid in turn.
"""

import codecs
import hmac
import re
from collections.abc import Mapping
from datetime import datetime
from xml.etree.ElementTree import ParseError
from zoneinfo import ZoneInfo

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as defused_fromstring
from django.conf import settings
from wechatpy.pay.utils import calculate_signature, calculate_signature_hmac

from core import platforms
from core.errors import PlatformError
from core.platforms import PlatformBadNotification, PlatformBadResponse, PlatformRejected, WeChatPayClient
from payments.gateways.base import (
    Acknowledgement,
    ChargeRequest,
    ChargeResult,
    Gateway,
    Notification,
    NotificationRejected,
    Payment,
    RefundRequest,
    RefundResult,
    RefundState,
    TradeState,
)

# WeChat Pay's clock: time_expire, time_end and success_time are local times in Beijing.
WECHAT_PAY_TIMEZONE = ZoneInfo("Asia/Shanghai")
TIME_FORMAT = "%Y%m%d%H%M%S"
BODY_MAX_BYTES = 127  # the unified order's ``body`` is at most 128 bytes
REFUND_DESC_MAX_BYTES = 80

# Order.Client → the unified order's trade_type.
_TRADE_TYPES = {"jsapi": "JSAPI", "miniapp": "JSAPI", "native": "NATIVE"}

_TRADE_STATES = {
    "SUCCESS": TradeState.PAID,
    "REFUND": TradeState.PAID,  # paid, then (partly) refunded: still a payment
    "NOTPAY": TradeState.PENDING,
    "USERPAYING": TradeState.PENDING,
    "CLOSED": TradeState.CLOSED,
    "REVOKED": TradeState.CLOSED,
    "PAYERROR": TradeState.CLOSED,
}

_REFUND_STATES = {
    "SUCCESS": RefundState.SUCCEEDED,
    "PROCESSING": RefundState.PENDING,
    "CHANGE": RefundState.FAILED,  # abnormal: the money could not go back to the payer's account
    "REFUNDCLOSE": RefundState.FAILED,
}

_SIGNERS = {"MD5": calculate_signature, "HMAC-SHA256": calculate_signature_hmac}

_ENCODING_DECLARED = re.compile(rb"""\A\s*<\?xml[^>]*?\bencoding\s*=\s*["']([^"']*)["']""")
_FEN = re.compile(r"[0-9]{1,12}")


class ClientUnsupported(PlatformError):
    """WeChat Pay v2 pays in the official account's pages, in the mini-program or by a Native QR."""

    code = "channel_unavailable"
    status = 400


class CertificateMissing(PlatformRejected):
    """WeChat Pay refunds only a caller presenting the merchant certificate
    (WECHAT_PAY_CERT_PATH and WECHAT_PAY_KEY_PATH)."""


# --- calls ----------------------------------------------------------------------------


class _ForSubMerchant:
    """The shared client, naming ``sub_mch_id`` in every request (partner mode).

    wechatpy takes a sub-merchant only when a client is built, and clients are built
    once per process (``core.platforms``); so it rides along with each request's fields,
    where it is signed like the rest.
    """

    def __init__(self, client: WeChatPayClient, sub_mch_id: str):
        self._client = client
        self._sub_mch_id = sub_mch_id

    def __getattr__(self, name):
        return getattr(self._client, name)

    def post(self, url, **kwargs):
        kwargs["data"] = {**kwargs["data"], "sub_mch_id": self._sub_mch_id}
        return self._client.post(url, **kwargs)


def _api(client: WeChatPayClient, name: str, sub_merchant_id: str):
    """wechatpy's ``client.<name>`` (order, refund), speaking for ``sub_merchant_id`` if given."""
    endpoint = getattr(client, name)
    return type(endpoint)(_ForSubMerchant(client, sub_merchant_id)) if sub_merchant_id else endpoint


def _clients() -> list[WeChatPayClient]:
    """A client for each appid configured to pay, the official account's first."""
    apps = [
        for_miniapp for for_miniapp in (False, True) if platforms.wechat_pay_configured(for_miniapp=for_miniapp)
    ]
    if apps == [False, True] and settings.WECHAT_MINIAPP_ID == settings.WECHAT_APP_ID:
        apps = [False]
    if not apps:
        return [platforms.wechat_pay_client()]  # ImproperlyConfigured, saying what to set
    return [platforms.wechat_pay_client(for_miniapp=for_miniapp) for for_miniapp in apps]


def _utf8_truncated(text: str, max_bytes: int) -> str:
    """``text`` cut to ``max_bytes`` of UTF-8, never inside a character."""
    return text.encode("utf-8")[:max_bytes].decode("utf-8", "ignore")


def _text(data: Mapping, name: str) -> str:
    value = data.get(name)
    return value if isinstance(value, str) else ""


def _wechat_time(value: str) -> datetime | None:
    try:
        return datetime.strptime(value, TIME_FORMAT).replace(tzinfo=WECHAT_PAY_TIMEZONE)
    except (TypeError, ValueError):
        return None


def _payer_channel(appid: str) -> str:
    """members.models.Identity.Channel of an openid under ``appid``."""
    if settings.WECHAT_MINIAPP_ID and appid == settings.WECHAT_MINIAPP_ID:
        return "miniapp_openid"
    return "wechat_openid"


def _payment(data: Mapping, *, out_trade_no: str, state: TradeState) -> Payment:
    """A trade as WeChat Pay describes it (a query's answer, a notification).

    ValueError: a paid trade without an amount in whole fen.
    """
    total_fee = _text(data, "total_fee")
    if _FEN.fullmatch(total_fee):
        amount_fen = int(total_fee)
    elif state == TradeState.PAID:
        raise ValueError(f"total_fee {total_fee!r} is not a whole number of fen")
    else:
        amount_fen = None
    openid = _text(data, "openid")
    return Payment(
        out_trade_no=out_trade_no, state=state, transaction_id=_text(data, "transaction_id"), amount_fen=amount_fen,
        payer_id=openid, payer_channel=_payer_channel(_text(data, "appid")) if openid else "",
        sub_merchant_id=_text(data, "sub_mch_id"), paid_at=_wechat_time(_text(data, "time_end")),
    )


# --- notifications --------------------------------------------------------------------


def _flat_xml(body: bytes) -> dict[str, str]:
    """The fields of a WeChat Pay notification (``<xml><name>value</name>…</xml>``).

    Refused: anything but UTF-8 (declared otherwise, or not decodable), a DTD or entity
    (expansion bombs, external references), and any other shape (nested or repeated
    fields): the signature covers one flat list of names and values.
    """
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        raise NotificationRejected("charset") from None
    declared = _ENCODING_DECLARED.match(body.removeprefix(codecs.BOM_UTF8))
    if declared and declared.group(1).lower() not in (b"utf-8", b"utf8"):
        raise NotificationRejected("charset")
    try:
        root = defused_fromstring(body, forbid_dtd=True)
    except DefusedXmlException:
        raise NotificationRejected("dtd") from None
    except ParseError:
        raise NotificationRejected("malformed") from None
    fields: dict[str, str] = {}
    for child in root:
        if len(child) or child.attrib or child.tag in fields:
            raise NotificationRejected("malformed")
        fields[child.tag] = child.text or ""
    if root.tag != "xml" or not fields:
        raise NotificationRejected("malformed")
    return fields


def _client_for_notification(data: Mapping[str, str]) -> WeChatPayClient:
    """The client of the notification's appid, once appid and mch_id are ours."""
    appid = data.get("appid", "")
    if appid and appid == settings.WECHAT_APP_ID:
        for_miniapp = False
    elif appid and appid == settings.WECHAT_MINIAPP_ID:
        for_miniapp = True
    else:
        raise NotificationRejected("app_mismatch")
    if data.get("mch_id", "") != settings.WECHAT_PAY_MCH_ID or not platforms.wechat_pay_configured(for_miniapp=for_miniapp):
        raise NotificationRejected("merchant_mismatch")
    return platforms.wechat_pay_client(for_miniapp=for_miniapp)


def _signed_with(data: Mapping[str, str], api_key: str) -> bool:
    """Signed with our API key, the way its sign_type says (MD5 unless told otherwise)."""
    signer = _SIGNERS.get(data.get("sign_type") or "MD5")
    if signer is None:
        return False
    unsigned = {name: value for name, value in data.items() if name != "sign"}
    # As bytes: compare_digest refuses str with anything but ASCII, and a forger may send that.
    return hmac.compare_digest(data.get("sign", "").encode(), signer(unsigned, api_key).encode())


def _payment_notification(data: dict[str, str]) -> Notification:
    client = _client_for_notification(data)
    if not _signed_with(data, client.api_key):
        raise NotificationRejected("signature_invalid")
    # WeChat Pay notifies successes only; a FAIL is nothing to book.
    if data.get("result_code") != "SUCCESS":
        raise NotificationRejected("not_success")
    out_trade_no, transaction_id = data.get("out_trade_no", ""), data.get("transaction_id", "")
    if not out_trade_no or not transaction_id:
        raise NotificationRejected("malformed")
    try:
        payment = _payment(data, out_trade_no=out_trade_no, state=TradeState.PAID)
    except ValueError:
        raise NotificationRejected("malformed") from None
    return Notification(payment=payment, out_trade_no=out_trade_no)


def _refund_notification(data: dict[str, str], body: bytes) -> Notification:
    # Not signed: req_info is AES-256-ECB under md5(API key), which only WeChat Pay and we know.
    client = _client_for_notification(data)
    try:
        refund = client.parse_refund_notify_result(body)
    except PlatformBadNotification:
        raise NotificationRejected("decrypt_failed") from None
    state = _REFUND_STATES.get(_text(refund, "refund_status"))
    out_refund_no = _text(refund, "out_refund_no")
    refund_fen = refund.get("refund_fee")
    if state is None or not out_refund_no or (refund_fen is not None and type(refund_fen) is not int):
        raise NotificationRejected("malformed")
    result = RefundResult(
        out_refund_no=out_refund_no, state=state, refund_id=_text(refund, "refund_id"), refund_fen=refund_fen,
        failure="" if state == RefundState.SUCCEEDED else f"refund_status {refund['refund_status']}",
    )
    return Notification(refund=result, out_trade_no=_text(refund, "out_trade_no"))


def _cdata(text: str) -> str:
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


# --- the gateway ----------------------------------------------------------------------


class WeChatPayV2Gateway(Gateway):
    name = "wechat_v2"

    def charge(self, request: ChargeRequest) -> ChargeResult:
        trade_type = _TRADE_TYPES.get(request.client)
        if trade_type is None:
            raise ClientUnsupported(extra={"client": request.client})
        client = platforms.wechat_pay_client(for_miniapp=request.client == "miniapp")
        answer = _api(client, "order", request.sub_merchant_id).create(
            trade_type=trade_type,
            body=_utf8_truncated(request.description, BODY_MAX_BYTES) or request.out_trade_no,
            total_fee=request.amount_fen,
            notify_url=request.notify_url,
            client_ip=request.client_ip or platforms.FALLBACK_CLIENT_IP,
            # In partner mode too the payer's openid is under our (the service provider's) appid.
            user_id=(request.payer_id or None) if trade_type == "JSAPI" else None,
            out_trade_no=request.out_trade_no,
            time_expire=request.time_expire.astimezone(WECHAT_PAY_TIMEZONE),
            product_id=request.out_trade_no if trade_type == "NATIVE" else None,
        )
        if trade_type == "NATIVE":
            if not _text(answer, "code_url"):
                raise PlatformBadResponse("WeChat Pay opened a Native trade without a code_url")
            return ChargeResult(pay_params={"code_url": answer["code_url"]})
        if not _text(answer, "prepay_id"):
            raise PlatformBadResponse("WeChat Pay opened a JSAPI trade without a prepay_id")
        return ChargeResult(pay_params=client.jsapi.get_jsapi_params(answer["prepay_id"]))

    def query(self, *, out_trade_no: str, sub_merchant_id: str = "", app_auth_token: str = "") -> Payment:
        for client in _clients():
            try:
                answer = _api(client, "order", sub_merchant_id).query(out_trade_no=out_trade_no)
            except PlatformRejected as exc:
                if exc.platform_code == "ORDERNOTEXIST":
                    continue  # perhaps opened under the other appid
                raise
            state = _TRADE_STATES.get(_text(answer, "trade_state"))
            if state is None:
                raise PlatformBadResponse(f"WeChat Pay answered an unknown trade_state for {out_trade_no}")
            try:
                return _payment(answer, out_trade_no=out_trade_no, state=state)
            except ValueError as exc:
                raise PlatformBadResponse(f"WeChat Pay's answer for {out_trade_no}: {exc}") from None
        return Payment(out_trade_no=out_trade_no, state=TradeState.NOT_FOUND)

    def close(self, *, out_trade_no: str, sub_merchant_id: str = "", app_auth_token: str = "") -> None:
        # ORDERPAID propagates: the trade was paid meanwhile, and the caller books it.
        for client in _clients():
            try:
                _api(client, "order", sub_merchant_id).close(out_trade_no)
            except PlatformRejected as exc:
                if exc.platform_code == "ORDERNOTEXIST":
                    continue
                if exc.platform_code != "ORDERCLOSED":
                    raise
            return

    def refund(self, request: RefundRequest) -> RefundResult:
        if not (settings.WECHAT_PAY_CERT_PATH and settings.WECHAT_PAY_KEY_PATH):
            raise CertificateMissing(
                "WeChat Pay refunds need WECHAT_PAY_CERT_PATH and WECHAT_PAY_KEY_PATH", platform="wechat_pay",
                platform_code="CERT_REQUIRED",
            )
        # A refusal (NOTENOUGH, TRADE_OVERDUE…) propagates as PlatformRejected: nothing was refunded.
        try:
            answer = _api(_clients()[0], "refund", request.sub_merchant_id).apply(
                total_fee=request.total_fen,
                refund_fee=request.refund_fen,
                out_refund_no=request.out_refund_no,
                transaction_id=request.transaction_id or None,
                out_trade_no=request.out_trade_no,
                refund_desc=_utf8_truncated(request.reason, REFUND_DESC_MAX_BYTES) or None,
                notify_url=request.notify_url or None,
            )
        except OSError:
            # requests cannot read the certificate or key files (transport failures
            # arrive as PlatformError, which is no OSError); nothing was sent.
            raise CertificateMissing(
                "WeChat Pay refunds need WECHAT_PAY_CERT_PATH and WECHAT_PAY_KEY_PATH to be readable files",
                platform="wechat_pay", platform_code="CERT_REQUIRED",
            ) from None
        refund_fee = _text(answer, "refund_fee")
        # SUCCESS: WeChat Pay took the refund; a later abnormal outcome (CHANGE) is a
        # matter for the finance team, as the money left the merchant's balance.
        return RefundResult(
            out_refund_no=request.out_refund_no, state=RefundState.SUCCEEDED, refund_id=_text(answer, "refund_id"),
            refund_fen=int(refund_fee) if _FEN.fullmatch(refund_fee) else request.refund_fen,
        )

    def refund_query(
        self, *, out_trade_no: str, out_refund_no: str, sub_merchant_id: str = "", app_auth_token: str = ""
    ) -> RefundResult:
        try:
            answer = _api(_clients()[0], "refund", sub_merchant_id).query(out_refund_no=out_refund_no)
        except PlatformRejected as exc:
            if exc.platform_code == "REFUNDNOTEXIST":
                return RefundResult(out_refund_no=out_refund_no, state=RefundState.FAILED, failure="no such refund")
            raise
        count = _text(answer, "refund_count")
        for n in range(int(count) if _FEN.fullmatch(count) else 0):
            if _text(answer, f"out_refund_no_{n}") != out_refund_no:
                continue
            status = _text(answer, f"refund_status_{n}")
            state = _REFUND_STATES.get(status)
            if state is None:
                raise PlatformBadResponse(f"WeChat Pay answered an unknown refund_status for {out_refund_no}")
            refund_fee = _text(answer, f"refund_fee_{n}")
            return RefundResult(
                out_refund_no=out_refund_no, state=state, refund_id=_text(answer, f"refund_id_{n}"),
                refund_fen=int(refund_fee) if _FEN.fullmatch(refund_fee) else None,
                failure="" if state != RefundState.FAILED else f"refund_status {status}",
            )
        raise PlatformBadResponse(f"WeChat Pay's refund query does not mention {out_refund_no}")

    def parse_notification(self, *, headers: Mapping[str, str], body: bytes) -> Notification:
        # v2 notifications carry no timestamp, so a replay cannot be told from a retry.
        # It is harmless: a payment is booked once (``order_payment_confirm``) and a
        # refund settled once (``refund_settle``); a replay is acknowledged and moves nothing.
        data = _flat_xml(body)
        if data.get("return_code") != "SUCCESS":
            raise NotificationRejected("not_success")
        if "req_info" in data:
            return _refund_notification(data, body)
        return _payment_notification(data)

    def acknowledge(self, *, ok: bool, message: str = "") -> Acknowledgement:
        # WeChat Pay reads the XML, not the status: FAIL (with 200) makes it retry.
        code, text = ("SUCCESS", "OK") if ok else ("FAIL", message or "FAIL")
        body = f"<xml><return_code>{_cdata(code)}</return_code><return_msg>{_cdata(text)}</return_msg></xml>"
        return Acknowledgement(status=200, body=body.encode("utf-8"), content_type="application/xml")


__all__ = ["CertificateMissing", "ClientUnsupported", "WeChatPayV2Gateway"]
