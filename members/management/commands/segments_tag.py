"""Tag every member with a lifecycle segment now: what the nightly task does, by hand.

Safe to run twice, and to interrupt: run again the same day, it goes on where it stopped;
once the day's run is done, it does nothing.
"""

from django.core.management.base import BaseCommand, CommandError

from core.progress import Bars
from members import segments
from members.models import Segment, SegmentRun

PHASES = dict(SegmentRun.Phase.choices)


class Command(BaseCommand):
    help = "Put every member in a lifecycle segment and tag the high-value ones (the nightly job). Safe to run twice."

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=5000, help="members per batch (default 5000)")

    def handle(self, *args, batch_size, **options):
        if batch_size < 1:
            raise CommandError("--batch-size must be 1 or more")
        bar = Bars(self.stdout, phases=PHASES)
        try:
            summary = segments.segments_tag(batch_size=batch_size, progress=bar)
        finally:
            bar.close()
        if not summary.ran:
            self.stdout.write(f"Segments of {summary.day} were already done; nothing to do.")
        threshold = summary.high_value_threshold_fen
        self.stdout.write(
            f"Segments of {summary.day}: {summary.members} members"
            + (f"; high-value from {threshold} fen of 12-month spend" if threshold is not None else "; nobody spent: no high-value")
        )
        for segment in Segment:
            size = summary.sizes.get(segment.value)
            if size is not None:
                self.stdout.write(f"  {segment.label:<12} {size.members:>10}  ({size.high_value_members} high-value)")
