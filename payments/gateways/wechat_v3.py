"""WeChat Pay APIv3, spoken through our own client (``core.platforms.wechat_pay_v3``).

The client signs requests, verifies every answer and notification (WeChat Pay's public
key or platform certificate, a 5-minute timestamp window, AEAD_AES_256_GCM) and fails
with its own ``WeChatPayV3Error`` kinds. This gateway turns those into the
``PlatformError`` kinds every caller knows, and WeChat Pay's words into ours.

A verified notification must still be ours: the merchant number it names (``mchid``,
or ``sp_mchid`` in partner mode) is WECHAT_PAY_MCH_ID, and a payment's app (``appid``
or ``sp_appid``) is the official account's or the mini-program's. Whether it matches
its order (amount, sub-merchant) is ``payments.orders``' business.
"""

import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import quote

from django.conf import settings

from core.platforms import PlatformBadResponse, PlatformError, PlatformRejected, PlatformUnavailable
from core.platforms import wechat_pay_v3 as v3
from members.models import Identity
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

logger = logging.getLogger(__name__)

PLATFORM = "wechat_pay"

_TRADE_STATES = {
    "SUCCESS": TradeState.PAID,
    "REFUND": TradeState.PAID,  # paid, then (partly) refunded: the payment happened
    "NOTPAY": TradeState.PENDING,
    "USERPAYING": TradeState.PENDING,
    "ACCEPT": TradeState.PENDING,  # received, the debit not done yet
    "CLOSED": TradeState.CLOSED,
    "REVOKED": TradeState.CLOSED,
    "PAYERROR": TradeState.CLOSED,
}
_REFUND_STATES = {
    "SUCCESS": RefundState.SUCCEEDED,
    "PROCESSING": RefundState.PENDING,
    "CLOSED": RefundState.FAILED,
    "ABNORMAL": RefundState.FAILED,
}
_REFUND_FAILURES = {
    "CLOSED": "closed by WeChat Pay: nothing was refunded",
    "ABNORMAL": "abnormal: the payer's account or card could not take the money back",
}
_REFUND_EVENTS = ("REFUND.SUCCESS", "REFUND.ABNORMAL", "REFUND.CLOSED")
# APIv3 spells "no such order" ORDER_NOT_EXIST; the v2 spelling has been seen from some APIv3 endpoints too.
_ORDER_NOT_FOUND = frozenset({"ORDER_NOT_EXIST", "ORDERNOTEXIST"})
_ORDER_CLOSED = frozenset({"ORDER_CLOSED", "ORDERCLOSED"})
_REFUND_NOT_FOUND = frozenset({"RESOURCE_NOT_EXISTS"})
REFUND_REASON_MAX = 80  # characters WeChat Pay accepts in a refund's reason

# The client refuses a notification with a sentence; stored rows and logs want a
# stable word. By how the sentence begins (tests pin each one).
_REFUSALS = (
    ("missing Wechatpay-", "signature_missing"),
    ("Wechatpay-Timestamp is more than", "stale"),
    ("unknown Wechatpay-Serial", "serial_unknown"),
    ("malformed Wechatpay-Timestamp", "signature_invalid"),
    ("malformed signature headers", "signature_invalid"),
    ("Wechatpay-Signature", "signature_invalid"),
    ("resource does not decrypt", "decrypt_failed"),
    ("body too large", "too_large"),
)


class _Malformed(ValueError):
    """WeChat Pay's JSON is not shaped as documented."""


def refusal_reason(client_reason: str) -> str:
    """The stable reason for one of the client's ``WeChatPayV3BadNotification`` reasons."""
    for start, reason in _REFUSALS:
        if client_reason.startswith(start):
            return reason
    return "malformed"


def _platform_error(exc: v3.WeChatPayV3Error) -> PlatformError:
    if isinstance(exc, v3.WeChatPayV3Rejected):
        return PlatformRejected(
            f"WeChat Pay refused the request ({exc.code}: {exc.message})", platform=PLATFORM, platform_code=exc.code
        )
    if isinstance(exc, v3.WeChatPayV3Unavailable):
        logger.warning("WeChat Pay APIv3 unavailable: %s", exc)
        return PlatformUnavailable("WeChat Pay did not answer")
    logger.warning("WeChat Pay APIv3 answer refused: %s", exc)
    return PlatformBadResponse("WeChat Pay answered something unusable")


def _call(function, /, *args, **kwargs):
    """``function`` of the client, its errors as PlatformError kinds."""
    try:
        return function(*args, **kwargs)
    except v3.WeChatPayV3Error as exc:
        raise _platform_error(exc) from exc


# --- Reading WeChat Pay's JSON ---------------------------------------------------------


def _text(data: Mapping, name: str, *, required: bool = True) -> str:
    value = data.get(name)
    if value is None or value == "":
        if required:
            raise _Malformed(f"{name} missing")
        return ""
    if not isinstance(value, str):
        raise _Malformed(f"{name} is not text")
    return value


