"""Refunds of paid orders, full or partial, and of payments that came after an order closed.

A refund is asked for (its share of the order reserved in the same transaction), sent
to the platform, and settled when the platform says how it went: on success the points
the order earned are taken back in proportion to the cash refunded and the points it
used are given back (``members.ledger``); on failure the reservation is undone. A
refund the platform has not answered stays pending; the schedule asks again.

Amounts are of the order's amount (its sale before any coupon): what goes back is the
cash and points the shopper paid, in proportion, never a coupon's discount. An order
refunded in full gives its coupon back (``coupons.holds``); a partial refund keeps it used.
"""

import logging
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import F, Sum
from django.utils import timezone

from core.errors import ApplicationError, Conflict, PlatformError
from core.links import public_base
from core.platforms import PlatformRejected
from coupons import holds
from members import ledger, tiers
from payments import gateways
from payments.orders import notify_url
from payments.gateways import RefundRequest, RefundResult, RefundState
from payments.models import Order, OrderEvent, OrderRefund

logger = logging.getLogger(__name__)

REFUNDABLE = (Order.Status.PAID, Order.Status.PARTIALLY_REFUNDED)


class OrderNotRefundable(Conflict):
    """Only a paid order can be refunded."""

    code = "order_not_refundable"


class RefundMismatch(Exception):
    """A platform's word about a refund that is not ours, or not of that order: nothing changes."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class RefundExceedsOrder(Conflict):
    """More than what is left to refund of the order."""

    code = "refund_exceeds_order"


def _split(order: Order, amount: int) -> tuple[int, int]:
    """(cash fen, points) going back when ``amount`` more of the order's amount is refunded.

    Cumulative: what the refunds that did not fail give back, this one included, is the
    order's cash and points in proportion to their amounts together (rounded down), so
    partial refunds add up exactly — even when one of them failed in between.
    """
    live = order.refunds.filter(kind=OrderRefund.Kind.REQUESTED).exclude(status=OrderRefund.Status.FAILED)
    sums = live.aggregate(amount=Sum("amount_fen"), cash=Sum("cash_fen"), points=Sum("points"))
    after = (sums["amount"] or 0) + amount
    cash = order.payable_fen * after // order.amount_fen - (sums["cash"] or 0)
    points = order.points_used * after // order.amount_fen - (sums["points"] or 0)
    return max(cash, 0), max(points, 0)


def _partner(order: Order) -> dict:
    return {
        "sub_merchant_id": order.sub_merchant_id,
        "app_auth_token": order.merchant.alipay_app_auth_token if order.collector == Order.Collector.PARTNER else "",
    }


def order_refund_request(
    *, order: Order, amount_fen: int, reason: str = "", requested_by=None, idempotency_key: str = "",
    at: datetime | None = None,
) -> OrderRefund:
    """Ask to refund ``amount_fen`` of a paid order (of its whole amount: cash and points
    go back in the proportion they paid). Send it with ``refund_submit`` after commit.

    With an ``idempotency_key`` a retry gets the refund it made (whatever its state now);
    the same key for another amount is a conflict.
    """
    ledger._check_amount_fen(amount_fen)
    now = at or timezone.now()
    with transaction.atomic():
        locked = Order.objects.select_for_update(of=("self",)).get(pk=order.pk)
        if idempotency_key:
            # One key, one refund, across the merchant's orders (as every merchant POST).
            existing = OrderRefund.objects.filter(order__merchant_id=locked.merchant_id, idempotency_key=idempotency_key).first()
            if existing is not None:
                if (existing.order_id, existing.amount_fen, existing.reason) != (locked.pk, amount_fen, (reason or "")[:200]):
                    raise ledger.IdempotencyConflict(extra={"idempotency_key": idempotency_key})
                return existing
        if locked.status not in REFUNDABLE:
            raise OrderNotRefundable(extra={"status": locked.status})
        left = locked.amount_fen - locked.refunded_fen
        if amount_fen > left:
            raise RefundExceedsOrder(extra={"refundable_fen": left})
        cash, points = _split(locked, amount_fen)
        # Nothing to give back is refused, unless it is the rest of an order whose coupon
        # paid for it: the full refund gives the coupon back (an order a voucher paid whole).
        if cash == 0 and points == 0 and not (locked.coupon_id and amount_fen == left):
            raise ApplicationError("too small to refund anything", code="refund_too_small")
        number = locked.refunds.count() + 1
        refund = OrderRefund.objects.create(
            order=locked, out_refund_no=f"{locked.out_trade_no}R{number}", amount_fen=amount_fen, cash_fen=cash,
            points=points, reason=(reason or "")[:200], requested_by=requested_by, idempotency_key=idempotency_key,
            created_at=now,
        )
        Order.objects.filter(pk=locked.pk).update(refunded_fen=F("refunded_fen") + amount_fen)
        OrderEvent.objects.create(
            order=locked, kind="refund_requested", operator=requested_by, created_at=now,
            detail={"out_refund_no": refund.out_refund_no, "amount_fen": amount_fen, "cash_fen": cash, "points": points},
        )
    return refund


def refund_submit(*, refund: OrderRefund, at: datetime | None = None) -> OrderRefund:
    """Send a pending refund to its platform (again, if need be: the platforms treat a
    repeated refund number as the same refund) and settle what it answers."""
    refund = OrderRefund.objects.select_related("order__merchant").get(pk=refund.pk)
    if refund.status != OrderRefund.Status.PENDING:
        return refund
    order = refund.order
    if refund.cash_fen == 0 or order.gateway == Order.Gateway.POINTS:
        result = RefundResult(out_refund_no=refund.out_refund_no, state=RefundState.SUCCEEDED)
    else:
        try:
            result = gateways.gateway_for(order.gateway).refund(RefundRequest(
                out_trade_no=order.out_trade_no, out_refund_no=refund.out_refund_no, refund_fen=refund.cash_fen,
                total_fen=order.payable_fen, reason=refund.reason, notify_url=notify_url(order.gateway, public_base()),
                transaction_id=refund.transaction_id or order.transaction_id, **_partner(order),
            ))
        except PlatformRejected as exc:
            result = RefundResult(out_refund_no=refund.out_refund_no, state=RefundState.FAILED, failure=str(exc)[:200])
        except PlatformError as exc:
            logger.warning("refund %s: no answer from %s (%s); will ask again", refund.out_refund_no, order.gateway, exc)
            return refund
    return refund_settle(result=result, at=at)


def refund_settle(
    *, result: RefundResult, gateway: str = "", out_trade_no: str = "", at: datetime | None = None
) -> OrderRefund:
    """The platform's word on a refund (its answer, a notification, a query). Once.

    A notification names its ``gateway`` and the trade: a refund of another gateway's
    order, or of another trade, raises RefundMismatch and changes nothing.
    """
    now = at or timezone.now()
    with transaction.atomic():
        refund = (
            OrderRefund.objects.select_for_update(of=("self",)).select_related("order__earn", "order__points_hold")
            .filter(out_refund_no=result.out_refund_no).first()
        )
        if refund is None:
            raise RefundMismatch("refund_not_found")
        if gateway and refund.order.gateway != gateway:
            raise RefundMismatch("gateway_mismatch")
        if out_trade_no and refund.order.out_trade_no != out_trade_no:
            raise RefundMismatch("order_mismatch")
        if refund.status != OrderRefund.Status.PENDING or result.state == RefundState.PENDING:
            return refund
        order = Order.objects.select_for_update(of=("self",)).get(pk=refund.order_id)
        if result.state == RefundState.FAILED and refund.kind == OrderRefund.Kind.LATE_PAYMENT:
            # The shopper's money must go back whatever the platform said this time: the
            # refund stays pending (the schedule sends it again) and staff see why.
            logger.warning("late-payment refund %s refused: %s; will send again", refund.out_refund_no, result.failure)
            OrderRefund.objects.filter(pk=refund.pk).update(failure=result.failure[:200])
            refund.refresh_from_db()
            return refund
        if result.state == RefundState.FAILED:
            OrderRefund.objects.filter(pk=refund.pk).update(status=OrderRefund.Status.FAILED, failure=result.failure[:200], finished_at=now)
            if refund.kind == OrderRefund.Kind.REQUESTED:
                Order.objects.filter(pk=order.pk).update(refunded_fen=F("refunded_fen") - refund.amount_fen)
            OrderEvent.objects.create(order=order, kind="refund_failed", created_at=now,
                                      detail={"out_refund_no": refund.out_refund_no, "failure": result.failure[:200]})
            refund.refresh_from_db()
            return refund
        fields = {"status": OrderRefund.Status.SUCCEEDED, "refund_id": result.refund_id[:64], "finished_at": now}
        if refund.kind == OrderRefund.Kind.REQUESTED:
            if order.earn_id and refund.cash_fen:
                fields["earn_reversal"] = ledger.points_reverse(
                    original=order.earn, amount_fen=refund.cash_fen, idempotency_key=f"refund:{refund.out_refund_no}:earn",
                    reason="order refund", at=now,
                )
            if refund.points:
                fields["points_return"] = ledger.points_reverse(
                    original=order.points_hold, points=refund.points, idempotency_key=f"refund:{refund.out_refund_no}:points",
                    reason="order refund", at=now,
                )
            if order.member_id and order.paid_at:
                # The refunded part no longer counts towards the member's tier (never a downgrade here).
                tiers.tier_spend_refund(member=order.member, amount_fen=refund.amount_fen, sold_at=order.paid_at, at=now)
        OrderRefund.objects.filter(pk=refund.pk).update(**fields)
        OrderEvent.objects.create(order=order, kind="refunded", created_at=now,
                                  detail={"out_refund_no": refund.out_refund_no, "cash_fen": refund.cash_fen, "points": refund.points})
        if refund.kind == OrderRefund.Kind.REQUESTED:
            done = order.refunds.filter(kind=OrderRefund.Kind.REQUESTED, status=OrderRefund.Status.SUCCEEDED).aggregate(
                s=Sum("amount_fen"))["s"] or 0
            target = Order.Status.REFUNDED if done >= order.amount_fen else Order.Status.PARTIALLY_REFUNDED
            if order.status != target:
                moved = Order.objects.filter(pk=order.pk, status=order.status).update(status=target)
                if moved:
                    OrderEvent.objects.create(order=order, kind="status", from_status=order.status, to_status=target, created_at=now)
                if moved and target == Order.Status.REFUNDED and order.coupon_id:
                    # Refunded in full: the coupon goes back to the shopper, its discount out of settlement.
                    holds.coupon_order_refunded(order=order, at=now)
                    Order.objects.filter(pk=order.pk).update(coupon=None)  # free to serve another order; coupon_code stays
        refund.refresh_from_db()
        return refund


def refunds_pending(*, older_than_seconds: int = 60, now: datetime | None = None, limit: int = 200) -> list[int]:
    cutoff = (now or timezone.now()) - timedelta(seconds=older_than_seconds)
    return list(
        OrderRefund.objects.filter(status=OrderRefund.Status.PENDING, created_at__lte=cutoff)
        .order_by("created_at").values_list("pk", flat=True)[:limit]
    )
