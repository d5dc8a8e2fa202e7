"""Alipay (open platform, RSA2) through python-alipay-sdk: ``core.platforms.alipay``'s
client POSTs every call to ALIPAY_GATEWAY_URL and verifies every answer.

Amounts cross this boundary as yuan strings ("68.00"), never floats: ``core.money``
converts. Alipay reads every time as Beijing time (``ALIPAY_TIMEZONE``). In partner
mode (a tenant collecting with its own Alipay account) each call carries the tenant's
``app_auth_token``.

Alipay answers a refund synchronously, so refunds settle from ``refund``'s answer (or
``refund_query``), not from a notification.
"""

import base64
import binascii
import re
from collections.abc import Mapping
from datetime import datetime
from urllib.parse import parse_qsl

from Cryptodome.Hash import SHA256
from Cryptodome.Signature import PKCS1_v1_5
from django.conf import settings

from core import platforms
from core.money import fen_to_yuan, yuan_to_fen
from core.platforms import ALIPAY_TIMEZONE, PlatformBadResponse, PlatformError, PlatformRejected
from members.identity import alipay_channel_of
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

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"

_STATES = {
    "WAIT_BUYER_PAY": TradeState.PENDING,
    "TRADE_SUCCESS": TradeState.PAID,
    "TRADE_FINISHED": TradeState.PAID,  # paid, and past the time it could be refunded
    "TRADE_CLOSED": TradeState.CLOSED,  # unpaid and timed out, or paid and refunded in full
}

# Refusals that mean "Alipay never heard of this trade": the shopper never opened it.
TRADE_NOT_EXIST = "ACQ.TRADE_NOT_EXIST"
# Refusals after which a refund may or may not have been made: Alipay says to send the
# same request again.
UNKNOWN_OUTCOME = {"ACQ.SYSTEM_ERROR", "isp.unknow-error", "aop.unknow-error", "20000"}

FORM_TYPE = "application/x-www-form-urlencoded"
# The charsets Alipay notifies in (the ``charset`` field); GB2312 is a subset of GBK.
CHARSETS = {"utf-8": "utf-8", "utf8": "utf-8", "gbk": "gbk", "gb2312": "gbk"}
# A notification about a refund carries these besides the trade's fields.
REFUND_FIELDS = ("refund_fee", "gmt_refund", "out_biz_no")
# Alipay writes an amount as yuan with at most two decimals ("68", "68.5", "68.00").
YUAN = re.compile(r"[0-9]{1,12}(\.[0-9]{1,2})?")
# Alipay's field names are words joined by underscores (a JSON body is not a form).
FIELD_NAME = re.compile(r"[A-Za-z0-9_]{1,64}")
# Alipay refuses these in a subject.
SUBJECT_FORBIDDEN = re.compile(r"[/=&]")


def _partner(app_auth_token: str) -> dict:
    return {"app_auth_token": app_auth_token} if app_auth_token else {}


def _alipay_time(moment: datetime) -> str:
    return moment.astimezone(ALIPAY_TIMEZONE).strftime(TIME_FORMAT)


def _moment(text) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=ALIPAY_TIMEZONE)
    except ValueError:
        return None


def _fen(text) -> int | None:
    """Fen of a yuan string as Alipay writes it; None for anything else ("12.345", "1e3", 12.3)."""
    if not isinstance(text, str) or not YUAN.fullmatch(text):
        return None
    return yuan_to_fen(text)


def _payer(user_id, open_id) -> tuple[str, str]:
    """(payer_id, payer_channel): Alipay names a buyer by user_id, or in apps on its
    open_id standard by open_id."""
    if isinstance(user_id, str) and user_id:
        return user_id, Identity.Channel.ALIPAY_USER_ID
    if isinstance(open_id, str) and open_id:
        return open_id, Identity.Channel.ALIPAY_OPEN_ID
    return "", ""


def _text(answer: Mapping, name: str) -> str:
    value = answer.get(name)
    return value if isinstance(value, str) else ""


def _pay_url(query: str) -> str:
    base = settings.ALIPAY_GATEWAY_URL
    return base + ("&" if "?" in base else "?") + query


