"""Taking back a coupon bought in the points mall: the coupon is voided and its points
come back to the shopper, in one transaction — both or neither.

Only an unused coupon can be taken back (a used one was worth its price). The points
come back as lots with the expiry dates they were taken from (``ledger.points_reverse``
of the exchange), from whoever was paid for it: the funding merchant's acceptance
account, or promotions for the mall's own. Safe to repeat: the second time the coupon is
already void and the reversal's key finds the first.
"""

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from core.errors import Conflict
from coupons.models import Coupon
from coupons.services import coupon_void
from members import ledger
from members.models import PointsTransaction


class NotBoughtWithPoints(Conflict):
    """This coupon was not bought with points: there are no points to give back."""

    code = "coupon_not_bought_with_points"


def coupon_exchange_refund(*, coupon: Coupon, reason: str, operator=None, at: datetime | None = None) -> PointsTransaction:
    """Void ``coupon`` (bought with points, unused) and give its points back; the reversal."""
    now = at or timezone.now()
    exchange = None
    if coupon.issued_via == Coupon.Via.POINTS and coupon.issue_key:
        exchange = PointsTransaction.objects.filter(
            idempotency_key=coupon.issue_key, kind=PointsTransaction.Kind.REDEEM
        ).first()
    if exchange is None:
        raise NotBoughtWithPoints()
    key = f"exchange-refund:{coupon.pk}"
    with transaction.atomic():
        done = PointsTransaction.objects.filter(idempotency_key=key).first()
        if done is not None:
            return done
        coupon_void(coupon=coupon, reason=f"points refunded: {reason}"[:200], operator=operator, at=now)
        return ledger.points_reverse(
            original=exchange, points=-exchange.points, idempotency_key=key,
            reason=f"points mall refund: coupon {coupon.pk}"[:200], at=now,
        )
