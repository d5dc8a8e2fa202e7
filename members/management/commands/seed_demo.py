"""Build a believable demo mall: four plazas in four cities, thirty tenants across the
categories (餐饮, 服饰, 影院, 超市, 数码, 亲子, 美妆, 停车), each with a store, and
thousands of members (``--members``, 1,000 by default) with a year of history.

The history goes through the real services with a past ``at`` — POS sales with the
member code scanned (tiers move) or by number, payments through the sandbox cashier,
check-ins, refunds, redemptions, staff adjustments, promotion gifts that expire,
coupon claims and a wake-up campaign with its results — so the daily reports, the
settlements and the ledger agree. In two halves: up to 100 days ago, then the night's
jobs of that day (tier review, segments, the campaign run), then the rest; then the jobs
of tonight (expiry, tier review, segments, expiry reminders, the ledger roll-up, the
dashboards). Nothing in production has a "fake now".

Safe to run twice: everything is found before it is made and every ledger operation has
a fixed key in the ``demo:`` namespace, so a second run books nothing (it only replaces
the printed demo API key).
"""

import random
import time
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from core.progress import Bars
from coupons.models import Campaign
from members import auth, ledger, ledger_checks, reminders, segments, tiers
from members.management.commands import _seed_coupons as seed_coupons
from members.management.commands import _seed_history as seed_history
from members.management.commands import _seed_mall as seed_mall
from members.management.commands import _seed_shoppers as seed_shoppers
from members.models import Member, MerchantApiKey, PointsTransaction, Segment, Tier
from payments.models import Order, Purchase

DEFAULT_MEMBERS = 1000
DEMO_STAFF = ("admin", "admin")
# The night between the two halves of the history: this many days ago.
MIDPOINT_DAYS = 100


