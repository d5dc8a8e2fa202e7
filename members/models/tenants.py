"""Plazas and their tenants: merchants, their stores and their API keys."""

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy


class Plaza(models.Model):
    code = models.SlugField(max_length=32, unique=True, help_text=gettext_lazy("Short code, used in QR scenes (checkin:<code>)."), verbose_name=gettext_lazy("plaza code"))
    name = models.CharField(max_length=100, verbose_name=gettext_lazy("name"))
    city = models.CharField(max_length=50, blank=True, verbose_name=gettext_lazy("city"))
    address = models.CharField(max_length=200, blank=True, verbose_name=gettext_lazy("address"))
    # What is on today, told to shoppers when they check in; edited by staff.
    notice = models.CharField(max_length=200, blank=True, verbose_name=gettext_lazy("notice"))
    is_active = models.BooleanField(default=True, verbose_name=gettext_lazy("active"))
    # The proofs of presence a check-in here may bring (members.checkin): any one accepted
    # proof is enough. A permanent code proves nothing (a photo of it works from home), so
    # a plaza that turns it off accepts only what expires or what says where the phone is.
    checkin_accepts_permanent = models.BooleanField(
        gettext_lazy("accepts the permanent check-in code"), default=True,
        help_text=gettext_lazy(
            "The WeChat code with scene checkin:<code> and poster links printed without an expiry. "
            "A photo of them checks in from anywhere."
        ),
    )
    checkin_accepts_printed = models.BooleanField(
        gettext_lazy("accepts printed links before their expiry"), default=True,
        help_text=gettext_lazy("Posters printed with a validity (e.g. 30 days): refused after it."),
    )
    checkin_accepts_screen = models.BooleanField(
        gettext_lazy("accepts the rotating code on a screen"), default=True,
        help_text=gettext_lazy("The check-in screen at the plaza shows a code that changes every 30 seconds."),
    )
    checkin_accepts_location = models.BooleanField(
        gettext_lazy("accepts a location inside the geofence"), default=False,
        help_text=gettext_lazy(
            "Any code of the plaza, scanned by a phone that reports a location within the radius (mini-program, "
            "browser, or the official account's location report of the last 10 minutes). The phone reports its "
            "own location: a weaker proof than the rotating code."
        ),
    )
    # The geofence's centre in GCJ-02, the datum of Tencent Maps and AMap, where staff
    # look it up; WGS-84 reports (GPS, browsers, WeChat's LOCATION event) are converted.
    latitude = models.FloatField(gettext_lazy("latitude"), null=True, blank=True, help_text=gettext_lazy("GCJ-02, as Tencent Maps and AMap show it."))
    longitude = models.FloatField(gettext_lazy("longitude"), null=True, blank=True, help_text=gettext_lazy("GCJ-02, as Tencent Maps and AMap show it."))
    geofence_radius_m = models.PositiveIntegerField(
        gettext_lazy("geofence radius (metres)"), default=300,
        help_text=gettext_lazy("Leave room for the plaza's size and for a phone's error indoors (often 50–200 m)."),
    )
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=gettext_lazy("created at"))

    class Meta:
        verbose_name = gettext_lazy("plaza")
        verbose_name_plural = gettext_lazy("plazas")
        ordering = ["code"]
        permissions = [("show_checkin_screen", "Can show the plaza's rotating check-in code on a screen")]
        constraints = [
            models.CheckConstraint(
                condition=Q(latitude__isnull=True, longitude__isnull=True) | Q(latitude__isnull=False, longitude__isnull=False),
                name="plaza_latitude_and_longitude_together",
                violation_error_message=gettext_lazy("Give both latitude and longitude, or neither."),
            ),
            models.CheckConstraint(
                condition=Q(latitude__isnull=True) | Q(latitude__gte=-90, latitude__lte=90, longitude__gte=-180, longitude__lte=180),
                name="plaza_coordinates_in_range",
                violation_error_message=gettext_lazy("Latitude is −90 to 90 and longitude −180 to 180."),
            ),
            models.CheckConstraint(
                condition=Q(geofence_radius_m__gte=10, geofence_radius_m__lte=10000), name="plaza_geofence_radius_10m_to_10km",
                violation_error_message=gettext_lazy("The geofence radius is 10 to 10,000 metres."),
            ),
            models.CheckConstraint(
                condition=Q(checkin_accepts_location=False) | Q(latitude__isnull=False),
                name="plaza_geofence_needs_coordinates",
                violation_error_message=gettext_lazy("A plaza that accepts a location needs its latitude and longitude."),
            ),
        ]

    def __str__(self):
        return f"{self.name} ({self.code})"


