"""Lifecycle segments: each member's segment from the last nightly run, the runs
themselves (what makes the job resumable), and the sizes kept for the dashboards."""

from django.db import models
from django.db.models import Q

from members.models.members import Member


class Segment(models.TextChoices):
    # In order of precedence: a member is in the first segment whose rule holds.
    LAPSED = "lapsed", "Lapsed"
    LOYAL = "loyal", "Loyal"
    OCCASIONAL = "occasional", "Occasional"
    ONE_TIME = "one_time", "One-time"
    POTENTIAL = "potential", "Potential"


class SegmentRun(models.Model):
    """One nightly run of members.segments.segments_tag: one per local day.

    A run walks the members in id order, phase after phase; ``last_member_id`` is the
    high-water mark of the phase in progress, moved in the same transaction as the
    batch it covers, so a run killed half-way goes on from there and never redoes a
    committed batch.
    """

    class Phase(models.TextChoices):
        CLASSIFY = "classify", "Segments"
        HIGH_VALUE = "high_value", "High-value tag"
        DONE = "done", "Done"

    day = models.DateField(unique=True)
    # The instant every rule of the run is measured from; a resumed run keeps it.
    as_of = models.DateTimeField()
    phase = models.CharField(max_length=16, choices=Phase.choices, default=Phase.CLASSIFY)
    last_member_id = models.BigIntegerField(default=0)
    # 12-month spend, in fen, from which a member is high-value; fixed once per run,
    # when the segments are all written. Null until then, or when nobody spent.
    high_value_threshold_fen = models.BigIntegerField(null=True, blank=True)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-day"]

    def __str__(self):
        return f"segments {self.day} ({self.phase})"


class MemberSegment(models.Model):
    """A member's lifecycle segment and high-value tag, as of the run that wrote it.

    Active members only: merged and banned members have no row (a run deletes it).
    """

    member = models.OneToOneField(Member, on_delete=models.CASCADE, related_name="segment")
    segment = models.CharField(max_length=16, choices=Segment.choices)
    high_value = models.BooleanField(default=False)
    # Purchases and payments over the 365 days before the run, in fen (refunds not deducted).
    spend_12m_fen = models.BigIntegerField(default=0)
    run = models.ForeignKey(SegmentRun, on_delete=models.PROTECT, related_name="+")
    computed_at = models.DateTimeField()

    class Meta:
        indexes = [
            # The run's percentile query (top N % by spend) reads this index, not the table.
            models.Index(fields=["spend_12m_fen"], name="member_segment_spend"),
            models.Index(fields=["segment", "high_value"], name="member_segment_segment"),
        ]

    def __str__(self):
        return f"{self.member_id}: {self.segment}"


class SegmentSnapshot(models.Model):
    """How many members each segment held on a day, for the dashboards' charts."""

    day = models.DateField()
    segment = models.CharField(max_length=16, choices=Segment.choices)
    members = models.PositiveIntegerField()
    high_value_members = models.PositiveIntegerField()

    class Meta:
        ordering = ["-day", "segment"]
        constraints = [
            models.UniqueConstraint(fields=["day", "segment"], name="segment_snapshot_one_per_day"),
            models.CheckConstraint(condition=Q(high_value_members__lte=models.F("members")), name="segment_snapshot_high_value_within"),
        ]

    def __str__(self):
        return f"{self.day} {self.segment}: {self.members}"
