"""Segments, read-only: the sizes kept day by day for the dashboards, and the runs of
the nightly job (members.segments) that wrote them. Both are written by the job alone."""

from django.contrib import admin

from core.admin_fields import UnitsAdminMixin
from members.admin.base import ReadOnlyMixin
from members.models import SegmentRun, SegmentSnapshot


@admin.register(SegmentSnapshot)
class SegmentSnapshotAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["day", "segment", "members", "high_value_members"]
    list_filter = ["segment"]
    date_hierarchy = "day"
    ordering = ["-day", "segment"]
    fields = ["day", "segment", "members", "high_value_members"]


@admin.register(SegmentRun)
class SegmentRunAdmin(UnitsAdminMixin, ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["day", "phase", "as_of", "high_value_threshold_fen", "started_at", "finished_at"]
    list_filter = ["phase"]
    ordering = ["-day"]
    fields = ["day", "as_of", "phase", "last_member_id", "high_value_threshold_fen", "started_at", "finished_at"]
