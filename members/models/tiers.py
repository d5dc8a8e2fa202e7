"""Tier history and the nightly tier review's runs (members.tiers)."""

from django.db import models
from django.db.models import Q

from members.models.members import Member, Tier


class TierChange(models.Model):
    """One move of a member between tiers. Append-only: history, never edited."""

    class Reason(models.TextChoices):
        UPGRADE = "upgrade", "Upgrade (spend reached the tier)"
        DOWNGRADE = "downgrade", "Downgrade (spend below the tier past the grace period)"
        STAFF = "staff", "Set by staff"

    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="tier_changes")
    # Null: the member had no tier yet.
    from_tier = models.ForeignKey(Tier, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    to_tier = models.ForeignKey(Tier, on_delete=models.PROTECT, related_name="+")
    reason = models.CharField(max_length=16, choices=Reason.choices)
    # The member's qualifying 12-month spend when the change was made, in fen.
    spend_fen = models.BigIntegerField()
    created_at = models.DateTimeField()

    class Meta:
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

    day = models.DateField(unique=True)
    # The instant the grace period is measured from; a resumed run keeps it.
    as_of = models.DateTimeField()
    last_member_id = models.BigIntegerField(default=0)
    upgrades = models.PositiveIntegerField(default=0)
    downgrades = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-day"]

    def __str__(self):
        return f"tiers {self.day}"
