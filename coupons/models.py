"""Coupon templates (what a coupon gives), coupons (one member's copy), their history,
and the redemptions merchants booked at the till.

Money is integer fen. A template's ``issued_count`` moves only by a conditional UPDATE
(``issued_count < total_quota``), so a quota is never oversold; a coupon leaves
``issued`` only by a conditional UPDATE too, so it is redeemed, expired or voided once.
"""

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils.translation import gettext_lazy

from members.models import Member, Merchant, Store


class CouponTemplate(models.Model):
    class Kind(models.TextChoices):
        CASH_OFF = "cash_off", gettext_lazy("Cash off with a minimum spend")
        PERCENT_OFF = "percent_off", gettext_lazy("Percentage off")
        VOUCHER = "voucher", gettext_lazy("Voucher")
        GIFT = "gift", gettext_lazy("Gift")

    class FundedBy(models.TextChoices):
        MERCHANT = "merchant", gettext_lazy("Merchant")
        MALL = "mall", gettext_lazy("Mall")

    class Status(models.TextChoices):
        ACTIVE = "active", gettext_lazy("Active")
        PAUSED = "paused", gettext_lazy("Paused")

    name = models.CharField(gettext_lazy("name"), max_length=100)
    description = models.CharField(gettext_lazy("description"), max_length=300, blank=True)
    kind = models.CharField(gettext_lazy("kind"), max_length=16, choices=Kind.choices)
    # cash_off: taken off a sale of at least min_spend_fen; voucher: worth this much.
    face_value_fen = models.BigIntegerField(gettext_lazy("face value"), default=0)
    min_spend_fen = models.BigIntegerField(gettext_lazy("minimum spend"), default=0)
    # percent_off, in basis points: 1500 takes 15 % off (the shopper pays 85 %).
    percent_off_bp = models.PositiveIntegerField(gettext_lazy("percent off"), default=0)
    max_discount_fen = models.BigIntegerField(
        gettext_lazy("largest discount"), null=True, blank=True, help_text=gettext_lazy("percent_off: the cap. Empty: none.")
    )
    gift_description = models.CharField(gettext_lazy("gift"), max_length=200, blank=True)
    # Validity: a fixed window, or valid_days from the moment each coupon is issued.
    valid_from = models.DateTimeField(gettext_lazy("valid from"), null=True, blank=True)
    valid_until = models.DateTimeField(gettext_lazy("valid until"), null=True, blank=True)
    valid_days = models.PositiveIntegerField(
        gettext_lazy("valid days after issue"), null=True, blank=True,
        help_text=gettext_lazy("Instead of a window: each coupon is valid this many days from its issue."),
    )
    total_quota = models.PositiveIntegerField(
        gettext_lazy("total quota"), null=True, blank=True, help_text=gettext_lazy("Empty: unlimited.")
    )
    issued_count = models.PositiveIntegerField(gettext_lazy("issued"), default=0)
    per_member_limit = models.PositiveIntegerField(gettext_lazy("per member"), default=1)
    # Empty: the mall's own template.
    merchant = models.ForeignKey(
        Merchant, on_delete=models.PROTECT, null=True, blank=True, related_name="coupon_templates",
        verbose_name=gettext_lazy("merchant"),
    )
    # Empty: every store of the merchant (a merchant's template) or every store (the mall's).
    stores = models.ManyToManyField(
        Store, blank=True, related_name="coupon_templates", verbose_name=gettext_lazy("accepting stores"),
        help_text=gettext_lazy("Empty: all of the merchant's stores, or all stores for a mall coupon."),
    )
    combines_with_points = models.BooleanField(gettext_lazy("combines with points"), default=True)
    # Who bears the discount in settlement.
    funded_by = models.CharField(gettext_lazy("funded by"), max_length=16, choices=FundedBy.choices, default=FundedBy.MALL)
    points_price = models.PositiveIntegerField(
        gettext_lazy("points price"), null=True, blank=True, help_text=gettext_lazy("Points a member pays for it in the points mall. Empty: not for sale.")
    )
    status = models.CharField(gettext_lazy("status"), max_length=16, choices=Status.choices, default=Status.ACTIVE)
    # Free to claim: listed in the bot's 优惠券 command, the H5 coupons page and the mini-program.
    claimable = models.BooleanField(
        gettext_lazy("free to claim"), default=False,
        help_text=gettext_lazy("Members may claim it free (per-member limit and quota apply) in the bot, the H5 page and the mini-program."),
    )
    # A claim QR's secret: /m/coupons/claim/<claim_code>/ claims it (listed or not).
    # Empty: no claim QR. Random and unguessable (coupons.claims).
    claim_code = models.CharField(gettext_lazy("claim QR code"), max_length=32, null=True, blank=True, unique=True)
    created_at = models.DateTimeField(gettext_lazy("created at"), auto_now_add=True)

    class Meta:
        verbose_name = gettext_lazy("coupon template")
        verbose_name_plural = gettext_lazy("coupon templates")
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(face_value_fen__gte=0) & Q(min_spend_fen__gte=0)
                & (Q(max_discount_fen__isnull=True) | Q(max_discount_fen__gt=0)),
                name="coupon_template_amounts_valid",
            ),
            models.CheckConstraint(
                condition=(Q(kind="cash_off") & Q(face_value_fen__gt=0))
                | (Q(kind="voucher") & Q(face_value_fen__gt=0))
                | (Q(kind="percent_off") & Q(percent_off_bp__gt=0) & Q(percent_off_bp__lt=10000))
                | (Q(kind="gift") & ~Q(gift_description="")),
                name="coupon_template_kind_has_its_value",
            ),
            models.CheckConstraint(
                condition=(
                    Q(valid_days__isnull=True) & Q(valid_from__isnull=False) & Q(valid_until__isnull=False)
                    & Q(valid_until__gt=F("valid_from"))
                )
                | (Q(valid_days__isnull=False) & Q(valid_days__gt=0) & Q(valid_from__isnull=True) & Q(valid_until__isnull=True)),
                name="coupon_template_window_or_days",
            ),
            models.CheckConstraint(
                condition=Q(total_quota__isnull=True) | Q(issued_count__lte=F("total_quota")),
                name="coupon_template_quota_not_oversold",
            ),
            models.CheckConstraint(condition=Q(per_member_limit__gte=1), name="coupon_template_per_member_limit_positive"),
            models.CheckConstraint(
                condition=Q(points_price__isnull=True) | Q(points_price__gt=0), name="coupon_template_points_price_positive"
            ),
            models.CheckConstraint(
                condition=~Q(funded_by="merchant") | Q(merchant__isnull=False), name="coupon_template_merchant_funds_its_own"
            ),
        ]

    def __str__(self):
        return self.name


