"""Scheduled work on orders and refunds. Thin and safe to run twice."""

import logging

from core.errors import ApplicationError
from payments import orders, refunds
from payments.models import Order, OrderRefund

logger = logging.getLogger(__name__)


def orders_close_stale() -> int:
    """Close orders unpaid past their time (asking the platform first). Returns how many closed."""
    closed = 0
    for order_id in orders.orders_stale():
        order = Order.objects.get(pk=order_id)
        try:
            if orders.order_close(order=order).status == Order.Status.CLOSED:
                closed += 1
        except (ApplicationError, orders.PaymentMismatch) as exc:
            # The platform did not answer, or refused to close a trade being paid: next run.
            logger.warning("order %s not closed yet: %s", order.out_trade_no, exc)
    return closed


def refund_submit(refund_id: int) -> str:
    refund = OrderRefund.objects.filter(pk=refund_id).first()
    if refund is None:
        return "gone"
    return refunds.refund_submit(refund=refund).status


def refunds_reconcile() -> int:
    """Send again the refunds the platforms have not settled (same refund numbers: no double refunds)."""
    settled = 0
    for refund_id in refunds.refunds_pending():
        if refund_submit(refund_id) != OrderRefund.Status.PENDING:
            settled += 1
    return settled
