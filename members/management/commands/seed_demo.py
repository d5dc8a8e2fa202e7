"""Build a demo mall: plazas, merchants with stores, members with identities and history,
coupons, and a wake-up campaign for the members who stopped coming.

Safe to run twice: everything is found before it is created, and ledger writes use
fixed idempotency keys, so a second run changes nothing but the demo API key.

The history is in the past (sales dated up to a year back, through the ledger's ``at``),
so the segment tagging at the end finds every lifecycle segment: lapsed regulars for the
draft wake-up campaign, loyal, occasional, one-time and potential shoppers.
"""

import random
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from coupons.models import Campaign
from members import auth, ledger, segments, services
from members.management.commands import _seed_coupons as seed_coupons
from members.management.commands import _seed_shoppers as seed_shoppers
from members.models import Merchant, MerchantApiKey, Plaza, Segment, Store

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
# Shoppers with a random history over the last year, then the lifecycle personas.
MEMBERS = 40
ALL_MEMBERS = MEMBERS + seed_shoppers.PERSONA_MEMBERS
DEMO_STAFF = ("admin", "admin")


class Command(BaseCommand):
    help = (
        "Seed a demo mall (plazas, merchants, stores, members, points history, coupons, a wake-up campaign). "
        "Safe to run twice."
    )

    def add_arguments(self, parser):
        parser.add_argument("--base-url", default="http://127.0.0.1:8000", help="where the demo is served, for the printed links")

    def handle(self, *args, base_url, **options):
        base_url = base_url.rstrip("/")
        if not settings.DEBUG:
            raise CommandError("seed_demo creates a demo staff login; it runs only with DEBUG on")
        now = timezone.now()
        rng, dates = random.Random(20261123), random.Random(20261124)
        with transaction.atomic():
            plazas = [self._plaza(code, name, city) for code, name, city in PLAZAS]
            by_code = {plaza.code: plaza for plaza in plazas}
            stores = [self._store(name, by_code[plaza], code, rate) for name, plaza, code, rate in MERCHANTS]
        members = [
            seed_shoppers.shopper_ensure(i=i, plaza=plazas[i % len(plazas)], joined=now - timedelta(days=dates.randint(30, 360)))
            for i in range(MEMBERS)
        ]
        self._history(members, stores, rng, dates, now)
        seed_shoppers.personas_ensure(first=MEMBERS, plazas=plazas, stores=stores, now=now, rng=random.Random(20261125))
        shopper = members[0]
        seed_shoppers.points_mall_trial(shopper)
        api_key = self._demo_api_key(stores[0].merchant)
        staff = self._staff()
        templates = seed_coupons.templates_ensure(claim_store=stores[0])
        campaign = seed_coupons.wake_up_campaign_ensure(template=templates["wake_up"], staff=staff, now=now)
        tagged = segments.segments_tag()

        self.stdout.write(self.style.SUCCESS(
            f"Demo mall ready: {len(plazas)} plazas, {len(stores)} stores, {ALL_MEMBERS} members"
        ))
        self.stdout.write(f"  Admin:            {base_url}/admin/  (login {DEMO_STAFF[0]} / {DEMO_STAFF[1]})")
        self.stdout.write(f"  Merchant API:     {base_url}/api/v1/  (docs at {base_url}/api/docs/)")
        self.stdout.write(f"  Shopper pages:    {base_url}/m/login/demo/  (pick a demo shopper)")
        self.stdout.write(f"  Pay at a shop:    {base_url}/m/pay/{stores[0].code}/  (its payment QR; the sandbox cashier pays)")
        self.stdout.write(f"  Chat simulator:   {base_url}/wechat/simulator/  (staff; a shopper scanning and chatting)")
        self.stdout.write(f"  Demo POS key:     {api_key}  (merchant {stores[0].merchant.name}, store {stores[0].code})")
        self.stdout.write(
            f"  A demo member:    {shopper.member_no}  ({ledger.member_points_spendable(member=shopper)} points; the points mall "
            f"sells “{templates['points_mall'].name}” for {templates['points_mall'].points_price})"
        )
        sizes = ", ".join(
            f"{segment.value} {tagged.sizes[segment.value].members}" for segment in Segment if segment.value in tagged.sizes
        )
        self.stdout.write(f"  Segments:         {sizes or 'tagged earlier today (the nightly job tags them again tomorrow)'}")
        hint = ": make it active, save, then “Run the selected campaigns now” in the list"
        self.stdout.write(
            f"  Wake-up campaign: {base_url}/admin/coupons/campaign/{campaign.pk}/change/  "
            f"({campaign.get_status_display()}{hint if campaign.status == Campaign.Status.DRAFT else ''})"
        )

    def _plaza(self, code, name, city):
        return Plaza.objects.filter(code=code).first() or services.plaza_create(code=code, name=name, city=city)

    def _store(self, name, plaza, code, rate):
        store = Store.objects.select_related("merchant", "plaza").filter(code=code).first()
        if store is None:
            _, store, _, _ = services.merchant_create(name=name, plaza=plaza, earn_rate_bp=rate, store_code=code)
        return store

    def _history(self, members, stores, rng, dates, now):
        """Sales over the year since each joined, a few redemptions and one refund in seven, all idempotent.

        ``rng`` draws what the first versions of the seed drew, in the same order, so a
        demo database seeded by them replays; ``dates`` draws when.
        """
        for i, member in enumerate(members):
            seed_shoppers.welcome_grant(member)
            for n in range(rng.randint(1, 6)):
                store = rng.choice(stores)
                amount_fen = rng.randint(1_000, 200_000)
                at = member.created_at + (now - member.created_at) * dates.random()
                purchase = seed_shoppers.sale(
                    member=member, store=store, amount_fen=amount_fen, at=at,
                    key=f"seed:earn:{member.pk}:{n}", reference=f"DEMO-{member.pk}-{n}",
                )
                if i % 7 == 0 and n == 0 and purchase.amount_fen:
                    seed_shoppers.sale_refund(
                        purchase=purchase, amount_fen=purchase.amount_fen // 2, key=f"seed:refund:{purchase.earn_id}"
                    )
            if i % 3 == 0:
                balance = ledger.member_points_balance(member=member)
                if balance >= 50:
                    ledger.points_redeem(
                        member=member, store=stores[i % len(stores)], points=50, idempotency_key=f"seed:redeem:{member.pk}"
                    )

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
        return user
