"""Remind members of points expiring within 30 days: one push per member and expiry day.

The nightly schedule runs the same service (members.tasks.expiry_reminders_send); this
command is for a run by hand, with a progress bar. Safe to run twice or after a kill.
"""

from django.core.management.base import BaseCommand

from core.progress import Progress
from members import reminders


class Command(BaseCommand):
    help = "Write reminders for points expiring within --within-days (30); idempotent and resumable."

    def add_arguments(self, parser):
        parser.add_argument("--within-days", type=int, default=reminders.REMINDER_WINDOW_DAYS)
        parser.add_argument("--batch-size", type=int, default=2000)

    def handle(self, *args, within_days, batch_size, **options):
        progress = Progress(self.stdout, "members", 0)
        run = reminders.expiry_reminders_send(
            within_days=within_days, batch_size=batch_size, progress=lambda done, total: progress.update(done, total)
        )
        progress.end_line()
        self.stdout.write(f"{run.members} members with points expiring within {within_days} days; "
                          f"{run.written} new reminders (the others were written by an earlier run)")
