"""Lifecycle segments: each member's segment from the last nightly run, the runs
themselves (what makes the job resumable), and the sizes kept for the dashboards."""

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from members.models.members import Member


class Segment(models.TextChoices):
    # In order of precedence: a member is in the first segment whose rule holds.
    LAPSED = "lapsed", _("Lapsed")
    LOYAL = "loyal", _("Loyal")
    OCCASIONAL = "occasional", _("Occasional")
    ONE_TIME = "one_time", _("One-time")
    POTENTIAL = "potential", _("Potential")


class SegmentRun(models.Model):
    """One nightly run of members.segments.segments_tag: one per local day.

    A run walks the members in id order, phase after phase; ``last_member_id`` is the
    high-water mark of the phase in progress, moved in the same transaction as the
    batch it covers, so a run killed half-way goes on from there and never redoes a
    committed batch.
    """

    class Phase(models.TextChoices):
        CLASSIFY = "classify", _("Segments")
        HIGH_VALUE = "high_value", _("High-value tag")
        DONE = "done", _("Done")

    day = models.DateField(unique=True, verbose_name=_("day"))
    # The instant every rule of the run is measured from; a resumed run keeps it.
    as_of = models.DateTimeField(verbose_name=_("as of"))
    phase = models.CharField(max_length=16, choices=Phase.choices, default=Phase.CLASSIFY, verbose_name=_("phase"))
    last_member_id = models.BigIntegerField(default=0, verbose_name=_("last member id"))
    # 12-month spend, in fen, from which a member is high-value; fixed once per run,
    # when the segments are all written. Null until then, or when nobody spent.
    high_value_threshold_fen = models.BigIntegerField(null=True, blank=True, verbose_name=_("high-value threshold (yuan)"))
    started_at = models.DateTimeField(verbose_name=_("started at"))
    finished_at = models.DateTimeField(null=True, blank=True, verbose_name=_("finished at"))

    class Meta:
        verbose_name = _("segment run")
        verbose_name_plural = _("segment runs")
        ordering = ["-day"]

    def __str__(self):
        return f"segments {self.day} ({self.phase})"


class MemberSegment(models.Model):
    """A member's lifecycle segment and high-value tag, as of the run that wrote it.

    Active members only: merged and banned members have no row (a run deletes it).
    """

    member = models.OneToOneField(Member, on_delete=models.CASCADE, related_name="segment", verbose_name=_("member"))
    segment = models.CharField(max_length=16, choices=Segment.choices, verbose_name=_("segment"))
    high_value = models.BooleanField(default=False, verbose_name=_("high value"))
    # Purchases and payments over the 365 days before the run, in fen (refunds not deducted).
    spend_12m_fen = models.BigIntegerField(default=0, verbose_name=_("12-month spend (yuan)"))
    run = models.ForeignKey(SegmentRun, on_delete=models.PROTECT, related_name="+", verbose_name=_("run"))
    computed_at = models.DateTimeField(verbose_name=_("computed at"))

    class Meta:
        verbose_name = _("member segment")
        verbose_name_plural = _("member segments")
        indexes = [
            # The run's percentile query (top N % by spend) reads this index, not the table.
            models.Index(fields=["spend_12m_fen"], name="member_segment_spend"),
            models.Index(fields=["segment", "high_value"], name="member_segment_segment"),
        ]

    def __str__(self):
        return f"{self.member_id}: {self.segment}"


class SegmentSnapshot(models.Model):
    """How many members each segment held on a day, for the dashboards' charts."""

    day = models.DateField(verbose_name=_("day"))
    segment = models.CharField(max_length=16, choices=Segment.choices, verbose_name=_("segment"))
    members = models.PositiveIntegerField(verbose_name=_("members"))
    high_value_members = models.PositiveIntegerField(verbose_name=_("high-value members"))

    class Meta:
        verbose_name = _("segment snapshot")
        verbose_name_plural = _("segment snapshots")
        ordering = ["-day", "segment"]
        constraints = [
            models.UniqueConstraint(fields=["day", "segment"], name="segment_snapshot_one_per_day"),
            models.CheckConstraint(condition=Q(high_value_members__lte=models.F("members")), name="segment_snapshot_high_value_within"),
        ]

    def __str__(self):
        return f"{self.day} {self.segment}: {self.members}"