class Command(BaseCommand):
    help = (
        "Seed a believable demo mall: 4 plazas, 30 merchants with stores, --members members (default 1000) with a "
        "year of history booked through the real services at past instants (sales, payments, check-ins, refunds, "
        "redemptions, coupons, a campaign), then tonight's jobs. Safe to run twice; DEBUG only."
    )

    def add_arguments(self, parser):
        parser.add_argument("--base-url", default="http://127.0.0.1:8000", help="where the demo is served, for the printed links")
        parser.add_argument("--members", type=int, default=DEFAULT_MEMBERS, help=f"how many shoppers (default {DEFAULT_MEMBERS})")
        parser.add_argument("--seed", type=int, default=20261123, help="the random seed of the shoppers' history")

    def handle(self, *args, base_url, members, seed, **options):
        base_url = base_url.rstrip("/")
        if not settings.DEBUG:
            raise CommandError("seed_demo creates a demo staff login; it runs only with DEBUG on")
        if members < 1:
            raise CommandError("--members must be 1 or more")
        if PointsTransaction.objects.filter(idempotency_key__startswith="seed:").exists():
            raise CommandError(
                "This database holds a demo made by an older seed_demo (its sales were booked without the shopper "
                "present, so its reports and tiers do not add up). Start afresh: `make clean && make run` "
                "(or delete var/db.sqlite3 and run `make run`)."
            )
        started = time.monotonic()
        now = timezone.now()
        midpoint = now - timedelta(days=MIDPOINT_DAYS)

        plazas = seed_mall.plazas_ensure()
        stores = seed_mall.stores_ensure(plazas)
        store_list = list(stores.values())
        staff = self._staff()
        templates = seed_coupons.templates_ensure(claim_store=store_list[0])
        plans = seed_shoppers.plans_make(count=members, seed=seed, now=now, plazas=plazas, stores=stores)
        shoppers = seed_shoppers.shoppers_ensure(count=members, plazas=plazas, plans=plans)
        self.stdout.write(f"Shoppers: {len(shoppers)}; booking a year of history …")

        booker = seed_history.Booker(staff=staff, site_url=base_url, orders=settings.O2O_SANDBOX)
        bars = Bars(self.stdout, "history", {"before": f"until {MIDPOINT_DAYS} days ago", "after": "since"})
        try:
            booker.book(shoppers, plans, before=midpoint, progress=lambda done, total: bars("before", done, total))
            bars.close()
            seed_history.releases_book(until=midpoint)
            seed_history.expiries_book(since=now - timedelta(days=2 * seed_shoppers.HISTORY_DAYS), until=midpoint)
            # That night's jobs: the tier review (its grace period starts), the segments, the campaign.
            tiers.tiers_review(at=midpoint)
            segments.segments_tag(at=midpoint)
            campaign = seed_coupons.past_campaign_run(staff=staff, at=midpoint)
            booker.book(shoppers, plans, after=midpoint, progress=lambda done, total: bars("after", done, total))
        finally:
            bars.close()
        comebacks = seed_coupons.campaign_comebacks(campaign=campaign, rng=random.Random(seed + 1), stores=store_list)
        claimed, redeemed = seed_coupons.claims_book(
            template=templates["claimable"], members=shoppers, rng=random.Random(seed + 2), now=now
        )
        shopper = shoppers[0]
        if f"demo:points-mall:{shopper.pk}" not in booker.done:
            ledger.points_grant(
                member=shopper, points=seed_shoppers.POINTS_MALL_TRIAL, reason="demo: points to try the points mall",
                idempotency_key=f"demo:points-mall:{shopper.pk}",
            )
        seed_history.releases_book(until=now)
        seed_history.expiries_book(since=midpoint, until=now - timedelta(days=1))
        tagged = self._nightly(now)
        wake_up = seed_coupons.wake_up_campaign_ensure(template=templates["wake_up"], staff=staff, now=now)
        self._dashboards()
        api_key = self._demo_api_key(store_list[0])
        problems = ledger_checks.ledger_violations() + ledger_checks.orphan_earns()

        shopper.refresh_from_db()
        self.stdout.write(self.style.SUCCESS(
            f"Demo mall ready: {len(plazas)} plazas, {len(store_list)} stores, {len(shoppers)} members "
            f"({time.monotonic() - started:.0f} s)"
        ))
        booked = ", ".join(f"{n} {kind}s" for kind, n in sorted(booker.counts.items())) or "nothing new (seeded before)"
        self.stdout.write(f"  Booked:           {booked}; {comebacks} campaign comebacks, {claimed} coupons claimed "
                          f"({redeemed} used)")
        if not settings.O2O_SANDBOX:
            self.stdout.write("  Payments:         the sandbox cashier is off (O2O_SANDBOX): orders were booked as POS sales")
        self.stdout.write(f"  Categories:       {' '.join(seed_mall.CATEGORIES)}")
        self.stdout.write(f"  Tiers:            {self._tier_sizes()}")
        self.stdout.write(f"  Admin:            {base_url}/admin/  (login {DEMO_STAFF[0]} / {DEMO_STAFF[1]})")
        self.stdout.write(f"  Merchant API:     {base_url}/api/v1/  (docs at {base_url}/api/docs/)")
        self.stdout.write(f"  Shopper pages:    {base_url}/m/login/demo/  (pick a demo shopper)")
        self.stdout.write(f"  Pay at a shop:    {base_url}/m/pay/{store_list[0].code}/  (its payment QR; the sandbox cashier pays)")
        self.stdout.write(f"  Chat simulator:   {base_url}/wechat/simulator/  (staff; a shopper scanning and chatting)")
        self.stdout.write(f"  Demo POS key:     {api_key}  (merchant {store_list[0].merchant.name}, store {store_list[0].code})")
        self.stdout.write(
            f"  A demo member:    {shopper.member_no}  ({ledger.member_points_spendable(member=shopper)} points; the points mall "
            f"sells “{templates['points_mall'].name}” for {templates['points_mall'].points_price})"
        )
        sizes = ", ".join(
            f"{segment.value} {tagged.sizes[segment.value].members}" for segment in Segment if segment.value in tagged.sizes
        )
        self.stdout.write(f"  Segments:         {sizes or 'tagged earlier today (the nightly job tags them again tomorrow)'}")
        self.stdout.write(f"  Past campaign:    {base_url}/admin/coupons/campaign/{campaign.pk}/change/  (ran {MIDPOINT_DAYS} days ago)")
        hint = ": make it active, save, then “Run the selected campaigns now” in the list"
        self.stdout.write(
            f"  Wake-up campaign: {base_url}/admin/coupons/campaign/{wake_up.pk}/change/  "
            f"({wake_up.get_status_display()}{hint if wake_up.status == Campaign.Status.DRAFT else ''})"
        )
        self.stdout.write("  More traffic:     python manage.py simulate --days 3 --shoppers 50  (real requests, now)")
        if problems:
            raise CommandError("the books do not add up:\n  " + "\n  ".join(problems))
        self.stdout.write(f"  Books:            ledger invariants hold; {Purchase.objects.count()} sales, "
                          f"{Order.objects.filter(paid_at__isnull=False).count()} paid orders, each earn backed by a sale")

    def _nightly(self, now):
        """Tonight's jobs, as the schedule runs them."""
        ledger.points_expire_due(at=now)
        tiers.tiers_review(at=now)
        tagged = segments.segments_tag(at=now)
        reminders.expiry_reminders_send(at=now)
        ledger.ledger_rollup(now=now)
        return tagged

    def _dashboards(self):
        # The admin's dashboards read summary tables; fill them for the whole history.
        try:
            call_command("dashboards_refresh", days=400, stdout=self.stdout)
        except (CommandError, TypeError) as exc:
            self.stdout.write(f"  (dashboards not refreshed: {exc})")

    def _tier_sizes(self) -> str:
        counts = {
            tier.name: Member.objects.filter(tier=tier, identities__external_id__startswith="demo-openid-").count()
            for tier in Tier.objects.order_by("threshold_fen")
        }
        return ", ".join(f"{name} {n}" for name, n in counts.items())

    def _demo_api_key(self, store) -> str:
        # Keys are shown once; on each run the previous demo key is revoked and a new one shown.
        merchant = store.merchant
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