class Coupon(models.Model):
    class Status(models.TextChoices):
        ISSUED = "issued", gettext_lazy("Issued")
        # Taken by an unpaid order: redeemed when it is paid, issued again when it closes.
        HELD = "held", gettext_lazy("Held for an order")
        REDEEMED = "redeemed", gettext_lazy("Redeemed")
        EXPIRED = "expired", gettext_lazy("Expired")
        VOID = "void", gettext_lazy("Void")

    class Via(models.TextChoices):
        ADMIN = "admin", gettext_lazy("Staff")
        CAMPAIGN = "campaign", gettext_lazy("Campaign")
        CLAIM = "claim", gettext_lazy("Claimed")
        POINTS = "points", gettext_lazy("Bought with points")

    template = models.ForeignKey(CouponTemplate, on_delete=models.PROTECT, related_name="coupons", verbose_name=gettext_lazy("template"))
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="coupons", verbose_name=gettext_lazy("member"))
    # The member's n-th coupon of this template: (template, member, seq) is unique and
    # seq never exceeds the template's per-member limit (coupons.services.coupon_issue).
    seq = models.PositiveIntegerField(gettext_lazy("number of this template"), default=1)
    # Random and unique; identifies the coupon to its own shopper (online orders). It
    # never authorises a redemption at a till: that takes the rotating code (coupons.codes).
    code = models.CharField(gettext_lazy("code"), max_length=32, unique=True)
    status = models.CharField(gettext_lazy("status"), max_length=16, choices=Status.choices, default=Status.ISSUED)
    valid_from = models.DateTimeField(gettext_lazy("valid from"))
    valid_until = models.DateTimeField(gettext_lazy("valid until"))
    issued_via = models.CharField(gettext_lazy("issued via"), max_length=16, choices=Via.choices)
    # Unique when given: "campaign:<id>:<member>", "points:<txn>", an admin form's token …
    issue_key = models.CharField(gettext_lazy("issue key"), max_length=200, null=True, blank=True)
    redeemed_at = models.DateTimeField(gettext_lazy("redeemed at"), null=True, blank=True)
    redeemed_store = models.ForeignKey(
        Store, on_delete=models.PROTECT, null=True, blank=True, related_name="+", verbose_name=gettext_lazy("redeemed at store")
    )
    created_at = models.DateTimeField(gettext_lazy("issued at"), db_index=True)

    class Meta:
        verbose_name = gettext_lazy("coupon")
        verbose_name_plural = gettext_lazy("coupons")
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["template", "member", "seq"], name="coupon_seq_unique_per_member"),
            models.UniqueConstraint(fields=["issue_key"], name="coupon_issue_key_unique"),
            models.CheckConstraint(condition=Q(seq__gte=1), name="coupon_seq_positive"),
            models.CheckConstraint(condition=Q(valid_until__gt=F("valid_from")), name="coupon_validity_window"),
            models.CheckConstraint(
                condition=(Q(status="redeemed") & Q(redeemed_at__isnull=False) & Q(redeemed_store__isnull=False))
                | (~Q(status="redeemed") & Q(redeemed_at__isnull=True) & Q(redeemed_store__isnull=True)),
                name="coupon_redeemed_has_time_and_store",
            ),
        ]
        indexes = [
            models.Index(fields=["member", "-created_at"], name="coupon_member_recent"),
            # coupons_expire_due walks the issued coupons by end of validity.
            models.Index(fields=["valid_until"], condition=Q(status="issued"), name="coupon_issued_by_end"),
        ]

    def __str__(self):
        return self.code


