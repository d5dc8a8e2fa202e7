"""Coupons on orders paid by scanning a shop's QR (DESIGN.md, the closed loop, 2).

The shopper names one of their own coupons by its static code when the order is made.
The coupon moves issued → held in the order's transaction (a conditional UPDATE: of
two orders racing for one coupon exactly one wins), held → redeemed when the order is
paid (a ``CouponRedemption``, as at a till, keyed ``order:<out_trade_no>``), and held
→ issued when the order closes unpaid. An order refunded in full reverses its
redemption: the coupon is given back and its discount leaves the settlement.

Creating, paying and closing an order lock its coupon's row before its member's
wallet (a coupon being refunded is one nothing else locks). Every change appends a
CouponEvent.
"""

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from core.errors import Conflict, NotFound
from coupons.models import Coupon, CouponEvent, CouponRedemption, CouponTemplate
from coupons.services import (
    CouponNotFound,
    CouponUsed,
    MinSpendNotMet,
    StoreNotAccepted,
    coupon_discount_fen,
    coupon_usable_check,
    member_coupons_usable,
    template_accepts_store,
)
from members import ledger
from members.models import Member, Store

AUTHORISED_BY_ORDER = "order"


class CouponNotCombinable(Conflict):
    """This coupon cannot be used together with points."""

    code = "coupon_not_combinable"


class CouponGiftAtTill(Conflict):
    """A gift coupon is handed over at the till: show it there."""

    code = "coupon_gift_at_till"


class CouponNoDiscount(Conflict):
    """This coupon takes nothing off this amount."""

    code = "coupon_no_discount"


# The redemption of a paid order is keyed ``order:<out_trade_no>`` under its merchant; a
# till's own keys may not begin so (coupons.api).
ORDER_KEY_PREFIX = "order:"


def order_redemption_key(out_trade_no: str) -> str:
    return f"{ORDER_KEY_PREFIX}{out_trade_no}"


def _refuse_unusable(coupon: Coupon, at: datetime) -> None:
    coupon_usable_check(coupon=coupon, at=at)


def coupon_hold(
    *, member: Member, code: str, store: Store, amount_fen: int, points_to_use: int, order_no: str, at: datetime
) -> tuple[Coupon, int]:
    """Hold ``member``'s coupon ``code`` for order ``order_no`` of ``amount_fen`` at ``store``.

    Returns the coupon and what it takes off. Anyone else's code, or an unknown one, is
    "not found" (nothing tells a guesser that a code exists). Runs in the caller's
    transaction: the order that fails after this gives the coupon back by rolling back.
    """
    coupon = (
        Coupon.objects.select_related("template").filter(member=member, code=(code or "").strip().upper()).first()
    )
    if coupon is None:
        raise CouponNotFound()
    template = coupon.template
    if not template_accepts_store(template=template, store=store):
        raise StoreNotAccepted()
    _refuse_unusable(coupon, at)
    if template.kind == CouponTemplate.Kind.GIFT:
        raise CouponGiftAtTill(extra={"gift": template.gift_description})
    if amount_fen < template.min_spend_fen:
        raise MinSpendNotMet(extra={"min_spend_fen": template.min_spend_fen})
    if points_to_use and not template.combines_with_points:
        raise CouponNotCombinable()
    discount_fen = coupon_discount_fen(template=template, amount_fen=amount_fen)
    if discount_fen <= 0:
        raise CouponNoDiscount()
    with transaction.atomic():
        won = Coupon.objects.filter(pk=coupon.pk, status=Coupon.Status.ISSUED).update(status=Coupon.Status.HELD)
        if not won:
            # Another order (or the till, or the expiry job) took it first.
            coupon.refresh_from_db(fields=["status"])
            _refuse_unusable(coupon, at)
            raise CouponUsed()
        CouponEvent.objects.create(
            coupon=coupon, kind=CouponEvent.Kind.HELD, created_at=at,
            detail={"order": order_no, "store": store.code, "amount_fen": amount_fen, "discount_fen": discount_fen},
        )
    coupon.status = Coupon.Status.HELD
    return coupon, discount_fen


