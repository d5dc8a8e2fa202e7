"""Inbound payment and refund notifications: verify, store, process once, acknowledge.

Every notification is stored as received (``PaymentNotification``), whatever becomes
of it. One that is not the platform's own, is stale, is for another merchant, names an
unknown order or does not match its order changes nothing and gets the platform's
failure answer; never a 500. A payment is processed exactly once
(``orders.order_payment_confirm``); a duplicate is acknowledged as a success so the
platform stops retrying.
"""

import logging

from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone

from core.errors import ApplicationError
from payments import gateways, orders, refunds
from payments.gateways import Acknowledgement, NotificationRejected
from payments.models import PaymentNotification

logger = logging.getLogger(__name__)

# Headers worth keeping with the body: the ones signatures and timestamps travel in.
KEPT_HEADERS = ("content-type", "wechatpay-timestamp", "wechatpay-nonce", "wechatpay-signature", "wechatpay-serial",
                "wechatpay-signature-type", "x-sandbox-timestamp", "x-sandbox-signature", "user-agent")

def _text(value: str, limit: int) -> str:
    # PostgreSQL text cannot hold NUL; a hostile body must still be stored, not crash.
    return value[:limit].replace("\x00", "\ufffd")


def _record(gateway: str, headers, body: bytes, remote_addr: str, **fields) -> PaymentNotification:
    kept = {
        name: _text(value, 512) for name, value in ((k.lower(), v) for k, v in headers.items()) if name in KEPT_HEADERS
    }
    for name in ("out_trade_no", "transaction_id", "reason", "kind"):
        if name in fields:
            fields[name] = _text(fields[name], 64)
    return PaymentNotification.objects.create(
        gateway=gateway, body=_text(body[: settings.PAYMENT_NOTIFY_MAX_BYTES].decode("utf-8", "replace"), settings.PAYMENT_NOTIFY_MAX_BYTES),
        headers=kept, remote_addr=_text(remote_addr or "", 64), received_at=timezone.now(), **fields,
    )


def notification_receive(
    *, gateway: str, headers, body: bytes, remote_addr: str = "", oversized: bool = False
) -> Acknowledgement:
    """Handle one notification POSTed to ``gateway``'s endpoint; the answer to give it.

    ``oversized``: the body was longer than PAYMENT_NOTIFY_MAX_BYTES and was not read.
    """
    handler = gateways.gateway_for(gateway)
    if oversized or len(body) > settings.PAYMENT_NOTIFY_MAX_BYTES:
        _record(gateway, headers, body, remote_addr, outcome=PaymentNotification.Outcome.REJECTED, reason="too_large")
        return handler.acknowledge(ok=False, message="too large")
    try:
        note = handler.parse_notification(headers=headers, body=body)
    except NotificationRejected as exc:
        logger.warning("%s notification rejected: %s", gateway, exc.reason)
        _record(gateway, headers, body, remote_addr, outcome=PaymentNotification.Outcome.REJECTED, reason=exc.reason[:64])
        return handler.acknowledge(ok=False, message=exc.reason)
    outcome, reason, order = PaymentNotification.Outcome.PROCESSED, "", None
    try:
        if note.payment is not None:
            kind = "payment"
            confirmation = orders.order_payment_confirm(gateway=gateway, payment=note.payment)
            order = confirmation.order
            if confirmation.outcome == "duplicate":
                outcome = PaymentNotification.Outcome.DUPLICATE
            elif confirmation.outcome == "ignored":
                reason = f"state_{note.payment.state}"
        elif note.refund is not None:
            kind = "refund"
            refund = refunds.refund_settle(result=note.refund, gateway=gateway, out_trade_no=note.out_trade_no)
            order = refund.order
        else:
            kind, reason = "other", "nothing_to_do"
    except (orders.PaymentMismatch, refunds.RefundMismatch) as exc:
        logger.warning("%s notification for %s does not match: %s", gateway, note.out_trade_no, exc.reason)
        _record(gateway, headers, body, remote_addr, outcome=PaymentNotification.Outcome.REJECTED, reason=exc.reason,
                out_trade_no=note.out_trade_no, kind=kind)
        return handler.acknowledge(ok=False, message=exc.reason)
    except (ApplicationError, DatabaseError) as exc:
        # Nothing was committed; the platform retries, and the retry gets another chance.
        logger.exception("%s notification for %s failed", gateway, note.out_trade_no)
        _record(gateway, headers, body, remote_addr, outcome=PaymentNotification.Outcome.ERROR,
                reason=getattr(exc, "code", type(exc).__name__), out_trade_no=note.out_trade_no, kind=kind)
        return handler.acknowledge(ok=False, message="try again")
    _record(
        gateway, headers, body, remote_addr, outcome=outcome, reason=reason, kind=kind, order=order,
        out_trade_no=note.out_trade_no,
        transaction_id=note.payment.transaction_id if note.payment else "",
    )
    return handler.acknowledge(ok=True)


