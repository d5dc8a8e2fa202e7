"""Expire every points lot past its expiry now: what the nightly task does, by hand.

Safe to run twice, and to interrupt: each batch is one transaction under the per-lot
keys, so a second run expires only what the first did not reach.
"""

from django.core.management.base import BaseCommand, CommandError

from core.progress import Bars
from members import ledger


class Command(BaseCommand):
    help = "Expire every points lot past its expiry (the nightly job). Safe to run twice."

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=500, help="lots per transaction (default 500)")

    def handle(self, *args, batch_size, **options):
        if batch_size < 1:
            raise CommandError("--batch-size must be 1 or more")
        bar = Bars(self.stdout, "lots expired")
        try:
            expired = ledger.points_expire_due(batch_size=batch_size, progress=bar)
        finally:
            bar.close()
        self.stdout.write(f"{expired} lots expired." if expired else "No lot is due; nothing to do.")
