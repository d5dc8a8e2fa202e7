"""Plazas and their tenants: merchants, their stores and their API keys."""

from django.db import models
from django.db.models import Q


class Plaza(models.Model):
    code = models.SlugField(max_length=32, unique=True, help_text="Short code, used in QR scenes (checkin:<code>).")
    name = models.CharField(max_length=100)
    city = models.CharField(max_length=50, blank=True)
    address = models.CharField(max_length=200, blank=True)
    # What is on today, told to shoppers when they check in; edited by staff.
    notice = models.CharField(max_length=200, blank=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["code"]

    def __str__(self):
        return f"{self.name} ({self.code})"


class Merchant(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        SUSPENDED = "suspended", "Suspended"
        CLOSED = "closed", "Closed"

    name = models.CharField(max_length=100)
    # The share of each sale the merchant funds as points, in basis points (100 = 1 %).
    earn_rate_bp = models.PositiveIntegerField(default=100)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    contact_phone = models.CharField(max_length=32, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(earn_rate_bp__lte=10000), name="merchant_earn_rate_at_most_100pct"),
        ]

    def __str__(self):
        return self.name

    @property
    def is_active(self) -> bool:
        return self.status == self.Status.ACTIVE


class Store(models.Model):
    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="stores")
    plaza = models.ForeignKey(Plaza, on_delete=models.PROTECT, related_name="stores")
    # Public: printed in the shop's payment QR (/m/pay/<code>/) and sent by the POS.
    code = models.SlugField(max_length=32, unique=True)
    name = models.CharField(max_length=100)
    unit = models.CharField(max_length=32, blank=True, help_text="Shop number in the plaza, e.g. L2-018.")
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["code"]

    def __str__(self):
        return f"{self.name} ({self.code})"


class MerchantApiKey(models.Model):
    """A merchant's API key. Only a hash is kept; the key is shown once, at creation.

    Keys are ``mk_<prefix>_<secret>``: the prefix finds the row, the SHA-256 of the
    whole key proves it. Several may be live at once, so a merchant can rotate.
    """

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, default="default")
    prefix = models.CharField(max_length=16, unique=True)
    key_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "merchant API key"

    def __str__(self):
        return f"mk_{self.prefix}_… ({self.merchant})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
