"""Run the campaigns now: what the nightly task does, by hand, with a progress bar.

Every active campaign within its window (ends those past their end), or only
``--campaign ID``. Safe to run twice, and to interrupt: a run targets nobody twice and
issues and sends nothing twice; the next run finishes what one left.
"""

from dataclasses import asdict

from django.core.management.base import BaseCommand, CommandError

from core.errors import ApplicationError
from core.progress import Bars
from coupons import campaigns
from coupons.models import Campaign

PHASES = {"target": "targeting", "deliver": "coupons and pushes"}


class Command(BaseCommand):
    help = "Run the active campaigns within their window now (the nightly job), or one. Safe to run twice."

    def add_arguments(self, parser):
        parser.add_argument("--campaign", type=int, help="only this campaign (its id)")
        parser.add_argument("--batch-size", type=int, default=1000, help="members per batch (default 1000)")

    def handle(self, *args, campaign, batch_size, **options):
        if batch_size < 1:
            raise CommandError("--batch-size must be 1 or more")
        if campaign is not None:
            chosen = list(Campaign.objects.filter(pk=campaign))
            if not chosen:
                raise CommandError(f"no campaign {campaign}")
        else:
            campaigns.campaigns_end_due()
            chosen = list(campaigns.campaigns_due())
            if not chosen:
                self.stdout.write("No campaign is running now; nothing to do.")
                return
        failed = False
        for each in chosen:
            bars = Bars(self.stdout, each.name, PHASES)
            try:
                summary = campaigns.campaign_run(campaign=each, batch_size=batch_size, progress=bars)
            except ApplicationError as exc:
                failed = True
                self.stderr.write(f"{each.name} (#{each.pk}): not run: {exc.code}: {exc.message}")
                continue
            finally:
                bars.close()
            figures = asdict(summary)
            self.stdout.write(
                f"{each.name} (#{each.pk}): {figures['targeted']} targeted ({figures['holdout']} held out), "
                f"{figures['issued']} coupons and pushes, {figures['refused']} refused"
            )
        if failed and campaign is not None:
            raise CommandError("the campaign was not run")