class Merchant(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", gettext_lazy("Active")
        SUSPENDED = "suspended", gettext_lazy("Suspended")
        CLOSED = "closed", gettext_lazy("Closed")

    name = models.CharField(max_length=100, verbose_name=gettext_lazy("name"))
    # The share of each sale the merchant funds as points, in basis points (100 = 1 %).
    earn_rate_bp = models.PositiveIntegerField(
        verbose_name=gettext_lazy("earn rate (%)"), default=100,
        help_text=gettext_lazy(
            "The share of each sale the merchant funds as points, in percent: 1 means 1 percent of the amount "
            "(up to 2 decimals, at most 100)."
        ),
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE, verbose_name=gettext_lazy("status"))
    contact_phone = models.CharField(max_length=32, blank=True, verbose_name=gettext_lazy("contact phone"))
    # Limits on what a merchant can declare (issue "Trust"): a sale above max_sale_fen is
    # refused; mall-funded points of its sales above the daily cap are held for staff
    # when the pending points are released. Empty: the settings' defaults.
    max_sale_fen = models.BigIntegerField(
        verbose_name=gettext_lazy("largest sale (yuan)"),
        null=True, blank=True,
        help_text=gettext_lazy("The largest single sale this merchant may book, in yuan. Empty: MERCHANT_MAX_SALE_FEN."),
    )
    mall_points_daily_cap = models.BigIntegerField(
        verbose_name=gettext_lazy("daily cap of mall-funded points"),
        null=True, blank=True,
        help_text=gettext_lazy(
            "Mall-funded points a day (tier extras) released for this merchant's sales; the rest is held for review. "
            "Empty: MERCHANT_MALL_POINTS_DAILY_CAP."
        ),
    )
    # Service-provider (partner) mode: the tenant's own accounts collect its shoppers'
    # payments when set; otherwise the mall's account does, and settles with the tenant.
    wechat_sub_mch_id = models.CharField(
        verbose_name=gettext_lazy("WeChat Pay sub-merchant id"),
        max_length=32, blank=True,
        help_text=gettext_lazy("WeChat Pay sub-merchant id (sub_mch_id) under the mall's service-provider account."),
    )
    alipay_app_auth_token = models.CharField(
        verbose_name=gettext_lazy("Alipay app_auth_token"),
        max_length=64, blank=True, help_text=gettext_lazy("The tenant's Alipay app_auth_token, granted to the mall's app."),
    )
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=gettext_lazy("created at"))

    class Meta:
        verbose_name = gettext_lazy("merchant")
        verbose_name_plural = gettext_lazy("merchants")
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(earn_rate_bp__lte=10000), name="merchant_earn_rate_at_most_100pct"),
            models.CheckConstraint(condition=Q(max_sale_fen__isnull=True) | Q(max_sale_fen__gt=0), name="merchant_max_sale_positive"),
            models.CheckConstraint(
                condition=Q(mall_points_daily_cap__isnull=True) | Q(mall_points_daily_cap__gte=0), name="merchant_daily_cap_not_negative"
            ),
        ]

    def __str__(self):
        return self.name

    @property
    def is_active(self) -> bool:
        return self.status == self.Status.ACTIVE


class Store(models.Model):
    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="stores", verbose_name=gettext_lazy("merchant"))
    plaza = models.ForeignKey(Plaza, on_delete=models.PROTECT, related_name="stores", verbose_name=gettext_lazy("plaza"))
    # Public: printed in the shop's payment QR (/m/pay/<code>/) and sent by the POS.
    code = models.SlugField(max_length=32, unique=True, verbose_name=gettext_lazy("store code"))
    name = models.CharField(max_length=100, verbose_name=gettext_lazy("name"))
    unit = models.CharField(max_length=32, blank=True, help_text=gettext_lazy("Shop number in the plaza, e.g. L2-018."), verbose_name=gettext_lazy("unit"))
    is_active = models.BooleanField(default=True, verbose_name=gettext_lazy("active"))
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=gettext_lazy("created at"))

    class Meta:
        verbose_name = gettext_lazy("store")
        verbose_name_plural = gettext_lazy("stores")
        ordering = ["code"]

    def __str__(self):
        return f"{self.name} ({self.code})"


class MerchantApiKey(models.Model):
    """A merchant's API key. Only a hash is kept; the key is shown once, at creation.

    Keys are ``mk_<prefix>_<secret>``: the prefix finds the row, the SHA-256 of the
    whole key proves it. Several may be live at once, so a merchant can rotate.
    """

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="api_keys", verbose_name=gettext_lazy("merchant"))
    name = models.CharField(max_length=100, default="default", verbose_name=gettext_lazy("name"))
    prefix = models.CharField(max_length=16, unique=True, verbose_name=gettext_lazy("prefix"))
    key_hash = models.CharField(max_length=64, verbose_name=gettext_lazy("key hash"))
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=gettext_lazy("created at"))
    last_used_at = models.DateTimeField(null=True, blank=True, verbose_name=gettext_lazy("last used at"))
    revoked_at = models.DateTimeField(null=True, blank=True, verbose_name=gettext_lazy("revoked at"))

    class Meta:
        verbose_name = gettext_lazy("merchant API key")
        verbose_name_plural = gettext_lazy("merchant API keys")

    def __str__(self):
        return f"mk_{self.prefix}_… ({self.merchant})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