def _object(data: Mapping, name: str) -> Mapping:
    value = data.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _Malformed(f"{name} is not an object")
    return value


def _fen(data: Mapping, name: str) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if type(value) is not int or value < 0:  # bool is not fen, nor 12.5, nor "1250"
        raise _Malformed(f"{name} is not a whole number of fen")
    return value


def _moment(text: str) -> datetime | None:
    """RFC 3339 with its offset (``2025-06-08T10:34:56+08:00``), as UTC."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _Malformed("not an RFC 3339 time") from None
    if moment.tzinfo is None:
        raise _Malformed("a time without its offset")
    return moment.astimezone(UTC)


def _payer_channel(appid: str) -> str:
    """Which of our apps the payer's openid belongs to ("" for neither)."""
    if appid and appid == settings.WECHAT_MINIAPP_ID:
        return Identity.Channel.MINIAPP_OPENID
    if appid and appid == settings.WECHAT_APP_ID:
        return Identity.Channel.WECHAT_OPENID
    return ""


def _payment(data: Mapping) -> Payment:
    """A transaction (a query's answer, a TRANSACTION.SUCCESS resource) in our words."""
    state = _TRADE_STATES.get(_text(data, "trade_state"))
    if state is None:
        raise _Malformed(f"unknown trade_state {data.get('trade_state')!r}")
    # amount.total is what the order asked for; payer_total is less when a WeChat coupon paid part.
    amount_fen = _fen(_object(data, "amount"), "total")
    transaction_id = _text(data, "transaction_id", required=state == TradeState.PAID)
    if state == TradeState.PAID and amount_fen is None:
        raise _Malformed("a paid transaction without amount.total")
    payer = _object(data, "payer")
    payer_id = _text(payer, "openid", required=False) or _text(payer, "sp_openid", required=False)
    appid = _text(data, "appid", required=False) or _text(data, "sp_appid", required=False)
    return Payment(
        out_trade_no=_text(data, "out_trade_no"), state=state, transaction_id=transaction_id, amount_fen=amount_fen,
        payer_id=payer_id, payer_channel=_payer_channel(appid) if payer_id else "",
        sub_merchant_id=_text(data, "sub_mchid", required=False),
        paid_at=_moment(_text(data, "success_time", required=False)),
    )


def _refund(data: Mapping) -> RefundResult:
    """A refund (the refund API's answer, a query's, a REFUND.* resource) in our words.
    The API says ``status``, a notification ``refund_status``."""
    status = _text(data, "status", required=False) or _text(data, "refund_status")
    state = _REFUND_STATES.get(status)
    if state is None:
        raise _Malformed(f"unknown refund status {status!r}")
    return RefundResult(
        out_refund_no=_text(data, "out_refund_no"), state=state, refund_id=_text(data, "refund_id", required=False),
        refund_fen=_fen(_object(data, "amount"), "refund"), failure=_REFUND_FAILURES.get(status, ""),
    )


def _answer_of(read, answer, **expected) -> object:
    """``read(answer)``, or PlatformBadResponse when it is not shaped as documented or
    is about another trade or refund than the one asked about."""
    try:
        result = read(answer or {})
    except _Malformed as exc:
        logger.warning("WeChat Pay APIv3 answer unusable: %s", exc)
        raise PlatformBadResponse("WeChat Pay answered something unusable") from None
    for name, value in expected.items():
        if getattr(result, name) != value:
            logger.warning("WeChat Pay APIv3 answered about %s %r, not %r", name, getattr(result, name), value)
            raise PlatformBadResponse("WeChat Pay answered about another trade")
    return result


def _ours(resource: Mapping, *, with_app: bool) -> None:
    """NotificationRejected unless ``resource`` is for our merchant number (and app)."""
    mch_id = _text(resource, "mchid", required=False) or _text(resource, "sp_mchid", required=False)
    if not mch_id or mch_id != settings.WECHAT_PAY_MCH_ID:
        raise NotificationRejected("merchant_mismatch", f"for merchant {mch_id[:32]!r}")
    if with_app:
        appid = _text(resource, "appid", required=False) or _text(resource, "sp_appid", required=False)
        if not appid or appid not in {settings.WECHAT_APP_ID, settings.WECHAT_MINIAPP_ID} - {""}:
            raise NotificationRejected("app_mismatch", f"for app {appid[:32]!r}")


