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
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from members.models.members import Member
from members.models.tenants import Merchant, Store


class Account(models.Model):
    class Kind(models.TextChoices):
        WALLET = "wallet", _("Member wallet")
        MERCHANT_FUNDING = "merchant_funding", _("Merchant funding (points it issued)")
        MERCHANT_ACCEPTANCE = "merchant_acceptance", _("Merchant acceptance (points it took as payment)")
        PROMOTIONS = "promotions", _("Mall promotions")
        EXPIRED = "expired", _("Expired points sink")
        # Mall-funded points of a sale only the merchant declared, held for the refund
        # window before they reach the wallet (DESIGN.md "Pending points"). Its entries
        # name the member; Σ of a member's = Σ remaining of their pending and held lots.
        PENDING = "pending", _("Pending points (not yet spendable)")
        PARTNER = "partner", _("Partner programme")
        # Points an unpaid order set aside: out of the wallet, not yet the merchant's.
        # Its entries name the member; Σ of a hold's = what the order may still capture.
        ESCROW = "escrow", _("Points held by unpaid orders")

    kind = models.CharField(max_length=24, choices=Kind.choices, verbose_name=_("kind"))
    member = models.OneToOneField(Member, on_delete=models.PROTECT, null=True, blank=True, related_name="wallet", verbose_name=_("member"))
    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, null=True, blank=True, related_name="accounts", verbose_name=_("merchant"))
    partner_code = models.SlugField(max_length=32, null=True, blank=True, verbose_name=_("partner code"))
    # Wallets: the live balance, moved with F() under the wallet's row lock in the same
    # transaction as its entries. System accounts: Σ entries up to `rolled_up_entry_id`,
    # written by the roll-up task; they are never locked or updated on the hot path.
    balance = models.BigIntegerField(default=0, verbose_name=_("balance"))
    rolled_up_entry_id = models.BigIntegerField(default=0, verbose_name=_("rolled up to entry"))
    rolled_up_at = models.DateTimeField(null=True, blank=True, verbose_name=_("rolled up at"))
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))

    class Meta:
        verbose_name = _("points account")
        verbose_name_plural = _("points accounts")
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
            return gettext("wallet of member #%(id)s") % {"id": self.member_id}
        if self.merchant_id:
            return f"{self.get_kind_display()}: {self.merchant}"
        if self.partner_code:
            return gettext("partner %(code)s") % {"code": self.partner_code}
        return self.get_kind_display()


