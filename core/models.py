"""Shared tables that belong to no app: the counters behind the rate limits, the staff audit."""

from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.utils.translation import gettext_lazy


class RateCounter(models.Model):
    """One counter of one fixed window (core.ratelimit), when there is no Redis.

    Written only by core.ratelimit's upsert, one atomic statement per hit; a window's
    number is part of its key, so a row never outlives its meaning and the purge is
    only housekeeping.
    """

    # The counter's name and window (e.g. "throttle:merchant-key:ab12cd@60:29437012"),
    # or a digest of it when longer than 200 characters.
    key = models.CharField(gettext_lazy("key"), max_length=200, primary_key=True)
    # Hits in the window; may dip below the number of admitted attempts while a
    # reservation is being given back, never below zero for long.
    count = models.BigIntegerField(gettext_lazy("count"))
    # The end of the window: rows past it are dead and deleted by counters_purge().
    expires_at = models.DateTimeField(gettext_lazy("expires at"), db_index=True)

    class Meta:
        verbose_name = gettext_lazy("rate-limit counter")
        verbose_name_plural = gettext_lazy("rate-limit counters")

    def __str__(self):
        return f"{self.key} = {self.count}"


class AuditEntryQuerySet(models.QuerySet):
    """Audit entries are written once (core.audit.audit_record) and never changed:
    a bulk update or delete through the ORM is refused as well."""

    def update(self, **kwargs):
        raise AuditEntry.Immutable("audit entries are never updated")

    def delete(self):
        raise AuditEntry.Immutable("audit entries are never deleted")


class AuditEntry(models.Model):
    """One change a member of staff made: who, when, what (field: [old, new]) and why.

    Append-only: written by core.audit, read in the admin, never edited or deleted (the
    model, its queryset and, on PostgreSQL, a trigger refuse it). The one update allowed
    is Django's ``SET NULL`` of ``actor`` when a user is deleted; ``actor_username`` keeps
    the name.
    """

    class Action(models.TextChoices):
        ADD = "add", gettext_lazy("Added")
        CHANGE = "change", gettext_lazy("Changed")
        DELETE = "delete", gettext_lazy("Deleted")
        ACTION = "action", gettext_lazy("Admin action")
        ADJUST = "adjust", gettext_lazy("Points adjusted")

    class Immutable(Exception):
        pass

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
        verbose_name=gettext_lazy("staff user"),
    )
    # A copy: the entry still says who after the user is renamed or deleted.
    actor_username = models.CharField(gettext_lazy("staff username"), max_length=150, blank=True)
    at = models.DateTimeField(gettext_lazy("at"), db_index=True)
    action = models.CharField(gettext_lazy("action"), max_length=16, choices=Action.choices)
    # PROTECT: an entry outlives nothing it describes silently; a stale content type with
    # entries is kept.
    content_type = models.ForeignKey(ContentType, on_delete=models.PROTECT, related_name="+", verbose_name=gettext_lazy("type"))
    object_id = models.CharField(gettext_lazy("object id"), max_length=64)
    object_repr = models.CharField(gettext_lazy("object"), max_length=200)
    # {field name: [old, new]} as readable JSON values (a related object's name, a choice's
    # label, money in fen as stored); an admin action: {"action": [null, its name]}.
    changes = models.JSONField(gettext_lazy("changes"), default=dict, blank=True)
    reason = models.TextField(gettext_lazy("reason"), blank=True)
    # core.logs' request id: joins the entry to the request's log lines.
    request_id = models.CharField(gettext_lazy("request id"), max_length=64, blank=True)

    objects = AuditEntryQuerySet.as_manager()

    class Meta:
        verbose_name = gettext_lazy("audit entry")
        verbose_name_plural = gettext_lazy("audit entries")
        indexes = [
            models.Index(fields=["content_type", "object_id", "-at"], name="core_audit_object_idx"),
            models.Index(fields=["actor", "-at"], name="core_audit_actor_idx"),
        ]

    def __str__(self):
        return f"{self.at:%Y-%m-%d %H:%M} {self.actor_username or '-'} {self.action} {self.object_repr}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise self.Immutable("audit entries are never updated")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise self.Immutable("audit entries are never deleted")
