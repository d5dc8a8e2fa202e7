"""What authorises spending a member's points: the shopper, never a bare member number.

A spend is authorised either by a member code scanned at the till (one spend per code,
up to REDEEM_CODE_MAX_POINTS) or by a redemption the shopper confirmed in the
mini-program / H5 page (a ``redemption_token`` bound to member, store and a maximum).
Each authorisation is a row here, used at most once: a scanned code's row is written
when it is spent, a token's row when the shopper confirms and ``used_at`` when spent.
"""

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from members.models.members import Member
from members.models.tenants import Store


class SpendAuthorization(models.Model):
    class Kind(models.TextChoices):
        MEMBER_CODE = "member_code", _("Scanned member code")
        TOKEN = "token", _("Redemption confirmed by the shopper")

    kind = models.CharField(max_length=16, choices=Kind.choices, verbose_name=_("kind"))
    # SHA-256 of the code or token: the row is found by it, the secret is never stored.
    key_hash = models.CharField(max_length=64, unique=True, verbose_name=_("key hash"))
    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="spend_authorizations", verbose_name=_("member"))
    # Tokens name the store they may be spent at; a scanned code is at the till that scanned it.
    store = models.ForeignKey(Store, on_delete=models.CASCADE, null=True, blank=True, related_name="+", verbose_name=_("store"))
    max_points = models.BigIntegerField(verbose_name=_("maximum points"))
    expires_at = models.DateTimeField(db_index=True, verbose_name=_("expires at"))
    used_at = models.DateTimeField(null=True, blank=True, verbose_name=_("used at"))
    created_at = models.DateTimeField(verbose_name=_("created at"))

    class Meta:
        verbose_name = _("spend authorisation")
        verbose_name_plural = _("spend authorisations")
        constraints = [
            models.CheckConstraint(condition=Q(max_points__gt=0), name="spend_authorization_max_positive"),
            models.CheckConstraint(condition=~Q(kind="token") | Q(store__isnull=False), name="spend_token_names_store"),
        ]

    def __str__(self):
        return f"{self.get_kind_display()} for member #{self.member_id} (≤ {self.max_points})"


class MemberCodeScan(models.Model):
    """The merchant that first scanned a member code. A code shown at one till belongs to
    that till for its short life: another merchant (a photo of the screen, a code passed
    on) is refused. One row per code, written at the first scan."""

    key_hash = models.CharField(max_length=64, unique=True, verbose_name=_("key hash"))  # SHA-256 of the code
    merchant = models.ForeignKey("members.Merchant", on_delete=models.CASCADE, related_name="+", verbose_name=_("merchant"))
    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="+", verbose_name=_("member"))
    expires_at = models.DateTimeField(db_index=True, verbose_name=_("expires at"))
    created_at = models.DateTimeField(verbose_name=_("created at"))

    class Meta:
        verbose_name = _("member code scan")
        verbose_name_plural = _("member code scans")

    def __str__(self):
        return f"code of member #{self.member_id} scanned by merchant #{self.merchant_id}"
