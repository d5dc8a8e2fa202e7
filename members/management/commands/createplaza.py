from django.core.management.base import BaseCommand, CommandError

from core.errors import ApplicationError
from members.services import plaza_create


class Command(BaseCommand):
    help = "Create a plaza: createplaza CODE NAME"

    def add_arguments(self, parser):
        parser.add_argument("code")
        parser.add_argument("name")
        parser.add_argument("--city", default="")
        parser.add_argument("--address", default="")

    def handle(self, *args, code, name, city, address, **options):
        try:
            plaza = plaza_create(code=code, name=name, city=city, address=address)
        except ApplicationError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from None
        self.stdout.write(f"created plaza {plaza.code}: {plaza.name}")
