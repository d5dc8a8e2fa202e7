"""Members, the channel identities that find them, tiers, and visits."""

from django.db import models
from django.db.models import Q

from members.models.tenants import Plaza, Store


class Tier(models.Model):
    """A membership tier (普卡 / 银卡 / 金卡 / 黑卡). Data, edited in the admin."""

    code = models.SlugField(max_length=32, unique=True)
    name = models.CharField(max_length=50)
    # Spend over the last 12 months that qualifies for the tier, in fen.
    threshold_fen = models.BigIntegerField(unique=True)
    # Earn multiplier in basis points: 10000 = 1×, 15000 = 1.5×. The entry tier is 1×.
    multiplier_bp = models.PositiveIntegerField(default=10000)

    class Meta:
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
        WECHAT = "wechat", "WeChat official account"
        MINIAPP = "miniapp", "WeChat mini-program"
        ALIPAY = "alipay", "Alipay"
        H5 = "h5", "Mobile web"
        POS = "pos", "Merchant POS"
        ADMIN = "admin", "Mall staff"

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        BANNED = "banned", "Banned"
        MERGED = "merged", "Merged into another member"

    class Gender(models.TextChoices):
        UNKNOWN = "", "Unknown"
        FEMALE = "f", "Female"
        MALE = "m", "Male"

    # Public, printed on the member card: 11 random digits and a Luhn check digit.
    member_no = models.CharField(max_length=16, unique=True)
    # Normalised E.164 (+8613800138000); unique when present.
    phone = models.CharField(max_length=20, null=True, blank=True, unique=True)
    nickname = models.CharField(max_length=64, blank=True)
    birthday = models.DateField(null=True, blank=True)
    gender = models.CharField(max_length=1, choices=Gender.choices, blank=True, default=Gender.UNKNOWN)
    tier = models.ForeignKey(Tier, on_delete=models.PROTECT, null=True, blank=True, related_name="members")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    merged_into = models.ForeignKey("self", on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    join_channel = models.CharField(max_length=16, choices=Channel.choices)
    join_plaza = models.ForeignKey(Plaza, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    last_visit_at = models.DateTimeField(null=True, blank=True, db_index=True)
    last_visit_plaza = models.ForeignKey(Plaza, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    # Qualifying spend (shopper present, refunds taken off) of the local calendar month of
    # the last sale and the 11 before it, in fen: the sum of ``tier_spend_months``, which
    # holds those months' totals as {"2025-03": fen}. Kept by members.tiers on each sale
    # and refund, recomputed from the sales each night.
    tier_spend_fen = models.BigIntegerField(default=0)
    tier_spend_months = models.JSONField(default=dict, blank=True)
    # Since when (the nightly review that first saw it) the spend is below the tier's
    # threshold: the grace period of a downgrade runs from here. Null while it is not.
    tier_below_since = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        permissions = [("adjust_points", "Can adjust a member's points (staff correction)")]
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
        WECHAT_OPENID = "wechat_openid", "Official-account openid"
        MINIAPP_OPENID = "miniapp_openid", "Mini-program openid"
        WECHAT_UNIONID = "wechat_unionid", "WeChat unionid"
        ALIPAY_USER_ID = "alipay_user_id", "Alipay user_id"
        # Apps set to Alipay's open_id standard (every app created since 2023) are told an
        # open_id in place of the user_id: one per person and app, where a user_id is one
        # per person. Alipay tells an app one kind or the other, never both.
        ALIPAY_OPEN_ID = "alipay_open_id", "Alipay open_id"

    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="identities")
    channel = models.CharField(max_length=20, choices=Channel.choices)
    external_id = models.CharField(max_length=128)
    # Official account / service window: whether the shopper follows us now. Pushes
    # to a follower who left are not sent (they stay in the inbox).
    is_following = models.BooleanField(default=False)
    # The last message or event from the shopper: WeChat allows customer-service
    # messages for 48 hours after it.
    last_inbound_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "identities"
        constraints = [
            models.UniqueConstraint(fields=["channel", "external_id"], name="identity_unique_per_channel"),
        ]

    def __str__(self):
        return f"{self.channel}:{self.external_id}"


class Checkin(models.Model):
    """A check-in at a plaza: at most one per member, plaza and local day."""

    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="checkins")
    plaza = models.ForeignKey(Plaza, on_delete=models.PROTECT, related_name="checkins")
    day = models.DateField()
    # Consecutive days with a check-in anywhere in the group, this one included.
    streak = models.PositiveIntegerField(default=1)
    points = models.PositiveIntegerField(default=0)
    bonus_points = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["member", "day"])]
        constraints = [models.UniqueConstraint(fields=["member", "plaza", "day"], name="one_checkin_per_plaza_per_day")]

    def __str__(self):
        return f"{self.member_id} @ {self.plaza_id} on {self.day}"


class Visit(models.Model):
    """One offline visit: a check-in, a purchase, a redemption, a payment."""

    class Kind(models.TextChoices):
        CHECKIN = "checkin", "Check-in"
        PURCHASE = "purchase", "Purchase"
        REDEMPTION = "redemption", "Redemption"
        PAYMENT = "payment", "Payment"

    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="visits")
    plaza = models.ForeignKey(Plaza, on_delete=models.PROTECT, related_name="visits")
    store = models.ForeignKey(Store, on_delete=models.PROTECT, null=True, blank=True, related_name="visits")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    amount_fen = models.BigIntegerField(default=0)
    occurred_at = models.DateTimeField(db_index=True)

    class Meta:
        indexes = [
            models.Index(fields=["member", "occurred_at"]),
            models.Index(fields=["store", "occurred_at"]),
        ]

    def __str__(self):
        return f"{self.member_id} {self.kind} @ {self.plaza_id}"