class CouponRedemption(models.Model):
    """A coupon used at a till, keyed by the merchant's Idempotency-Key: a replay of the
    same request finds this row and answers with it."""

    # One redemption in force per coupon; a full refund reverses it (reversed_at) and gives
    # the coupon back, to be redeemed again later.
    coupon = models.ForeignKey(Coupon, on_delete=models.PROTECT, related_name="redemptions", verbose_name=gettext_lazy("coupon"))
    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="+", verbose_name=gettext_lazy("merchant"))
    store = models.ForeignKey(Store, on_delete=models.PROTECT, related_name="+", verbose_name=gettext_lazy("store"))
    idempotency_key = models.CharField(gettext_lazy("idempotency key"), max_length=200)
    request_hash = models.CharField(gettext_lazy("request hash"), max_length=64)
    amount_fen = models.BigIntegerField(gettext_lazy("sale amount"))
    discount_fen = models.BigIntegerField(gettext_lazy("discount"))
    # Copied from the template when redeemed: who bears discount_fen in settlement.
    funded_by = models.CharField(
        gettext_lazy("funded by"), max_length=16, choices=CouponTemplate.FundedBy.choices, default=CouponTemplate.FundedBy.MERCHANT,
    )
    order_ref = models.CharField(gettext_lazy("POS order number"), max_length=64, blank=True)
    # The sale was refunded in full: the discount no longer counts in settlement.
    reversed_at = models.DateTimeField(gettext_lazy("reversed at"), null=True, blank=True)
    # How the shopper authorised it: the rotating coupon code, or a scanned member code.
    authorised_by = models.CharField(gettext_lazy("authorised by"), max_length=16)
    created_at = models.DateTimeField(gettext_lazy("redeemed at"))

    class Meta:
        verbose_name = gettext_lazy("coupon redemption")
        verbose_name_plural = gettext_lazy("coupon redemptions")
        constraints = [
            models.UniqueConstraint(fields=["merchant", "idempotency_key"], name="coupon_redemption_key_unique_per_merchant"),
            models.UniqueConstraint(
                fields=["coupon"], condition=Q(reversed_at__isnull=True), name="coupon_redeemed_once_unless_reversed"
            ),
            models.CheckConstraint(
                condition=Q(amount_fen__gt=0) & Q(discount_fen__gte=0) & Q(discount_fen__lte=F("amount_fen")),
                name="coupon_redemption_discount_within_amount",
            ),
        ]

    def __str__(self):
        return f"{self.coupon} @ {self.store_id}"


