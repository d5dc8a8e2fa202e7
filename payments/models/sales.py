"""Merchant-side sales (POS purchases, redemptions, their refunds) and API replays.

Points never live here: each row points at the ledger transaction that moved them.
"""

from django.db import models
from django.db.models import F, Q

from members.models import Member, Merchant, PointsTransaction, Store


class Purchase(models.Model):
    """A sale booked by a merchant's POS; the shopper earned points funded by the merchant."""

    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="purchases")
    store = models.ForeignKey(Store, on_delete=models.PROTECT, related_name="purchases")
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="purchases")
    amount_fen = models.BigIntegerField()
    # Σ refunds, moved with F() in the refund's transaction (which holds the wallet lock).
    refunded_fen = models.BigIntegerField(default=0)
    order_ref = models.CharField(max_length=64, blank=True, help_text="The POS's own order number.")
    # The shopper proved presence (a scanned member code), not just a member number the
    # merchant typed: only such sales earn mall-funded points and count toward tiers.
    member_present = models.BooleanField(default=False)
    earn = models.OneToOneField(PointsTransaction, on_delete=models.PROTECT, related_name="purchase")
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        indexes = [models.Index(fields=["merchant", "created_at"])]
        constraints = [
            models.CheckConstraint(condition=Q(amount_fen__gt=0), name="purchase_amount_positive"),
            models.CheckConstraint(
                condition=Q(refunded_fen__gte=0) & Q(refunded_fen__lte=F("amount_fen")), name="purchase_refunds_within_amount"
            ),
            # One POS order earns once, whatever idempotency keys the POS sends.
            models.UniqueConstraint(fields=["merchant", "order_ref"], condition=~Q(order_ref=""), name="purchase_order_ref_unique"),
        ]

    def __str__(self):
        return f"purchase #{self.pk} at {self.store_id}: {self.amount_fen} fen"


class PurchaseRefund(models.Model):
    purchase = models.ForeignKey(Purchase, on_delete=models.PROTECT, related_name="refunds")
    amount_fen = models.BigIntegerField()
    reversal = models.OneToOneField(PointsTransaction, on_delete=models.PROTECT, related_name="purchase_refund")
    created_at = models.DateTimeField()

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(amount_fen__gt=0), name="purchase_refund_amount_positive")]

    def __str__(self):
        return f"refund #{self.pk} of purchase #{self.purchase_id}: {self.amount_fen} fen"


class Redemption(models.Model):
    """Points a shopper paid with at a merchant's store."""

    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="redemptions")
    store = models.ForeignKey(Store, on_delete=models.PROTECT, related_name="redemptions")
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="redemptions")
    points = models.BigIntegerField()
    returned_points = models.BigIntegerField(default=0)
    order_ref = models.CharField(max_length=64, blank=True)
    # How the shopper authorised it: a scanned member code or a confirmed redemption token.
    authorization = models.OneToOneField(
        "members.SpendAuthorization", on_delete=models.PROTECT, null=True, blank=True, related_name="redemption"
    )
    redeem = models.OneToOneField(PointsTransaction, on_delete=models.PROTECT, related_name="redemption")
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        indexes = [models.Index(fields=["merchant", "created_at"])]
        constraints = [
            models.CheckConstraint(condition=Q(points__gt=0), name="redemption_points_positive"),
            models.CheckConstraint(
                condition=Q(returned_points__gte=0) & Q(returned_points__lte=F("points")), name="redemption_returns_within_points"
            ),
        ]

    def __str__(self):
        return f"redemption #{self.pk}: {self.points} points"


class RedemptionRefund(models.Model):
    redemption = models.ForeignKey(Redemption, on_delete=models.PROTECT, related_name="refunds")
    points = models.BigIntegerField()
    reversal = models.OneToOneField(PointsTransaction, on_delete=models.PROTECT, related_name="redemption_refund")
    created_at = models.DateTimeField()

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(points__gt=0), name="redemption_refund_points_positive")]


class ApiRequest(models.Model):
    """The first response to a merchant's POST under an Idempotency-Key, for replays.

    Written in the same transaction as the effect, so a stored response always means
    the effect happened, and an effect always has its response. Errors are not
    stored: nothing changed, so a retry simply runs again.
    """

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=200)
    request_hash = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField()
    # The rendered JSON, kept as text: jsonb would reorder its keys, and a replay
    # must be the first response byte for byte.
    response = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "API request"
        constraints = [models.UniqueConstraint(fields=["merchant", "key"], name="api_request_key_unique_per_merchant")]

    def __str__(self):
        return f"{self.merchant_id}:{self.key}"
