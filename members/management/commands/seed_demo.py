"""Build a demo mall: plazas, merchants with stores, members with identities and history.

Safe to run twice: everything is found before it is created, and ledger writes use
fixed idempotency keys, so a second run changes nothing but the demo API key.
"""

import random

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from members import auth, ledger, services
from members.models import Identity, Member, Merchant, MerchantApiKey, Plaza, Store

PLAZAS = [("sh-wanda", "上海五角场万达广场", "上海"), ("bj-wanda", "北京CBD万达广场", "北京")]
MERCHANTS = [
    # name, plaza, store code, earn rate bp
    ("星巴克 Starbucks", "sh-wanda", "sh-starbucks", 100),
    ("优衣库 UNIQLO", "sh-wanda", "sh-uniqlo", 150),
    ("海底捞 Haidilao", "sh-wanda", "sh-haidilao", 200),
    ("万达影城 Wanda Cinema", "sh-wanda", "sh-cinema", 100),
    ("喜茶 HEYTEA", "bj-wanda", "bj-heytea", 100),
    ("Apple", "bj-wanda", "bj-apple", 50),
]
MEMBERS = 40
DEMO_STAFF = ("admin", "admin")


class Command(BaseCommand):
    help = "Seed a demo mall (plazas, merchants, stores, members, points history). Safe to run twice."

    def add_arguments(self, parser):
        parser.add_argument("--base-url", default="http://127.0.0.1:8000", help="where the demo is served, for the printed links")

    def handle(self, *args, base_url, **options):
        base_url = base_url.rstrip("/")
        if not settings.DEBUG:
            raise CommandError("seed_demo creates a demo staff login; it runs only with DEBUG on")
        rng = random.Random(20261123)
        with transaction.atomic():
            plazas = {code: self._plaza(code, name, city) for code, name, city in PLAZAS}
            stores = [self._store(name, plazas[plaza], code, rate) for name, plaza, code, rate in MERCHANTS]
            members = [self._member(i, plazas, rng) for i in range(MEMBERS)]
        self._history(members, stores, rng)
        api_key = self._demo_api_key(stores[0].merchant)
        self._staff()
        self.stdout.write(self.style.SUCCESS(f"Demo mall ready: {len(plazas)} plazas, {len(stores)} stores, {len(members)} members"))
        self.stdout.write(f"  Admin:            {base_url}/admin/  (login {DEMO_STAFF[0]} / {DEMO_STAFF[1]})")
        self.stdout.write(f"  Merchant API:     {base_url}/api/v1/  (docs at {base_url}/api/docs/)")
        self.stdout.write(f"  Shopper pages:    {base_url}/m/login/demo/  (pick a demo shopper)")
        self.stdout.write(f"  Pay at a shop:    {base_url}/m/pay/{stores[0].code}/  (its payment QR; the sandbox cashier pays)")
        self.stdout.write(f"  Chat simulator:   {base_url}/wechat/simulator/  (staff; a shopper scanning and chatting)")
        self.stdout.write(f"  Demo POS key:     {api_key}  (merchant {stores[0].merchant.name}, store {stores[0].code})")
        self.stdout.write(f"  A demo member:    {members[0].member_no}")

    def _plaza(self, code, name, city):
        return Plaza.objects.filter(code=code).first() or services.plaza_create(code=code, name=name, city=city)

    def _store(self, name, plaza, code, rate):
        store = Store.objects.select_related("merchant").filter(code=code).first()
        if store is None:
            _, store, _, _ = services.merchant_create(name=name, plaza=plaza, earn_rate_bp=rate, store_code=code)
        return store

    def _member(self, i, plazas, rng):
        openid = f"demo-openid-{i:03d}"
        identity = Identity.objects.select_related("member").filter(channel=Identity.Channel.WECHAT_OPENID, external_id=openid).first()
        if identity:
            return identity.member
        plaza = plazas[PLAZAS[i % len(PLAZAS)][0]]
        member = services.member_create(
            join_channel=Member.Channel.WECHAT, plaza=plaza, phone=f"+86139{i:08d}", nickname=f"Demo shopper {i}"
        )
        Identity.objects.create(member=member, channel=Identity.Channel.WECHAT_OPENID, external_id=openid)
        return member

    def _history(self, members, stores, rng):
        """Purchases, check-in gifts, a few redemptions and one refund, all idempotent."""
        for i, member in enumerate(members):
            ledger.points_grant(member=member, points=100, reason="welcome gift", idempotency_key=f"seed:welcome:{member.pk}")
            for n in range(rng.randint(1, 6)):
                store = rng.choice(stores)
                earn = ledger.points_earn(
                    member=member, store=store, amount_fen=rng.randint(1_000, 200_000),
                    idempotency_key=f"seed:earn:{member.pk}:{n}", reference=f"DEMO-{member.pk}-{n}",
                )
                if i % 7 == 0 and n == 0 and earn.amount_fen:
                    ledger.points_reverse(original=earn, amount_fen=earn.amount_fen // 2, idempotency_key=f"seed:refund:{earn.pk}")
            if i % 3 == 0:
                balance = ledger.member_points_balance(member=member)
                if balance >= 50:
                    ledger.points_redeem(member=member, store=stores[i % len(stores)], points=50, idempotency_key=f"seed:redeem:{member.pk}")

    def _demo_api_key(self, merchant: Merchant) -> str:
        # Keys are shown once; on each run the previous demo key is revoked and a new one shown.
        for old in MerchantApiKey.objects.filter(merchant=merchant, name="demo", revoked_at__isnull=True):
            auth.merchant_api_key_revoke(key=old)
        _, raw_key = auth.merchant_api_key_create(merchant=merchant, name="demo")
        return raw_key

    def _staff(self):
        User = get_user_model()
        username, password = DEMO_STAFF
        user = User.objects.filter(username=username).first() or User(username=username)
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