class WeChatPayV3Gateway(Gateway):
    name = "wechat_v3"

    def charge(self, request: ChargeRequest) -> ChargeResult:
        """JSAPI (official-account pages), mini-program, or Native (a QR on the POS)."""
        if request.client in ("jsapi", "native"):
            appid = settings.WECHAT_APP_ID
        elif request.client == "miniapp":
            appid = settings.WECHAT_MINIAPP_ID
        else:
            # Raised as the platform's refusal so the order is closed and its points go back.
            raise PlatformRejected(f"no WeChat Pay {request.client} payments here", platform=PLATFORM,
                                   platform_code="CLIENT_UNSUPPORTED")
        order = {
            "description": request.description, "out_trade_no": request.out_trade_no, "amount_fen": request.amount_fen,
            "notify_url": request.notify_url, "time_expire": request.time_expire, "appid": appid,
            "sub_mchid": request.sub_merchant_id or None,
        }
        if request.client == "native":
            return ChargeResult(pay_params={"code_url": _call(v3.native_prepay, **order)})
        if not request.payer_id:
            raise PlatformRejected("a JSAPI payment needs the payer's openid", platform=PLATFORM,
                                   platform_code="PAYER_MISSING")
        prepay_id = _call(v3.jsapi_prepay, payer_openid=request.payer_id, **order)
        return ChargeResult(pay_params=_call(v3.jsapi_pay_params, appid=appid, prepay_id=prepay_id))

    def query(self, *, out_trade_no: str, sub_merchant_id: str = "", app_auth_token: str = "") -> Payment:
        try:
            answer = _call(v3.transaction_by_out_trade_no, out_trade_no, sub_mchid=sub_merchant_id or None)
        except PlatformRejected as exc:
            if exc.platform_code in _ORDER_NOT_FOUND:
                return Payment(out_trade_no=out_trade_no, state=TradeState.NOT_FOUND)
            raise
        return _answer_of(_payment, answer, out_trade_no=out_trade_no)

    def close(self, *, out_trade_no: str, sub_merchant_id: str = "", app_auth_token: str = "") -> None:
        """Closed already, or never opened: done. Any other refusal (a paid trade:
        ORDERPAID) is PlatformRejected with WeChat Pay's code; the caller asks again later."""
        try:
            _call(v3.close, out_trade_no, sub_mchid=sub_merchant_id or None)
        except PlatformRejected as exc:
            if exc.platform_code in _ORDER_CLOSED | _ORDER_NOT_FOUND:
                return
            raise

    def refund(self, request: RefundRequest) -> RefundResult:
        answer = _call(
            v3.refund, out_trade_no=request.out_trade_no, out_refund_no=request.out_refund_no,
            refund_fen=request.refund_fen, total_fen=request.total_fen, notify_url=request.notify_url,
            reason=request.reason[:REFUND_REASON_MAX], sub_mchid=request.sub_merchant_id or None,
        )
        return _answer_of(_refund, answer, out_refund_no=request.out_refund_no)

    def refund_query(
        self, *, out_trade_no: str, out_refund_no: str, sub_merchant_id: str = "", app_auth_token: str = ""
    ) -> RefundResult:
        # The client has no helper for it: GET /v3/refund/domestic/refunds/{out_refund_no}.
        path = f"/v3/refund/domestic/refunds/{quote(out_refund_no, safe='')}"
        if sub_merchant_id:
            path += f"?sub_mchid={quote(sub_merchant_id, safe='')}"
        try:
            answer = _call(v3.request, "GET", path)
        except PlatformRejected as exc:
            if exc.platform_code in _REFUND_NOT_FOUND:
                return RefundResult(out_refund_no=out_refund_no, state=RefundState.FAILED, failure="no such refund")
            raise
        return _answer_of(_refund, answer, out_refund_no=out_refund_no)

    def parse_notification(self, *, headers: Mapping[str, str], body: bytes) -> Notification:
        """TRANSACTION.SUCCESS: a payment; REFUND.SUCCESS / ABNORMAL / CLOSED: a refund.

        Any other event WeChat Pay signed (it adds kinds over time) is acknowledged with
        nothing to do: refusing it would only make WeChat Pay send it again for a day.
        """
        try:
            event = v3.notification_verify_and_decrypt(headers, body)
        except v3.WeChatPayV3BadNotification as exc:
            raise NotificationRejected(refusal_reason(exc.reason), exc.reason) from None
        event_type, resource = event["event_type"], event["resource"]
        try:
            if event_type == "TRANSACTION.SUCCESS":
                _ours(resource, with_app=True)
                payment = _payment(resource)
                return Notification(payment=payment, out_trade_no=payment.out_trade_no)
            if event_type in _REFUND_EVENTS:
                # Refund resources name the merchant only, not the app.
                _ours(resource, with_app=False)
                return Notification(refund=_refund(resource), out_trade_no=_text(resource, "out_trade_no"))
            out_trade_no = resource.get("out_trade_no")
            return Notification(out_trade_no=out_trade_no[:64] if isinstance(out_trade_no, str) else "")
        except _Malformed as exc:
            raise NotificationRejected("malformed", str(exc)) from None

    def acknowledge(self, *, ok: bool, message: str = "") -> Acknowledgement:
        """Success: 204 without a body (APIv3 takes 200 or 204). Failure: a 4xx with
        ``{"code": "FAIL", "message"}``, and WeChat Pay sends the notification again."""
        if ok:
            return Acknowledgement(status=204)
        body = json.dumps({"code": "FAIL", "message": message or "failed"}, ensure_ascii=False).encode()
        return Acknowledgement(status=400, body=body, content_type="application/json")


__all__ = ["WeChatPayV3Gateway", "refusal_reason"]
