import json

from django.core.management.base import BaseCommand, CommandError

from core.errors import ApplicationError
from members.models import Plaza
from members.services import merchant_create


class Command(BaseCommand):
    help = 'Create a merchant with one store; prints {"merchant_id", "store_code", "api_key"} (the key is shown once).'

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--plaza", required=True, help="plaza code")
        parser.add_argument("--earn-rate-bp", type=int, default=None, help="points funded per sale, basis points (default 100 = 1%%)")
        parser.add_argument("--store-code", default="")

    def handle(self, *args, name, plaza, earn_rate_bp, store_code, **options):
        found = Plaza.objects.filter(code=plaza).first()
        if found is None:
            raise CommandError(f"plaza_not_found: no plaza with code {plaza!r}")
        try:
            merchant, store, _, raw_key = merchant_create(
                name=name, plaza=found, earn_rate_bp=earn_rate_bp, store_code=store_code
            )
        except ApplicationError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from None
        self.stdout.write(json.dumps({"merchant_id": merchant.pk, "store_code": store.code, "api_key": raw_key}))
