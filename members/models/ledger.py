"""The points ledger: double entry, FIFO lots, idempotency keys.

Invariants (DESIGN.md "The points ledger"):
- the entries of a transaction sum to zero;
- a wallet's balance = Σ its entries = Σ its lots' remaining, and never goes below zero;
- entries are never updated or deleted: a correction is a new transaction.
Every entry and lot carries the member it concerns, so the ledger can be distributed
by member (Citus) with wallets, lots and entries co-located.

Only the services in members/ledger.py write these tables.
"""

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from members.models.members import Member
from members.models.tenants import Merchant, Store


class Account(models.Model):
    class Kind(models.TextChoices):
        WALLET = "wallet", "Member wallet"
        MERCHANT_FUNDING = "merchant_funding", "Merchant funding (points it issued)"
        MERCHANT_ACCEPTANCE = "merchant_acceptance", "Merchant acceptance (points it took as payment)"
        PROMOTIONS = "promotions", "Mall promotions"
        EXPIRED = "expired", "Expired points sink"
        # Mall-funded points of a sale only the merchant declared, held for the refund
        # window before they reach the wallet (DESIGN.md "Pending points"). Its entries
        # name the member; Σ of a member's = Σ remaining of their pending and held lots.
        PENDING = "pending", "Pending points (not yet spendable)"
        PARTNER = "partner", "Partner programme"
        # Points an unpaid order set aside: out of the wallet, not yet the merchant's.
        # Its entries name the member; Σ of a hold's = what the order may still capture.
        ESCROW = "escrow", "Points held by unpaid orders"

    kind = models.CharField(max_length=24, choices=Kind.choices)
    member = models.OneToOneField(Member, on_delete=models.PROTECT, null=True, blank=True, related_name="wallet")
    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, null=True, blank=True, related_name="accounts")
    partner_code = models.SlugField(max_length=32, null=True, blank=True)
    # Wallets: the live balance, moved with F() under the wallet's row lock in the same
    # transaction as its entries. System accounts: Σ entries up to `rolled_up_entry_id`,
    # written by the roll-up task; they are never locked or updated on the hot path.
    balance = models.BigIntegerField(default=0)
    rolled_up_entry_id = models.BigIntegerField(default=0)
    rolled_up_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=~Q(kind="wallet") | Q(balance__gte=0), name="wallet_balance_not_negative"),
            models.CheckConstraint(
                condition=(Q(kind="wallet") & Q(member__isnull=False) & Q(merchant__isnull=True))
                | (Q(kind__in=["merchant_funding", "merchant_acceptance"]) & Q(member__isnull=True) & Q(merchant__isnull=False))
                | (Q(kind="partner") & Q(member__isnull=True) & Q(merchant__isnull=True) & Q(partner_code__isnull=False))
                | (Q(kind__in=["promotions", "expired", "pending", "escrow"]) & Q(member__isnull=True) & Q(merchant__isnull=True)),
                name="account_owner_matches_kind",
            ),
            models.UniqueConstraint(fields=["kind", "merchant"], condition=Q(merchant__isnull=False), name="one_account_per_merchant_kind"),
            models.UniqueConstraint(fields=["partner_code"], condition=Q(kind="partner"), name="one_account_per_partner"),
            models.UniqueConstraint(
                fields=["kind"], condition=Q(kind__in=["promotions", "expired", "pending", "escrow"]), name="one_mall_account_per_kind"
            ),
        ]

    def __str__(self):
        if self.kind == self.Kind.WALLET:
            return f"wallet of member #{self.member_id}"
        if self.merchant_id:
            return f"{self.get_kind_display()}: {self.merchant}"
        if self.partner_code:
            return f"partner {self.partner_code}"
        return self.get_kind_display()