class CouponEvent(models.Model):
    """Every change of a coupon, appended, never edited."""

    class Kind(models.TextChoices):
        ISSUED = "issued", gettext_lazy("Issued")
        HELD = "held", gettext_lazy("Held for an order")
        RELEASED = "released", gettext_lazy("Given back")
        REDEEMED = "redeemed", gettext_lazy("Redeemed")
        EXPIRED = "expired", gettext_lazy("Expired")
        VOIDED = "voided", gettext_lazy("Voided")
        MOVED = "moved", gettext_lazy("Moved to a merged member")

    coupon = models.ForeignKey(Coupon, on_delete=models.CASCADE, related_name="events", verbose_name=gettext_lazy("coupon"))
    kind = models.CharField(gettext_lazy("event"), max_length=16, choices=Kind.choices)
    detail = models.JSONField(gettext_lazy("detail"), default=dict, blank=True)
    operator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+",
        verbose_name=gettext_lazy("operator"),
    )
    created_at = models.DateTimeField(gettext_lazy("at"))

    class Meta:
        verbose_name = gettext_lazy("coupon event")
        verbose_name_plural = gettext_lazy("coupon events")
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["coupon", "created_at"], name="coupon_event_by_coupon")]

    def __str__(self):
        return f"{self.coupon_id} {self.kind}"


class Campaign(models.Model):
    """A coupon with a message to an audience of members, keeping a random holdout.

    The audience is every active member matching all the filters given (none given:
    every active member). A member is targeted at most once per campaign, and not
    while any campaign targeted them within this campaign's cooldown. A holdout share
    of the audience, drawn by a hash of (campaign, member), is targeted but gets
    nothing: the comparison that makes the result an *incremental* one
    (coupons.campaigns.campaign_results).
    """

    class Status(models.TextChoices):
        DRAFT = "draft", gettext_lazy("Draft")
        # A merchant's request, waiting for staff (coupons.merchant_campaigns).
        PENDING = "pending", gettext_lazy("Awaiting approval")
        REJECTED = "rejected", gettext_lazy("Rejected")
        ACTIVE = "active", gettext_lazy("Active")
        PAUSED = "paused", gettext_lazy("Paused")
        ENDED = "ended", gettext_lazy("Ended")

    class MerchantScope(models.TextChoices):
        ANY = "", gettext_lazy("Any member")
        CUSTOMERS = "customers", gettext_lazy("Only the merchant's past customers")
        NON_CUSTOMERS = "non_customers", gettext_lazy("Only members who never bought from the merchant")

    name = models.CharField(gettext_lazy("name"), max_length=100)
    template = models.ForeignKey(
        CouponTemplate, on_delete=models.PROTECT, related_name="campaigns", verbose_name=gettext_lazy("coupon template")
    )
    # Audience. Lifecycle segments (members.models.Segment values) and/or "high_value";
    # empty: any segment, or none.
    segments = models.JSONField(
        gettext_lazy("segments"), default=list, blank=True,
        help_text=gettext_lazy('A list, e.g. ["lapsed"] or ["loyal", "high_value"]. Empty: every member.'),
    )
    lapsed_min_days = models.PositiveIntegerField(
        gettext_lazy("not seen for at least (days)"), null=True, blank=True,
        help_text=gettext_lazy("No check-in, purchase or payment for this many days. Empty: no rule."),
    )
    plaza = models.ForeignKey(
        "members.Plaza", on_delete=models.PROTECT, null=True, blank=True, related_name="+",
        verbose_name=gettext_lazy("last visited plaza"),
    )
    tier = models.ForeignKey("members.Tier", on_delete=models.PROTECT, null=True, blank=True, related_name="+", verbose_name=gettext_lazy("tier"))
    # A merchant's campaign (asked for through the merchant API): its own template, an
    # audience it never sees. Empty: the mall's.
    merchant = models.ForeignKey(
        Merchant, on_delete=models.PROTECT, null=True, blank=True, related_name="campaigns",
        verbose_name=gettext_lazy("requested by merchant"),
    )
    merchant_scope = models.CharField(
        gettext_lazy("merchant's customers"), max_length=16, choices=MerchantScope.choices, default=MerchantScope.ANY,
        blank=True,
    )
    max_targets = models.PositiveIntegerField(
        gettext_lazy("at most (members)"), null=True, blank=True,
        help_text=gettext_lazy("Targets at most this many members, holdout included. Empty: no cap."),
    )
    # The merchant API's Idempotency-Key of the request that made it.
    request_key = models.CharField(gettext_lazy("request key"), max_length=200, null=True, blank=True)
    # The audience counted when the merchant asked.
    requested_audience = models.PositiveIntegerField(gettext_lazy("audience when requested"), null=True, blank=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+",
        verbose_name=gettext_lazy("reviewed by"),
    )
    reviewed_at = models.DateTimeField(gettext_lazy("reviewed at"), null=True, blank=True)
    review_note = models.CharField(gettext_lazy("review note"), max_length=300, blank=True)
    message_title = models.CharField(gettext_lazy("message title"), max_length=100)
    message_body = models.TextField(gettext_lazy("message body"))
    cooldown_days = models.PositiveIntegerField(gettext_lazy("cooldown (days)"), default=90)
    # Percent of the audience held out: targeted, given nothing, measured.
    holdout_pct = models.PositiveSmallIntegerField(gettext_lazy("holdout (%)"), default=10)
    starts_at = models.DateTimeField(gettext_lazy("starts at"))
    ends_at = models.DateTimeField(gettext_lazy("ends at"), null=True, blank=True)
    status = models.CharField(gettext_lazy("status"), max_length=16, choices=Status.choices, default=Status.DRAFT)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+",
        verbose_name=gettext_lazy("created by"),
    )
    created_at = models.DateTimeField(gettext_lazy("created at"), auto_now_add=True)

    class Meta:
        verbose_name = gettext_lazy("campaign")
        verbose_name_plural = gettext_lazy("campaigns")
        ordering = ["-created_at", "-id"]
        constraints = [
            # Every campaign keeps a holdout (DESIGN.md, step 4), and treats at least half.
            models.CheckConstraint(condition=Q(holdout_pct__gte=1) & Q(holdout_pct__lte=50), name="campaign_holdout_pct_range"),
            models.CheckConstraint(condition=Q(cooldown_days__gte=1), name="campaign_cooldown_positive"),
            models.CheckConstraint(
                condition=Q(ends_at__isnull=True) | Q(ends_at__gt=F("starts_at")), name="campaign_ends_after_start"
            ),
            models.CheckConstraint(
                condition=Q(merchant__isnull=False) | Q(merchant_scope=""), name="campaign_merchant_scope_needs_merchant"
            ),
            models.CheckConstraint(condition=Q(max_targets__isnull=True) | Q(max_targets__gte=1), name="campaign_max_targets_positive"),
            models.UniqueConstraint(fields=["merchant", "request_key"], name="campaign_request_key_unique_per_merchant"),
        ]

    def __str__(self):
        return self.name


