"""Review every member's tier now: what the nightly task does, by hand.

Safe to run twice, and to interrupt: run again the same day, it goes on where it stopped;
once the day's run is done, it does nothing.
"""

from django.core.management.base import BaseCommand, CommandError

from core.progress import Bars
from members import tiers


class Command(BaseCommand):
    help = (
        "Recompute members' 12-month qualifying spend, move them up, and down after the grace period "
        "(the nightly job). Safe to run twice."
    )

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=5000, help="members per batch (default 5000)")

    def handle(self, *args, batch_size, **options):
        if batch_size < 1:
            raise CommandError("--batch-size must be 1 or more")
        bar = Bars(self.stdout, "members reviewed")
        try:
            summary = tiers.tiers_review(batch_size=batch_size, progress=bar)
        finally:
            bar.close()
        if not summary.ran:
            self.stdout.write(f"Tiers of {summary.day} were already reviewed; nothing to do.")
        self.stdout.write(f"Tiers of {summary.day}: {summary.upgrades} upgrades, {summary.downgrades} downgrades.")