class PointsTransaction(models.Model):
    class Kind(models.TextChoices):
        EARN = "earn", "Earn (purchase)"
        REDEEM = "redeem", "Redeem (points as payment)"
        GRANT = "grant", "Grant (mall promotion)"
        REVERSE = "reverse", "Reversal (refund)"
        ADJUST = "adjust", "Staff adjustment"
        EXPIRE = "expire", "Expiry"
        TRANSFER = "transfer", "Transfer between members"
        RELEASE = "release", "Release of pending points"
        CANCEL = "cancel", "Cancellation of held points"
        HOLD = "hold", "Hold (points for an unpaid order)"
        CAPTURE = "capture", "Capture (order paid with held points)"

    # Room for the API's 200-character keys behind their "api:<merchant>:" prefix.
    idempotency_key = models.CharField(max_length=255, unique=True)
    # SHA-256 of the request that first used the key: a replay with another body is a conflict.
    request_hash = models.CharField(max_length=64)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="points_transactions")
    # The wallet's net change (positive: the member gained points).
    points = models.BigIntegerField()
    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    store = models.ForeignKey(Store, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    # Earn: the sale amount. Reverse: the refunded amount.
    amount_fen = models.BigIntegerField(null=True, blank=True)
    # Reverse: the points the refund should have taken back but the member had spent;
    # borne by the funding merchant (its funding account is not credited for them).
    shortfall = models.BigIntegerField(default=0)
    reverses = models.ForeignKey("self", on_delete=models.PROTECT, null=True, blank=True, related_name="reversals")
    counterparty = models.ForeignKey(Member, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    reason = models.CharField(max_length=200, blank=True)
    reference = models.CharField(max_length=100, blank=True, help_text="The caller's reference, e.g. the POS order number.")
    operator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        verbose_name = "points transaction"
        indexes = [models.Index(fields=["member", "-created_at"]), models.Index(fields=["merchant", "created_at"])]
        constraints = [
            models.CheckConstraint(condition=Q(shortfall__gte=0), name="shortfall_not_negative"),
            models.CheckConstraint(condition=~Q(kind="adjust") | (Q(operator__isnull=False) & ~Q(reason="")), name="adjust_has_operator_and_reason"),
        ]

    def __str__(self):
        return self.idempotency_key


class Lot(models.Model):
    """Points credited to a wallet at one time, consumed first-expiring-first.

    An *available* lot is in the wallet's balance. A *pending* lot (mall-funded points
    of a sale only the merchant declared) sits on the mall's pending account until
    ``releases_at``; a *held* one waits for staff because its merchant went over its
    daily cap. Neither is spendable; releasing moves the lot into the wallet.
    """

    class Status(models.TextChoices):
        AVAILABLE = "available", "Available"
        PENDING = "pending", "Pending (refund window)"
        HELD = "held", "Held for review (merchant over its daily cap)"

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="lots")
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="lots")
    transaction = models.ForeignKey(PointsTransaction, on_delete=models.PROTECT, related_name="lots")
    amount = models.BigIntegerField()
    remaining = models.BigIntegerField()
    expires_at = models.DateTimeField()
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.AVAILABLE)
    # Pending lots: when they become spendable. The merchant whose sale funded a pending
    # lot's extra, for its daily cap (kept here so the release job needs no join).
    releases_at = models.DateTimeField(null=True, blank=True)
    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    # A lot carried over from another member's lot by a transfer (a merge), or given back
    # by a refund of the spend that took it: the same points, for the refund of the
    # purchase that earned them.
    moved_from = models.ForeignKey("self", on_delete=models.PROTECT, null=True, blank=True, related_name="moved_to")
    created_at = models.DateTimeField()

    class Meta:
        permissions = [("review_held_points", "Can release or cancel points held for review")]
        indexes = [
            models.Index(fields=["releases_at"], name="lot_release_due", condition=Q(status="pending")),
            # FIFO consumption and the nightly expiry scan.
            models.Index(fields=["account", "expires_at", "id"], name="lot_fifo", condition=Q(remaining__gt=0)),
            models.Index(fields=["expires_at"], name="lot_due", condition=Q(remaining__gt=0)),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="lot_amount_positive"),
            models.CheckConstraint(condition=Q(remaining__gte=0) & Q(remaining__lte=F("amount")), name="lot_remaining_within_amount"),
            models.CheckConstraint(
                condition=Q(status="available") | Q(releases_at__isnull=False), name="lot_pending_has_release_date"
            ),
        ]

    def __str__(self):
        return f"lot #{self.pk}: {self.remaining}/{self.amount} until {self.expires_at:%Y-%m-%d}"


class Entry(models.Model):
    """One leg of a transaction. Wallet legs name the lot they credit or consume."""

    transaction = models.ForeignKey(PointsTransaction, on_delete=models.PROTECT, related_name="entries")
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="entries")
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="+")
    lot = models.ForeignKey(Lot, on_delete=models.PROTECT, null=True, blank=True, related_name="entries")
    amount = models.BigIntegerField()
    created_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "entries"
        indexes = [models.Index(fields=["account", "created_at"])]
        constraints = [models.CheckConstraint(condition=~Q(amount=0), name="entry_amount_not_zero")]

    def __str__(self):
        return f"{self.amount:+d} → account #{self.account_id}"


class ShortfallRecovery(models.Model):
    """Points of a refunded purchase that its refund could not take back (the shopper had
    spent them: the reversal's ``shortfall``), recovered when the spend is refunded in
    turn and gives them back: they go to the funding merchant, not to the wallet.

    Append-only, one row per (give-back transaction, purchase): Σ ``points`` of a
    purchase never exceeds Σ ``shortfall`` of its reversals.
    """

    earn = models.ForeignKey(PointsTransaction, on_delete=models.PROTECT, related_name="shortfall_recoveries")
    transaction = models.ForeignKey(PointsTransaction, on_delete=models.PROTECT, related_name="+")
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="+")
    points = models.BigIntegerField()
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(points__gt=0), name="shortfall_recovery_positive"),
            models.UniqueConstraint(fields=["transaction", "earn"], name="one_recovery_per_transaction_and_purchase"),
        ]

    def __str__(self):
        return f"{self.points} points of {self.earn_id} recovered by {self.transaction_id}"
