"""Members, the channel identities that find them, tiers, and visits."""

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from members.models.tenants import Plaza, Store


class Tier(models.Model):
    """A membership tier (普卡 / 银卡 / 金卡 / 黑卡). Data, edited in the admin."""

    code = models.SlugField(max_length=32, unique=True, verbose_name=_("tier code"))
    name = models.CharField(max_length=50, verbose_name=_("name"))
    # Spend over the last 12 months that qualifies for the tier, in fen.
    threshold_fen = models.BigIntegerField(unique=True, verbose_name=_("qualifying 12-month spend (yuan)"))
    # Earn multiplier in basis points: 10000 = 1×, 15000 = 1.5×. The entry tier is 1×.
    multiplier_bp = models.PositiveIntegerField(default=10000, verbose_name=_("points multiplier"))

    class Meta:
        verbose_name = _("tier")
        verbose_name_plural = _("tiers")
        ordering = ["threshold_fen"]
        constraints = [
            models.CheckConstraint(condition=Q(threshold_fen__gte=0), name="tier_threshold_not_negative"),
            models.CheckConstraint(condition=Q(multiplier_bp__gte=10000), name="tier_multiplier_at_least_1x"),
            models.CheckConstraint(
                condition=~Q(threshold_fen=0) | Q(multiplier_bp=10000), name="tier_entry_multiplier_is_1x"
            ),
        ]

    def __str__(self):
        return self.name


class Member(models.Model):
    class Channel(models.TextChoices):
        WECHAT = "wechat", _("WeChat official account")
        MINIAPP = "miniapp", _("WeChat mini-program")
        ALIPAY = "alipay", _("Alipay")
        H5 = "h5", _("Mobile web")
        POS = "pos", _("Merchant POS")
        ADMIN = "admin", _("Mall staff")

    class Status(models.TextChoices):
        ACTIVE = "active", _("Active")
        BANNED = "banned", _("Banned")
        MERGED = "merged", _("Merged into another member")

    class Gender(models.TextChoices):
        UNKNOWN = "", _("Unknown")
        FEMALE = "f", _("Female")
        MALE = "m", _("Male")

    # Public, printed on the member card: 11 random digits and a Luhn check digit.
    member_no = models.CharField(max_length=16, unique=True, verbose_name=_("member number"))
    # Normalised E.164 (+8613800138000); unique when present.
    phone = models.CharField(max_length=20, null=True, blank=True, unique=True, verbose_name=_("phone number"))
    nickname = models.CharField(max_length=64, blank=True, verbose_name=_("nickname"))
    birthday = models.DateField(null=True, blank=True, verbose_name=_("birthday"))
    gender = models.CharField(max_length=1, choices=Gender.choices, blank=True, default=Gender.UNKNOWN, verbose_name=_("gender"))
    tier = models.ForeignKey(Tier, on_delete=models.PROTECT, null=True, blank=True, related_name="members", verbose_name=_("tier"))
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE, verbose_name=_("status"))
    merged_into = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="+", verbose_name=_("merged into")
    )
    join_channel = models.CharField(max_length=16, choices=Channel.choices, verbose_name=_("joined through"))
    join_plaza = models.ForeignKey(Plaza, on_delete=models.PROTECT, null=True, blank=True, related_name="+", verbose_name=_("joined at plaza"))
    last_visit_at = models.DateTimeField(null=True, blank=True, db_index=True, verbose_name=_("last visit"))
    last_visit_plaza = models.ForeignKey(Plaza, on_delete=models.PROTECT, null=True, blank=True, related_name="+", verbose_name=_("last visit plaza"))
    # Qualifying spend (shopper present, refunds taken off) of the local calendar month of
    # the last sale and the 11 before it, in fen: the sum of ``tier_spend_months``, which
    # holds those months' totals as {"2025-03": fen}. Kept by members.tiers on each sale
    # and refund, recomputed from the sales each night.
    tier_spend_fen = models.BigIntegerField(default=0, verbose_name=_("rolling 12-month spend (yuan)"))
    tier_spend_months = models.JSONField(default=dict, blank=True, verbose_name=_("spend by month"))
    # Since when (the nightly review that first saw it) the spend is below the tier's
    # threshold: the grace period of a downgrade runs from here. Null while it is not.
    tier_below_since = models.DateTimeField(null=True, blank=True, verbose_name=_("below the tier's threshold since"))
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))

    class Meta:
        verbose_name = _("member")
        verbose_name_plural = _("members")
        permissions = [("adjust_points", "Can adjust a member's points (staff correction)")]
        indexes = [
            # The admin's prefix search on nicknames (members.admin.base.member_ids_by_prefix):
            # LIKE 'prefix%' is a range scan of a pattern-ops btree on PostgreSQL.
            models.Index(fields=["nickname"], name="member_nickname_prefix", opclasses=["varchar_pattern_ops"]),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(status="merged", merged_into__isnull=False) | (~Q(status="merged") & Q(merged_into__isnull=True)),
                name="member_merged_iff_merged_into",
            ),
        ]

    def __str__(self):
        return self.member_no


