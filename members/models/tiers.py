"""Tier history and the nightly tier review's runs (members.tiers)."""

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from members.models.members import Member, Tier


class TierChange(models.Model):
    """One move of a member between tiers. Append-only: history, never edited."""

    class Reason(models.TextChoices):
        UPGRADE = "upgrade", _("Upgrade (spend reached the tier)")
        DOWNGRADE = "downgrade", _("Downgrade (spend below the tier past the grace period)")
        STAFF = "staff", _("Set by staff")

    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="tier_changes", verbose_name=_("member"))
    # Null: the member had no tier yet.
    from_tier = models.ForeignKey(Tier, on_delete=models.PROTECT, null=True, blank=True, related_name="+", verbose_name=_("from tier"))
    to_tier = models.ForeignKey(Tier, on_delete=models.PROTECT, related_name="+", verbose_name=_("to tier"))
    reason = models.CharField(max_length=16, choices=Reason.choices, verbose_name=_("reason"))
    # The member's qualifying 12-month spend when the change was made, in fen.
    spend_fen = models.BigIntegerField(verbose_name=_("qualifying spend (yuan)"))
    created_at = models.DateTimeField(verbose_name=_("created at"))

    class Meta:
        verbose_name = _("tier change")
        verbose_name_plural = _("tier changes")
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["member", "created_at"], name="tier_change_member")]
        constraints = [models.CheckConstraint(condition=Q(spend_fen__gte=0), name="tier_change_spend_not_negative")]

    def __str__(self):
        return f"{self.member_id}: {self.from_tier_id} → {self.to_tier_id} ({self.reason})"


class TierRun(models.Model):
    """One nightly run of members.tiers.tiers_review: one per local day.

    ``last_member_id`` is the high-water mark, moved in the same transaction as the
    batch it covers, so a run killed half-way goes on from there and never redoes a
    committed batch; once ``finished_at`` is set, the day's run does nothing.
    """

    day = models.DateField(unique=True, verbose_name=_("day"))
    # The instant the grace period is measured from; a resumed run keeps it.
    as_of = models.DateTimeField(verbose_name=_("as of"))
    last_member_id = models.BigIntegerField(default=0, verbose_name=_("last member id"))
    upgrades = models.PositiveIntegerField(default=0, verbose_name=_("upgrades"))
    downgrades = models.PositiveIntegerField(default=0, verbose_name=_("downgrades"))
    started_at = models.DateTimeField(verbose_name=_("started at"))
    finished_at = models.DateTimeField(null=True, blank=True, verbose_name=_("finished at"))

    class Meta:
        verbose_name = _("tier review run")
        verbose_name_plural = _("tier review runs")
        ordering = ["-day"]

    def __str__(self):
        return f"tiers {self.day}"