class PointsTransaction(models.Model):
    class Kind(models.TextChoices):
        EARN = "earn", _("Earn (purchase)")
        REDEEM = "redeem", _("Redeem (points as payment)")
        GRANT = "grant", _("Grant (mall promotion)")
        REVERSE = "reverse", _("Reversal (refund)")
        ADJUST = "adjust", _("Staff adjustment")
        EXPIRE = "expire", _("Expiry")
        TRANSFER = "transfer", _("Transfer between members")
        RELEASE = "release", _("Release of pending points")
        CANCEL = "cancel", _("Cancellation of held points")
        HOLD = "hold", _("Hold (points for an unpaid order)")
        CAPTURE = "capture", _("Capture (order paid with held points)")

    # Room for the API's 200-character keys behind their "api:<merchant>:" prefix.
    idempotency_key = models.CharField(max_length=255, unique=True, verbose_name=_("idempotency key"))
    # SHA-256 of the request that first used the key: a replay with another body is a conflict.
    request_hash = models.CharField(max_length=64, verbose_name=_("request hash"))
    kind = models.CharField(max_length=16, choices=Kind.choices, verbose_name=_("kind"))
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="points_transactions", verbose_name=_("member"))
    # The wallet's net change (positive: the member gained points).
    points = models.BigIntegerField(verbose_name=_("points"))
    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, null=True, blank=True, related_name="+", verbose_name=_("merchant"))
    store = models.ForeignKey(Store, on_delete=models.PROTECT, null=True, blank=True, related_name="+", verbose_name=_("store"))
    # Earn: the sale amount. Reverse: the refunded amount.
    amount_fen = models.BigIntegerField(null=True, blank=True, verbose_name=_("amount (yuan)"))
    # Reverse: the points the refund should have taken back but the member had spent;
    # borne by the funding merchant (its funding account is not credited for them).
    shortfall = models.BigIntegerField(default=0, verbose_name=_("shortfall"))
    reverses = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="reversals", verbose_name=_("reverses")
    )
    counterparty = models.ForeignKey(Member, on_delete=models.PROTECT, null=True, blank=True, related_name="+", verbose_name=_("counterparty"))
    reason = models.CharField(max_length=200, blank=True, verbose_name=_("reason"))
    # What the shopper's history says about this entry, when staff chose or typed it (an
    # adjustment): a code of members.public_notes.PublicNote, shown translated, or text
    # shown as typed. ``reason`` is for staff and never shown to the shopper.
    # db_default: the set-based SQL of members.ledger_sql inserts rows without naming it.
    public_note = models.CharField(max_length=200, blank=True, db_default="", verbose_name=_("description for the shopper"))
    reference = models.CharField(max_length=100, blank=True, help_text=_("The caller's reference, e.g. the POS order number."), verbose_name=_("reference"))
    operator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+", verbose_name=_("operator"))
    created_at = models.DateTimeField(db_index=True, verbose_name=_("created at"))

    class Meta:
        verbose_name = _("points transaction")
        verbose_name_plural = _("points transactions")
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
        AVAILABLE = "available", _("Available")
        PENDING = "pending", _("Pending (refund window)")
        HELD = "held", _("Held for review (merchant over its daily cap)")

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="lots", verbose_name=_("account"))
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="lots", verbose_name=_("member"))
    transaction = models.ForeignKey(PointsTransaction, on_delete=models.PROTECT, related_name="lots", verbose_name=_("transaction"))
    amount = models.BigIntegerField(verbose_name=_("amount"))
    remaining = models.BigIntegerField(verbose_name=_("remaining"))
    expires_at = models.DateTimeField(verbose_name=_("expires at"))
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.AVAILABLE, verbose_name=_("status"))
    # Pending lots: when they become spendable. The merchant whose sale funded a pending
    # lot's extra, for its daily cap (kept here so the release job needs no join).
    releases_at = models.DateTimeField(null=True, blank=True, verbose_name=_("releases at"))
    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, null=True, blank=True, related_name="+", verbose_name=_("merchant"))
    # A lot carried over from another member's lot by a transfer (a merge), or given back
    # by a refund of the spend that took it: the same points, for the refund of the
    # purchase that earned them.
    moved_from = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="moved_to", verbose_name=_("moved from")
    )
    created_at = models.DateTimeField(verbose_name=_("created at"))

    class Meta:
        verbose_name = _("points lot")
        verbose_name_plural = _("points lots")
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
        return gettext("lot #%(id)s: %(remaining)s/%(amount)s until %(expires)s") % {
            "id": self.pk, "remaining": self.remaining, "amount": self.amount, "expires": f"{self.expires_at:%Y-%m-%d}",
        }


class Entry(models.Model):
    """One leg of a transaction. Wallet legs name the lot they credit or consume."""

    transaction = models.ForeignKey(PointsTransaction, on_delete=models.PROTECT, related_name="entries", verbose_name=_("transaction"))
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="entries", verbose_name=_("account"))
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="+", verbose_name=_("member"))
    lot = models.ForeignKey(Lot, on_delete=models.PROTECT, null=True, blank=True, related_name="entries", verbose_name=_("lot"))
    amount = models.BigIntegerField(verbose_name=_("amount"))
    created_at = models.DateTimeField(verbose_name=_("created at"))

    class Meta:
        verbose_name = _("ledger entry")
        verbose_name_plural = _("ledger entries")
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

    earn = models.ForeignKey(PointsTransaction, on_delete=models.PROTECT, related_name="shortfall_recoveries", verbose_name=_("earn"))
    transaction = models.ForeignKey(PointsTransaction, on_delete=models.PROTECT, related_name="+", verbose_name=_("transaction"))
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="+", verbose_name=_("member"))
    points = models.BigIntegerField(verbose_name=_("points"))
    created_at = models.DateTimeField(verbose_name=_("created at"))

    class Meta:
        verbose_name = _("shortfall recovery")
        verbose_name_plural = _("shortfall recoveries")
        constraints = [
            models.CheckConstraint(condition=Q(points__gt=0), name="shortfall_recovery_positive"),
            models.UniqueConstraint(fields=["transaction", "earn"], name="one_recovery_per_transaction_and_purchase"),
        ]

    def __str__(self):
        return f"{self.points} points of {self.earn_id} recovered by {self.transaction_id}"
