"""Which plazas a member of the mall's staff looks after (the plaza manager role, members.roles)."""

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy

from members.models.tenants import Plaza


class StaffPlaza(models.Model):
    """A staff user bound to a plaza. A user in the plaza manager group sees only the
    members, merchants, stores and visits of the plazas bound to them (none if none)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="staff_plazas", verbose_name=gettext_lazy("user")
    )
    plaza = models.ForeignKey(Plaza, on_delete=models.CASCADE, related_name="staff", verbose_name=gettext_lazy("plaza"))
    created_at = models.DateTimeField(gettext_lazy("created at"), auto_now_add=True)

    class Meta:
        verbose_name = gettext_lazy("staff plaza")
        verbose_name_plural = gettext_lazy("staff plazas")
        constraints = [models.UniqueConstraint(fields=["user", "plaza"], name="staff_plaza_once_per_user")]

    def __str__(self):
        return f"{self.user} @ {self.plaza}"
