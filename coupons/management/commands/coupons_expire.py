"""Mark every issued coupon past its validity expired now: what the nightly task does, by hand.

Safe to run twice, and to interrupt: each batch is one transaction, and a coupon leaves
"issued" only once.
"""

from django.core.management.base import BaseCommand, CommandError

from core.progress import Bars
from coupons import services


class Command(BaseCommand):
    help = "Expire every issued coupon past its validity (the nightly job). Safe to run twice."

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=services.EXPIRE_BATCH, help="coupons per transaction")

    def handle(self, *args, batch_size, **options):
        if batch_size < 1:
            raise CommandError("--batch-size must be 1 or more")
        bar = Bars(self.stdout, "coupons expired")
        try:
            expired = services.coupons_expire_due(batch_size=batch_size, progress=bar)
        finally:
            bar.close()
        self.stdout.write(f"{expired} coupons expired." if expired else "No coupon is past its validity; nothing to do.")