class CampaignTarget(models.Model):
    """A member a campaign reached: once per campaign (rerun-safe). Treated targets get
    the coupon and the push, linked here once issued; holdout targets get nothing."""

    class Group(models.TextChoices):
        TREATED = "treated", gettext_lazy("Treated")
        HOLDOUT = "holdout", gettext_lazy("Holdout")

    campaign = models.ForeignKey(Campaign, on_delete=models.PROTECT, related_name="targets", verbose_name=gettext_lazy("campaign"))
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="campaign_targets", verbose_name=gettext_lazy("member"))
    group = models.CharField(gettext_lazy("group"), max_length=8, choices=Group.choices)
    targeted_at = models.DateTimeField(gettext_lazy("targeted at"))
    coupon = models.OneToOneField(
        Coupon, on_delete=models.PROTECT, null=True, blank=True, related_name="campaign_target", verbose_name=gettext_lazy("coupon"),
    )
    push = models.OneToOneField(
        "members.Push", on_delete=models.SET_NULL, null=True, blank=True, related_name="+", verbose_name=gettext_lazy("push"),
    )
    # Why a treated member got nothing (the coupon service's error code); blank otherwise.
    refused = models.CharField(gettext_lazy("refused because"), max_length=64, blank=True)

    class Meta:
        verbose_name = gettext_lazy("campaign target")
        verbose_name_plural = gettext_lazy("campaign targets")
        ordering = ["campaign", "member"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "member"], name="campaign_target_once_per_member"),
            models.CheckConstraint(
                condition=Q(group="treated") | (Q(coupon__isnull=True) & Q(push__isnull=True)),
                name="campaign_holdout_gets_nothing",
            ),
        ]
        indexes = [
            # The cooldown: has any campaign targeted this member since …?
            models.Index(fields=["member", "targeted_at"], name="campaign_target_member_recent"),
        ]

    def __str__(self):
        return f"{self.campaign_id}:{self.member_id} ({self.group})"