def _form_fields(headers: Mapping[str, str], body: bytes) -> tuple[dict[str, str], str]:
    """The notification's fields, decoded in the charset it names, and that charset.

    The body is split on bytes first (percent-decoded to Latin-1, which keeps every
    byte as it is), because which charset the values are in is itself one of them.
    """
    content_type = next((value for name, value in headers.items() if name.lower() == "content-type"), "")
    if content_type and content_type.split(";")[0].strip().lower() != FORM_TYPE:
        raise NotificationRejected("malformed", "not a form")
    try:
        pairs = parse_qsl(
            body.decode("latin-1"), keep_blank_values=True, strict_parsing=True, encoding="latin-1", max_num_fields=200
        )
    except ValueError:
        raise NotificationRejected("malformed", "not a form") from None
    raw = dict(pairs)
    if not raw or len(raw) != len(pairs) or not all(FIELD_NAME.fullmatch(name) for name in raw):
        # Empty, not Alipay's fields, or a field given twice: which one would the signature be about?
        raise NotificationRejected("malformed", "empty, unknown or repeated fields")
    charset = CHARSETS.get(raw.get("charset", "utf-8").strip().lower())
    if charset is None:
        raise NotificationRejected("charset", "a charset Alipay does not use")
    try:
        fields = {
            name.encode("latin-1").decode(charset): value.encode("latin-1").decode(charset) for name, value in raw.items()
        }
    except UnicodeError:
        raise NotificationRejected("charset", f"not {charset}") from None
    return fields, charset


def _signed_by_alipay(fields: Mapping[str, str], signature: str, charset: str) -> bool:
    """Whether Alipay signed ``fields`` (all of them but ``sign``; ``sign_type`` is left
    out of the signed text): sorted by name, joined as ``k=v&…``, in ``charset``."""
    client = platforms.alipay_client()
    if charset == "utf-8":
        return client.verify(fields, signature)
    # python-alipay-sdk (so AliPayClient.verify) hashes the text as UTF-8; Alipay signs
    # a GBK notification's text as GBK bytes.
    if fields.get("sign_type", "RSA2") != "RSA2":
        return False
    content = "&".join(f"{name}={fields[name]}" for name in sorted(fields) if name != "sign_type")
    try:
        digest = SHA256.new(content.encode(charset))
        return bool(PKCS1_v1_5.new(client.alipay_public_key).verify(digest, base64.b64decode(signature, validate=True)))
    except (ValueError, TypeError, UnicodeError, binascii.Error):
        return False


