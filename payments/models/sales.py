"""Merchant-side sales (POS purchases, redemptions, their refunds) and API replays.

Points never live here: each row points at the ledger transaction that moved them.
"""

from django.db import models
from django.db.models import F, Q
from django.utils.translation import gettext, gettext_lazy

from core.money import fen_to_yuan
from members.models import Member, Merchant, PointsTransaction, Store


class Purchase(models.Model):
    """A sale booked by a merchant's POS; the shopper earned points funded by the merchant."""

    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="purchases", verbose_name=gettext_lazy("merchant"))
    store = models.ForeignKey(Store, on_delete=models.PROTECT, related_name="purchases", verbose_name=gettext_lazy("store"))
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="purchases", verbose_name=gettext_lazy("member"))
    amount_fen = models.BigIntegerField(gettext_lazy("amount"))
    # Σ refunds, moved with F() in the refund's transaction (which holds the wallet lock).
    refunded_fen = models.BigIntegerField(gettext_lazy("refunded"), default=0)
    order_ref = models.CharField(
        gettext_lazy("POS order number"), max_length=64, blank=True, help_text=gettext_lazy("The POS's own order number."),
    )
    # The shopper proved presence (a scanned member code), not just a member number the
    # merchant typed: only such sales earn mall-funded points and count toward tiers.
    member_present = models.BooleanField(gettext_lazy("member code scanned"), default=False)
    earn = models.OneToOneField(
        PointsTransaction, on_delete=models.PROTECT, related_name="purchase", verbose_name=gettext_lazy("points earned (ledger)"),
    )
    created_at = models.DateTimeField(gettext_lazy("created at"), db_index=True)

    class Meta:
        verbose_name = gettext_lazy("purchase")
        verbose_name_plural = gettext_lazy("purchases")
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
        return gettext("Purchase #%(id)s: ¥%(amount)s") % {"id": self.pk, "amount": fen_to_yuan(self.amount_fen)}


class PurchaseRefund(models.Model):
    purchase = models.ForeignKey(Purchase, on_delete=models.PROTECT, related_name="refunds", verbose_name=gettext_lazy("purchase"))
    amount_fen = models.BigIntegerField(gettext_lazy("amount"))
    reversal = models.OneToOneField(
        PointsTransaction, on_delete=models.PROTECT, related_name="purchase_refund",
        verbose_name=gettext_lazy("points taken back (ledger)"),
    )
    created_at = models.DateTimeField(gettext_lazy("created at"))

    class Meta:
        verbose_name = gettext_lazy("purchase refund")
        verbose_name_plural = gettext_lazy("purchase refunds")
        constraints = [models.CheckConstraint(condition=Q(amount_fen__gt=0), name="purchase_refund_amount_positive")]

    def __str__(self):
        return gettext("Refund #%(id)s of purchase #%(purchase)s: ¥%(amount)s") % {
            "id": self.pk, "purchase": self.purchase_id, "amount": fen_to_yuan(self.amount_fen)}


class Redemption(models.Model):
    """Points a shopper paid with at a merchant's store."""

    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="redemptions", verbose_name=gettext_lazy("merchant"))
    store = models.ForeignKey(Store, on_delete=models.PROTECT, related_name="redemptions", verbose_name=gettext_lazy("store"))
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="redemptions", verbose_name=gettext_lazy("member"))
    points = models.BigIntegerField(gettext_lazy("points"))
    returned_points = models.BigIntegerField(gettext_lazy("points returned"), default=0)
    order_ref = models.CharField(gettext_lazy("POS order number"), max_length=64, blank=True)
    # How the shopper authorised it: a scanned member code or a confirmed redemption token.
    authorization = models.OneToOneField(
        "members.SpendAuthorization", on_delete=models.PROTECT, null=True, blank=True, related_name="redemption",
        verbose_name=gettext_lazy("authorisation"),
    )
    redeem = models.OneToOneField(
        PointsTransaction, on_delete=models.PROTECT, related_name="redemption", verbose_name=gettext_lazy("points spent (ledger)"),
    )
    created_at = models.DateTimeField(gettext_lazy("created at"), db_index=True)

    class Meta:
        verbose_name = gettext_lazy("points redemption")
        verbose_name_plural = gettext_lazy("points redemptions")
        indexes = [models.Index(fields=["merchant", "created_at"])]
        constraints = [
            models.CheckConstraint(condition=Q(points__gt=0), name="redemption_points_positive"),
            models.CheckConstraint(
                condition=Q(returned_points__gte=0) & Q(returned_points__lte=F("points")), name="redemption_returns_within_points"
            ),
        ]

    def __str__(self):
        return gettext("Redemption #%(id)s: %(points)s points") % {"id": self.pk, "points": self.points}


class RedemptionRefund(models.Model):
    redemption = models.ForeignKey(
        Redemption, on_delete=models.PROTECT, related_name="refunds", verbose_name=gettext_lazy("points redemption"),
    )
    points = models.BigIntegerField(gettext_lazy("points"))
    reversal = models.OneToOneField(
        PointsTransaction, on_delete=models.PROTECT, related_name="redemption_refund",
        verbose_name=gettext_lazy("points given back (ledger)"),
    )
    created_at = models.DateTimeField(gettext_lazy("created at"))

    class Meta:
        verbose_name = gettext_lazy("redemption refund")
        verbose_name_plural = gettext_lazy("redemption refunds")
        constraints = [models.CheckConstraint(condition=Q(points__gt=0), name="redemption_refund_points_positive")]


class ApiRequest(models.Model):
    """The first response to a merchant's POST under an Idempotency-Key, for replays.

    Written in the same transaction as the effect, so a stored response always means
    the effect happened, and an effect always has its response. Errors are not
    stored: nothing changed, so a retry simply runs again.
    """

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="+", verbose_name=gettext_lazy("merchant"))
    key = models.CharField(gettext_lazy("idempotency key"), max_length=200)
    request_hash = models.CharField(gettext_lazy("request hash"), max_length=64)
    status_code = models.PositiveSmallIntegerField(gettext_lazy("status code"))
    # The rendered JSON, kept as text: jsonb would reorder its keys, and a replay
    # must be the first response byte for byte.
    response = models.TextField(gettext_lazy("response"))
    created_at = models.DateTimeField(gettext_lazy("created at"), auto_now_add=True)

    class Meta:
        verbose_name = gettext_lazy("API request")
        verbose_name_plural = gettext_lazy("API requests")
        constraints = [models.UniqueConstraint(fields=["merchant", "key"], name="api_request_key_unique_per_merchant")]

    def __str__(self):
        return f"{self.merchant_id}:{self.key}"
