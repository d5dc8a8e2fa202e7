"""Who may use the tenants' admin (/merchant/): a login bound to one merchant."""

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy


class MerchantStaff(models.Model):
    """A tenant's login for the merchant back office, made by mall staff.

    Its user is never mall staff (is_staff and is_superuser stay False, the service and
    the site both check): the two admins have disjoint populations, so no permission
    granted in one can ever open the other.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="merchant_staff", verbose_name=gettext_lazy("login"),
    )
    merchant = models.ForeignKey(
        "members.Merchant", on_delete=models.PROTECT, related_name="staff", verbose_name=gettext_lazy("merchant"),
    )
    created_at = models.DateTimeField(gettext_lazy("created at"), auto_now_add=True)

    class Meta:
        verbose_name = gettext_lazy("merchant back-office login")
        verbose_name_plural = gettext_lazy("merchant back-office logins")
        ordering = ["merchant_id", "user_id"]

    def __str__(self):
        return f"{self.user} → {self.merchant}"