class Identity(models.Model):
    """How a channel knows a member. A member may have several; each is unique per channel."""

    class Channel(models.TextChoices):
        WECHAT_OPENID = "wechat_openid", _("Official-account openid")
        MINIAPP_OPENID = "miniapp_openid", _("Mini-program openid")
        WECHAT_UNIONID = "wechat_unionid", _("WeChat unionid")
        ALIPAY_USER_ID = "alipay_user_id", _("Alipay user_id")
        # Apps set to Alipay's open_id standard (every app created since 2023) are told an
        # open_id in place of the user_id: one per person and app, where a user_id is one
        # per person. Alipay tells an app one kind or the other, never both.
        ALIPAY_OPEN_ID = "alipay_open_id", _("Alipay open_id")

    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="identities", verbose_name=_("member"))
    channel = models.CharField(max_length=20, choices=Channel.choices, verbose_name=_("channel"))
    external_id = models.CharField(max_length=128, verbose_name=_("external id"))
    # Official account / service window: whether the shopper follows us now. Pushes
    # to a follower who left are not sent (they stay in the inbox).
    is_following = models.BooleanField(default=False, verbose_name=_("following"))
    # The last message or event from the shopper: WeChat allows customer-service
    # messages for 48 hours after it.
    last_inbound_at = models.DateTimeField(null=True, blank=True, verbose_name=_("last message from the shopper"))
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))

    class Meta:
        verbose_name = _("identity")
        verbose_name_plural = _("identities")
        constraints = [
            models.UniqueConstraint(fields=["channel", "external_id"], name="identity_unique_per_channel"),
        ]

    def __str__(self):
        return f"{self.channel}:{self.external_id}"


class Checkin(models.Model):
    """A check-in at a plaza: at most one per member, plaza and local day."""

    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="checkins", verbose_name=_("member"))
    plaza = models.ForeignKey(Plaza, on_delete=models.PROTECT, related_name="checkins", verbose_name=_("plaza"))
    day = models.DateField(verbose_name=_("day"))
    # Consecutive days with a check-in anywhere in the group, this one included.
    streak = models.PositiveIntegerField(default=1, verbose_name=_("streak"))
    points = models.PositiveIntegerField(default=0, verbose_name=_("points"))
    bonus_points = models.PositiveIntegerField(default=0, verbose_name=_("bonus points"))
    created_at = models.DateTimeField(verbose_name=_("created at"))

    class Meta:
        verbose_name = _("check-in")
        verbose_name_plural = _("check-ins")
        indexes = [models.Index(fields=["member", "day"])]
        constraints = [models.UniqueConstraint(fields=["member", "plaza", "day"], name="one_checkin_per_plaza_per_day")]

    def __str__(self):
        return f"{self.member_id} @ {self.plaza_id} on {self.day}"


class Visit(models.Model):
    """One offline visit: a check-in, a purchase, a redemption, a payment."""

    class Kind(models.TextChoices):
        CHECKIN = "checkin", _("Check-in")
        PURCHASE = "purchase", _("Purchase")
        REDEMPTION = "redemption", _("Redemption")
        PAYMENT = "payment", _("Payment")

    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="visits", verbose_name=_("member"))
    plaza = models.ForeignKey(Plaza, on_delete=models.PROTECT, related_name="visits", verbose_name=_("plaza"))
    store = models.ForeignKey(Store, on_delete=models.PROTECT, null=True, blank=True, related_name="visits", verbose_name=_("store"))
    kind = models.CharField(max_length=16, choices=Kind.choices, verbose_name=_("kind"))
    amount_fen = models.BigIntegerField(default=0, verbose_name=_("amount (yuan)"))
    occurred_at = models.DateTimeField(db_index=True, verbose_name=_("occurred at"))

    class Meta:
        verbose_name = _("visit")
        verbose_name_plural = _("visits")
        indexes = [
            models.Index(fields=["member", "occurred_at"]),
            models.Index(fields=["store", "occurred_at"]),
        ]

    def __str__(self):
        return f"{self.member_id} {self.kind} @ {self.plaza_id}"