class AlipayGateway(Gateway):
    name = "alipay"

    def charge(self, request: ChargeRequest) -> ChargeResult:
        biz = {
            "out_trade_no": request.out_trade_no,
            "total_amount": fen_to_yuan(request.amount_fen),
            "subject": SUBJECT_FORBIDDEN.sub(" ", request.description).strip() or request.out_trade_no,
            "time_expire": _alipay_time(request.time_expire),
        }
        partner = _partner(request.app_auth_token)
        if request.client == "wap":
            # Not called: a signed GET the shopper's browser opens (Alipay's mobile cashier).
            biz["product_code"] = "QUICK_WAP_WAY"
            if request.return_url:
                biz["quit_url"] = request.return_url
            query = platforms.alipay_client().client_api(
                "alipay.trade.wap.pay", biz, notify_url=request.notify_url, return_url=request.return_url, **partner
            )
            return ChargeResult(pay_params={"pay_url": _pay_url(query)})
        if request.client == "native":
            answer = platforms.alipay_call("alipay.trade.precreate", biz, notify_url=request.notify_url, **partner)
            if not _text(answer, "qr_code"):
                raise PlatformBadResponse("Alipay's precreate answer has no qr_code")
            return ChargeResult(pay_params={"code_url": answer["qr_code"]})
        if request.client == "miniapp":
            biz["product_code"] = "JSAPI_PAY"
            if request.payer_id:
                buyer_field = (
                    "buyer_id" if alipay_channel_of(request.payer_id) == Identity.Channel.ALIPAY_USER_ID else "buyer_open_id"
                )
                biz[buyer_field] = request.payer_id
            answer = platforms.alipay_call("alipay.trade.create", biz, notify_url=request.notify_url, **partner)
            if not _text(answer, "trade_no"):
                raise PlatformBadResponse("Alipay's trade.create answer has no trade_no")
            return ChargeResult(pay_params={"trade_no": answer["trade_no"]})
        raise ValueError(f"Alipay cannot charge a {request.client!r} client")

    def query(self, *, out_trade_no: str, sub_merchant_id: str = "", app_auth_token: str = "") -> Payment:
        try:
            answer = platforms.alipay_call("alipay.trade.query", {"out_trade_no": out_trade_no}, **_partner(app_auth_token))
        except PlatformRejected as exc:
            if exc.platform_code == TRADE_NOT_EXIST:
                return Payment(out_trade_no=out_trade_no, state=TradeState.NOT_FOUND)
            raise
        state = _STATES.get(_text(answer, "trade_status"))
        if state is None:
            raise PlatformBadResponse(f"Alipay answered an unknown trade_status {answer.get('trade_status')!r}")
        amount_fen = _fen(answer.get("total_amount"))
        if state == TradeState.PAID and amount_fen is None:
            raise PlatformBadResponse("Alipay's answer has no usable total_amount")
        payer_id, payer_channel = _payer(answer.get("buyer_user_id"), answer.get("buyer_open_id"))
        # trade.query does not name the seller. A trade this app opened without a
        # tenant's token (and without a seller_id of its own) is collected by the
        # app's own account, the mall's: ALIPAY_SELLER_ID.
        seller_id = _text(answer, "seller_id") or ("" if app_auth_token else settings.ALIPAY_SELLER_ID)
        return Payment(
            out_trade_no=out_trade_no, state=state, transaction_id=_text(answer, "trade_no"),
            amount_fen=amount_fen if state == TradeState.PAID else None, payer_id=payer_id, payer_channel=payer_channel,
            seller_id=seller_id, paid_at=_moment(answer.get("send_pay_date")),
        )

    def close(self, *, out_trade_no: str, sub_merchant_id: str = "", app_auth_token: str = "") -> None:
        try:
            platforms.alipay_call("alipay.trade.close", {"out_trade_no": out_trade_no}, **_partner(app_auth_token))
        except PlatformRejected as exc:
            # Never opened (the shopper never scanned or logged in): closed already. A paid
            # trade (ACQ.TRADE_STATUS_ERROR) is the caller's to hear about.
            if exc.platform_code != TRADE_NOT_EXIST:
                raise

    def refund(self, request: RefundRequest) -> RefundResult:
        biz = {
            "out_trade_no": request.out_trade_no,
            "refund_amount": fen_to_yuan(request.refund_fen),
            # The refund's own number: a repeated request with it is the same refund.
            "out_request_no": request.out_refund_no,
        }
        if request.reason:
            biz["refund_reason"] = request.reason[:256]
        pending = RefundResult(out_refund_no=request.out_refund_no, state=RefundState.PENDING)
        try:
            answer = platforms.alipay_call("alipay.trade.refund", biz, **_partner(request.app_auth_token))
        except PlatformRejected as exc:
            if exc.platform_code in UNKNOWN_OUTCOME:
                return pending  # sent again later with the same out_request_no: refunded once at most
            raise
        if answer.get("fund_change") != "Y":
            # "N": this refund was made before (a retry) or the money has not moved yet;
            # Alipay's refund query says which. Alipay accepted it, so never "failed" here.
            try:
                found = self.refund_query(
                    out_trade_no=request.out_trade_no, out_refund_no=request.out_refund_no,
                    app_auth_token=request.app_auth_token,
                )
            except PlatformError:
                return pending
            return found if found.state == RefundState.SUCCEEDED else pending
        return RefundResult(
            out_refund_no=request.out_refund_no, state=RefundState.SUCCEEDED,
            refund_id=_refund_id(_text(answer, "trade_no"), request.out_refund_no), refund_fen=request.refund_fen,
        )

    def refund_query(
        self, *, out_trade_no: str, out_refund_no: str, sub_merchant_id: str = "", app_auth_token: str = ""
    ) -> RefundResult:
        biz = {"out_trade_no": out_trade_no, "out_request_no": out_refund_no, "query_options": ["gmt_refund_pay"]}
        try:
            answer = platforms.alipay_call("alipay.trade.fastpay.refund.query", biz, **_partner(app_auth_token))
        except PlatformRejected as exc:
            if exc.platform_code == TRADE_NOT_EXIST:
                return RefundResult(out_refund_no=out_refund_no, state=RefundState.FAILED, failure="no such refund")
            raise
        if answer.get("refund_status") == "REFUND_SUCCESS":
            return RefundResult(
                out_refund_no=out_refund_no, state=RefundState.SUCCEEDED,
                refund_id=_refund_id(_text(answer, "trade_no"), out_refund_no), refund_fen=_fen(answer.get("refund_amount")),
            )
        # Alipay answers a refund it has no record of with a bare success.
        if not answer.get("out_request_no") and not answer.get("refund_amount"):
            return RefundResult(out_refund_no=out_refund_no, state=RefundState.FAILED, failure="no such refund")
        return RefundResult(out_refund_no=out_refund_no, state=RefundState.PENDING)

    def parse_notification(self, *, headers: Mapping[str, str], body: bytes) -> Notification:
        if not platforms.alipay_configured():
            raise NotificationRejected("not_configured")
        fields, charset = _form_fields(headers, body)
        signature = fields.pop("sign", "")
        if not signature:
            raise NotificationRejected("signature_missing")
        if not _signed_by_alipay(fields, signature, charset):
            raise NotificationRejected("signature_invalid")
        if fields.get("app_id") != settings.ALIPAY_APP_ID:
            raise NotificationRejected("app_mismatch")
        out_trade_no = fields.get("out_trade_no", "")
        if fields.get("notify_type") != "trade_status_sync":
            return Notification(out_trade_no=out_trade_no)  # Alipay's, verified, and nothing to do with a trade
        state = _STATES.get(fields.get("trade_status", ""))
        if not out_trade_no or state is None:
            raise NotificationRejected("malformed", "no out_trade_no or an unknown trade_status")
        if any(fields.get(name) for name in REFUND_FIELDS) and fields["trade_status"] != "TRADE_SUCCESS":
            # Alipay tells of a refund as a trade_status_sync with refund fields: TRADE_SUCCESS
            # after a partial refund, TRADE_CLOSED after a full one. Refunds are settled by
            # alipay.trade.refund's synchronous answer, so this one has nothing to add (and a
            # CLOSED state would misread a paid trade): acknowledged, nothing done. A
            # TRADE_SUCCESS one still reads as the payment it reports, which the order
            # services see as a duplicate: harmless.
            return Notification(out_trade_no=out_trade_no)
        amount_fen = None
        if state == TradeState.PAID:
            amount_fen = _fen(fields.get("total_amount"))
            if amount_fen is None:
                raise NotificationRejected("malformed", "total_amount is not a yuan amount")
        payer_id, payer_channel = _payer(fields.get("buyer_id"), fields.get("buyer_open_id"))
        payment = Payment(
            out_trade_no=out_trade_no, state=state, transaction_id=fields.get("trade_no", ""), amount_fen=amount_fen,
            payer_id=payer_id, payer_channel=payer_channel, seller_id=fields.get("seller_id", ""),
            paid_at=_moment(fields.get("gmt_payment")),
        )
        return Notification(payment=payment, out_trade_no=out_trade_no)

    def acknowledge(self, *, ok: bool, message: str = "") -> Acknowledgement:
        # Alipay reads the body only: anything but "success" and it retries (8 times over a day).
        return Acknowledgement(status=200, body=b"success" if ok else b"failure", content_type="text/plain; charset=utf-8")


def _refund_id(trade_no: str, out_refund_no: str) -> str:
    # Alipay numbers no refund: the trade and our request number name it.
    return f"{trade_no}:{out_refund_no}" if trade_no else ""


__all__ = ["AlipayGateway"]
