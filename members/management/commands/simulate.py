"""Drive seed_demo's shoppers through the real endpoints for a few rounds ("days")."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from core.progress import Bars
from members.simulation import Simulation, SimulationError


class Command(BaseCommand):
    help = (
        "Drive demo shoppers through the real endpoints in-process: WeChat check-in scans and chats to /wechat/ "
        "(signed as WeChat signs), POS purchases and redemptions through the merchant API (/api/v1/) with the "
        "member code the shopper's app shows, payments through the H5 pay page and the sandbox cashier, and the "
        "nightly jobs between days. There is no fake clock: each simulated day is a round of real traffic that "
        "happens now (a nightly job already run today does nothing again). At the end it checks the ledger's "
        "invariants and that today's merchant daily reports equal the ledger. Needs seed_demo's shoppers; DEBUG only."
    )

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=1, help="rounds of traffic, with the nightly jobs after each")
        parser.add_argument("--shoppers", type=int, default=20, help="demo shoppers taking part")
        parser.add_argument("--seed", type=int, default=1, help="random seed of what the shoppers do")

    def handle(self, *args, days, shoppers, seed, **options):
        if not settings.DEBUG:
            raise CommandError("simulate sends demo traffic; it runs only with DEBUG on")
        if days < 1 or shoppers < 1:
            raise CommandError("--days and --shoppers must be 1 or more")
        try:
            simulation = Simulation(shoppers=shoppers, seed=seed)
        except SimulationError as exc:
            raise CommandError(str(exc)) from None
        try:
            for n in range(1, days + 1):
                bars = Bars(self.stdout, f"day {n}/{days}")
                try:
                    simulation.day(progress=bars)
                finally:
                    bars.close()
                simulation.night()
        finally:
            simulation.close()
        report = simulation.report
        for what, count in sorted(report.requests.items()):
            self.stdout.write(f"  {what}: {count}")
        violations = simulation.check()
        if violations:
            raise CommandError("the books do not add up:\n  " + "\n  ".join(violations))
        self.stdout.write(self.style.SUCCESS(
            f"Simulated {report.days} day(s) of {len(simulation.shoppers)} shoppers: ledger invariants hold and "
            "today's daily reports equal the ledger."
        ))
