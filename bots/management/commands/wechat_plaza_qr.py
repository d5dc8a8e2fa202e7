from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from bots.official_account import plaza_qr_create
from core.errors import ApplicationError
from core.platforms import wechat_configured
from members.checkin import plaza_for_checkin


class Command(BaseCommand):
    help = (
        "Create a plaza's permanent check-in QR code on the official account (qrcode/create, "
        "QR_LIMIT_STR_SCENE, scene checkin:<code>) and write its image."
    )

    def add_arguments(self, parser):
        parser.add_argument("code", help="the plaza's code")
        parser.add_argument("--out", help="image file to write (.png or .svg); default checkin-<code>.png")

    def handle(self, *args, code, out, **options):
        if not wechat_configured():
            raise CommandError("WECHAT_APP_ID and WECHAT_APP_SECRET must be set to create WeChat QR codes")
        try:
            plaza = plaza_for_checkin(code=code)
            qr = plaza_qr_create(plaza=plaza)
        except ApplicationError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from None
        if not qr.url:
            raise CommandError("WeChat answered without the QR code's url")
        path = Path(out or f"checkin-{plaza.code}.png")
        if path.suffix.lower() == ".svg":
            path.write_text(qr.svg())
        else:
            path.write_bytes(qr.png())
        self.stdout.write(f"scene:  {qr.scene}\nticket: {qr.ticket}\nurl:    {qr.url}")
        self.stdout.write(self.style.SUCCESS(f"Wrote {path}"))
