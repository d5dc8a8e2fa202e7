import json

from django.core.management.base import BaseCommand, CommandError

from bots.official_account import MENU, menu_install
from core.errors import PlatformError
from core.platforms import wechat_configured


class Command(BaseCommand):
    help = "Install the official account's menu (WeChat menu/create). Its buttons run the bot's commands."

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="print the menu instead of installing it")

    def handle(self, *args, dry_run, **options):
        if dry_run:
            self.stdout.write(json.dumps(MENU, ensure_ascii=False, indent=2))
            return
        if not wechat_configured():
            raise CommandError("WECHAT_APP_ID and WECHAT_APP_SECRET must be set to install the menu")
        try:
            menu_install()
        except PlatformError as exc:
            raise CommandError(f"WeChat refused the menu: {exc.message}") from None
        self.stdout.write(self.style.SUCCESS("Menu installed."))
