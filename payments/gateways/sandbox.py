"""The sandbox cashier: a payment platform of our own for the embedded demo.

A real implementation of the gateway interface, not a mock: ``charge`` opens a trade
(``SandboxTrade``, the platform's side) and answers the cashier page's address; the
page's "pay" button marks the trade paid and sends a notification signed with HMAC-SHA256
under the key the set-up migration made (``SandboxKey``), which goes through the same
notification code path as WeChat's and Alipay's. Only in sandbox mode (O2O_SANDBOX).
"""

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping
from datetime import UTC, datetime

from django.db import transaction
from django.db.models import F
from django.urls import reverse
from django.utils import timezone

from core.errors import PlatformError
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
from payments.models import SandboxKey, SandboxTrade

SIGNATURE_HEADER = "X-Sandbox-Signature"
TIMESTAMP_HEADER = "X-Sandbox-Timestamp"
# As WeChat Pay's: a notification signed longer ago than this is stale.
TIMESTAMP_WINDOW_SECONDS = 300

_STATES = {SandboxTrade.Status.NOTPAY: TradeState.PENDING, SandboxTrade.Status.SUCCESS: TradeState.PAID,
           SandboxTrade.Status.CLOSED: TradeState.CLOSED}


class SandboxRejected(PlatformError):
    code = "platform_rejected"
    status = 502


def _key() -> bytes:
    row = SandboxKey.objects.order_by("pk").first()
    if row is None:
        raise SandboxRejected("the sandbox has no signing key: run `manage.py migrate`")
    return row.secret.encode()


def sign(timestamp: str, body: bytes) -> str:
    return hmac.new(_key(), timestamp.encode() + b"\n" + body, hashlib.sha256).hexdigest()


def _payment(trade: SandboxTrade) -> Payment:
    return Payment(
        out_trade_no=trade.out_trade_no, state=_STATES[trade.status], transaction_id=trade.transaction_id,
        amount_fen=trade.amount_fen if trade.status == SandboxTrade.Status.SUCCESS else None, paid_at=trade.paid_at,
    )


def trade_pay(*, out_trade_no: str, at: datetime | None = None) -> tuple[dict, bytes] | None:
    """The shopper pressed "pay": the trade is paid (once) and its signed notification
    is returned as (headers, body) for the notification endpoint. None: not payable
    (unknown, closed, expired, or paid already — which sends nothing again)."""
    now = at or timezone.now()
    with transaction.atomic():
        paid = SandboxTrade.objects.filter(
            out_trade_no=out_trade_no, status=SandboxTrade.Status.NOTPAY, expires_at__gt=now
        ).update(status=SandboxTrade.Status.SUCCESS, paid_at=now)
        if not paid:
            return None
        trade = SandboxTrade.objects.get(out_trade_no=out_trade_no)
    return notification_for(trade)


def notification_for(trade: SandboxTrade, *, timestamp: int | None = None) -> tuple[dict, bytes]:
    body = json.dumps({
        "event": "payment", "out_trade_no": trade.out_trade_no, "transaction_id": trade.transaction_id,
        "trade_state": trade.status, "amount_fen": trade.amount_fen,
        "paid_at": trade.paid_at.isoformat() if trade.paid_at else None, "nonce": secrets.token_hex(8),
    }, separators=(",", ":")).encode()
    stamp = str(timestamp if timestamp is not None else int(time.time()))
    return {TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: sign(stamp, body)}, body


def trade_for_cashier(*, out_trade_no: str) -> SandboxTrade | None:
    return SandboxTrade.objects.filter(out_trade_no=out_trade_no).first()


