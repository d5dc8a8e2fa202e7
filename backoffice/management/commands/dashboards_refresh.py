"""Refresh the dashboards' summary tables now: what the hourly task does, by hand, or a
backfill of every day since the first (``--all``). Safe to run twice."""

from django.core.management.base import BaseCommand, CommandError

from backoffice.dashboards import refresh
from core.errors import ApplicationError
from core.progress import Bars

PHASES = {"days": "days", "totals": "totals"}


class Command(BaseCommand):
    help = "Rewrite the dashboards' figures of the last N local days (default 2) and their totals. Safe to run twice."

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=refresh.RECENT_DAYS, help="local days up to today (default 2)")
        parser.add_argument("--all", action="store_true", help="every day since the first member or points movement")

    def handle(self, *args, days, all, **options):
        first = None
        if all:
            first = refresh.first_day_with_data()
            if first is None:
                self.stdout.write("Nothing happened yet; writing the totals only.")
        bar = Bars(self.stdout, label="dashboards", phases=PHASES)
        try:
            summary = refresh.dashboards_refresh(days=days, first=first, progress=bar)
        except ApplicationError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from exc
        finally:
            bar.close()
        done = summary.refresh
        self.stdout.write(
            f"Dashboards: {summary.days} days ({done.first_day} to {done.last_day}), {summary.rows} rows; "
            f"members hold {done.points_spendable} points (+{done.points_pending} pending), "
            f"liability {done.liability_fen} fen."
        )