def coupon_hold_capture(*, order, at: datetime) -> CouponRedemption:
    """The order was paid: its held coupon is redeemed at the order's store. Once.

    ``order`` is a ``payments.models.Order`` holding a coupon, locked by the caller.
    """
    key = order_redemption_key(order.out_trade_no)
    existing = CouponRedemption.objects.filter(merchant_id=order.merchant_id, idempotency_key=key).first()
    if existing is not None:
        if existing.coupon_id != order.coupon_id:
            raise ledger.IdempotencyConflict(extra={"idempotency_key": key})
        return existing
    coupon = Coupon.objects.select_related("template").get(pk=order.coupon_id)
    with transaction.atomic():
        won = Coupon.objects.filter(pk=coupon.pk, status=Coupon.Status.HELD).update(
            status=Coupon.Status.REDEEMED, redeemed_at=at, redeemed_store_id=order.store_id
        )
        if not won:
            raise Conflict("the order's coupon is not held", code="coupon_not_held", extra={"status": coupon.status})
        redemption = CouponRedemption.objects.create(
            coupon=coupon, merchant_id=order.merchant_id, store_id=order.store_id, idempotency_key=key,
            amount_fen=order.amount_fen, discount_fen=order.coupon_discount_fen, funded_by=coupon.template.funded_by,
            order_ref=order.out_trade_no, authorised_by=AUTHORISED_BY_ORDER, created_at=at,
        )
        CouponEvent.objects.create(
            coupon=coupon, kind=CouponEvent.Kind.REDEEMED, created_at=at,
            detail={"order": order.out_trade_no, "store_id": order.store_id, "merchant_id": order.merchant_id,
                    "amount_fen": order.amount_fen, "discount_fen": order.coupon_discount_fen,
                    "authorised_by": AUTHORISED_BY_ORDER, "funded_by": coupon.template.funded_by},
        )
    return redemption


def coupon_hold_release(*, order, at: datetime) -> bool:
    """The order closed unpaid: its coupon is the shopper's to use again (issued, even
    past its validity: the expiry job then expires it). Whether it moved; a second call
    moves nothing."""
    with transaction.atomic():
        moved = Coupon.objects.filter(pk=order.coupon_id, status=Coupon.Status.HELD).update(status=Coupon.Status.ISSUED)
        if moved:
            CouponEvent.objects.create(
                coupon_id=order.coupon_id, kind=CouponEvent.Kind.RELEASED, created_at=at,
                detail={"order": order.out_trade_no, "reason": "order not paid"},
            )
    return bool(moved)


def coupon_redemption_reverse(*, redemption: CouponRedemption, reason: str, at: datetime) -> bool:
    """The sale was refunded in full: the redemption no longer counts in settlement and
    the coupon is given back (issued). Once: whether this call reversed it."""
    with transaction.atomic():
        reversed_now = CouponRedemption.objects.filter(pk=redemption.pk, reversed_at__isnull=True).update(reversed_at=at)
        if not reversed_now:
            return False
        Coupon.objects.filter(pk=redemption.coupon_id, status=Coupon.Status.REDEEMED).update(
            status=Coupon.Status.ISSUED, redeemed_at=None, redeemed_store=None
        )
        CouponEvent.objects.create(
            coupon_id=redemption.coupon_id, kind=CouponEvent.Kind.RELEASED, created_at=at,
            detail={"reason": reason, "redemption": redemption.pk, "order_ref": redemption.order_ref},
        )
    redemption.reversed_at = at
    return True


class RedemptionNotFound(NotFound):
    """No such coupon redemption at this merchant."""

    code = "coupon_redemption_not_found"


class RedemptionOfAnOrder(Conflict):
    """This coupon was used on an order: refund the order to give it back."""

    code = "coupon_redemption_of_an_order"


def coupon_redemption_cancel(*, merchant, redemption_id: int, at: datetime | None = None) -> CouponRedemption:
    """The till cancels a sale it used a coupon on: the coupon is given back and the
    discount leaves settlement. Only the merchant's own till redemptions (an order's is
    given back by refunding the order); cancelling twice answers the same."""
    now = at or timezone.now()
    redemption = None
    if 0 < redemption_id < 2**63:
        redemption = CouponRedemption.objects.select_related("coupon__template", "store").filter(
            pk=redemption_id, merchant=merchant
        ).first()
    if redemption is None:
        raise RedemptionNotFound()
    if redemption.authorised_by == AUTHORISED_BY_ORDER:
        raise RedemptionOfAnOrder(extra={"order_ref": redemption.order_ref})
    coupon_redemption_reverse(redemption=redemption, reason="cancelled at the till", at=now)
    redemption.refresh_from_db(fields=["reversed_at"])
    return redemption


def coupon_order_refunded(*, order, at: datetime) -> bool:
    """An order refunded in full: reverse the redemption its payment made (if any)."""
    redemption = CouponRedemption.objects.filter(
        merchant_id=order.merchant_id, idempotency_key=order_redemption_key(order.out_trade_no)
    ).first()
    if redemption is None:
        return False
    return coupon_redemption_reverse(redemption=redemption, reason="order refunded", at=at)


def coupons_for_store(*, member: Member, store: Store, at: datetime | None = None) -> list[Coupon]:
    """The member's coupons an order at ``store`` may use now: issued, within validity,
    accepted there, taking money off (gift coupons are for the till)."""
    now = at or timezone.now()
    usable = (
        member_coupons_usable(member=member, at=now).filter(valid_from__lte=now)
        .exclude(template__kind=CouponTemplate.Kind.GIFT)
    )
    return [coupon for coupon in usable if template_accepts_store(template=coupon.template, store=store)]