class SandboxGateway(Gateway):
    name = "sandbox"

    def charge(self, request: ChargeRequest) -> ChargeResult:
        trade, _ = SandboxTrade.objects.get_or_create(
            out_trade_no=request.out_trade_no,
            defaults={
                "transaction_id": "SBX" + secrets.token_hex(12), "description": request.description[:127],
                "amount_fen": request.amount_fen, "notify_url": request.notify_url[:300],
                "return_url": request.return_url[:300], "expires_at": request.time_expire, "created_at": timezone.now(),
            },
        )
        if trade.amount_fen != request.amount_fen:
            raise SandboxRejected("this out_trade_no was opened with another amount")
        return ChargeResult(pay_params={
            "cashier_url": reverse("payments:sandbox-cashier", args=[trade.out_trade_no]),
            "transaction_id": trade.transaction_id,
        })

    def query(self, *, out_trade_no: str, sub_merchant_id: str = "", app_auth_token: str = "") -> Payment:
        trade = SandboxTrade.objects.filter(out_trade_no=out_trade_no).first()
        if trade is None:
            return Payment(out_trade_no=out_trade_no, state=TradeState.NOT_FOUND)
        return _payment(trade)

    def close(self, *, out_trade_no: str, sub_merchant_id: str = "", app_auth_token: str = "") -> None:
        closed = SandboxTrade.objects.filter(out_trade_no=out_trade_no, status=SandboxTrade.Status.NOTPAY).update(
            status=SandboxTrade.Status.CLOSED
        )
        if not closed and SandboxTrade.objects.filter(out_trade_no=out_trade_no, status=SandboxTrade.Status.SUCCESS).exists():
            raise SandboxRejected("the trade is paid and cannot be closed")

    def refund(self, request: RefundRequest) -> RefundResult:
        with transaction.atomic():
            trade = SandboxTrade.objects.select_for_update().filter(out_trade_no=request.out_trade_no).first()
            if trade is None or trade.status != SandboxTrade.Status.SUCCESS:
                return RefundResult(out_refund_no=request.out_refund_no, state=RefundState.FAILED, failure="trade not paid")
            if request.out_refund_no in trade.refunds:
                return RefundResult(
                    out_refund_no=request.out_refund_no, state=RefundState.SUCCEEDED,
                    refund_id=f"SBR{request.out_refund_no}", refund_fen=trade.refunds[request.out_refund_no],
                )
            if trade.refunded_fen + request.refund_fen > trade.amount_fen:
                return RefundResult(out_refund_no=request.out_refund_no, state=RefundState.FAILED, failure="more than paid")
            trade.refunds[request.out_refund_no] = request.refund_fen
            SandboxTrade.objects.filter(pk=trade.pk).update(
                refunded_fen=F("refunded_fen") + request.refund_fen, refunds=trade.refunds
            )
        return RefundResult(
            out_refund_no=request.out_refund_no, state=RefundState.SUCCEEDED, refund_id=f"SBR{request.out_refund_no}",
            refund_fen=request.refund_fen,
        )

    def refund_query(
        self, *, out_trade_no: str, out_refund_no: str, sub_merchant_id: str = "", app_auth_token: str = ""
    ) -> RefundResult:
        trade = SandboxTrade.objects.filter(out_trade_no=out_trade_no).first()
        if trade is not None and out_refund_no in trade.refunds:
            return RefundResult(
                out_refund_no=out_refund_no, state=RefundState.SUCCEEDED, refund_id=f"SBR{out_refund_no}",
                refund_fen=trade.refunds[out_refund_no],
            )
        return RefundResult(out_refund_no=out_refund_no, state=RefundState.FAILED, failure="no such refund")

    def parse_notification(self, *, headers: Mapping[str, str], body: bytes) -> Notification:
        lowered = {key.lower(): value for key, value in headers.items()}
        stamp = lowered.get(TIMESTAMP_HEADER.lower(), "")
        signature = lowered.get(SIGNATURE_HEADER.lower(), "")
        if not (stamp.isascii() and stamp.isdigit()) or not signature:
            raise NotificationRejected("signature_missing")
        if not hmac.compare_digest(signature.encode("utf-8", "replace"), sign(stamp, body).encode()):
            raise NotificationRejected("signature_invalid")
        if abs(time.time() - int(stamp)) > TIMESTAMP_WINDOW_SECONDS:
            raise NotificationRejected("stale")
        try:
            data = json.loads(body)
            out_trade_no, transaction_id = str(data["out_trade_no"]), str(data["transaction_id"])
            amount_fen, state = data["amount_fen"], data["trade_state"]
            paid_at = datetime.fromisoformat(data["paid_at"]) if data.get("paid_at") else None
        except (ValueError, KeyError, TypeError):
            raise NotificationRejected("malformed") from None
        if type(amount_fen) is not int or state not in _STATES:
            raise NotificationRejected("malformed")
        payment = Payment(
            out_trade_no=out_trade_no, state=_STATES[state], transaction_id=transaction_id, amount_fen=amount_fen,
            paid_at=paid_at.astimezone(UTC) if paid_at and paid_at.tzinfo else None,
        )
        return Notification(payment=payment, out_trade_no=out_trade_no)

    def acknowledge(self, *, ok: bool, message: str = "") -> Acknowledgement:
        body = json.dumps({"code": "SUCCESS" if ok else "FAIL", "message": message}).encode()
        return Acknowledgement(status=200 if ok else 400, body=body, content_type="application/json")


__all__ = ["SandboxGateway", "notification_for", "sign", "trade_for_cashier", "trade_pay"]
