"""seed_demo's shoppers and their history: sales dated in the past, so that the nightly
segment tagging finds every lifecycle segment in the demo mall.

Every point moves through members/ledger.py with a fixed idempotency key and ``at``;
each sale also leaves the Purchase and the Visit a POS sale leaves, dated like its
earn, so the ledger, the merchants' reports, the segments and a campaign's results all
tell the same story. Safe to run twice: a sale whose Purchase exists is left alone.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from random import Random

from django.db import transaction
from django.utils import timezone

from members import ledger, services
from members.models import Identity, Member, PointsTransaction, Store, Visit
from payments.models import Purchase, PurchaseRefund

WELCOME_POINTS = 100
# The demo's main shopper (the first one) gets these to try the points mall with.
POINTS_MALL_TRIAL = 1000


def shopper_ensure(*, i: int, plaza, joined: datetime) -> Member:
    """Demo shopper ``i`` (official-account openid ``demo-openid-<i>``), found or made;
    a new one is dated as having joined at ``joined``."""
    openid = f"demo-openid-{i:03d}"
    identity = (
        Identity.objects.select_related("member").filter(channel=Identity.Channel.WECHAT_OPENID, external_id=openid).first()
    )
    if identity:
        return identity.member
    with transaction.atomic():
        member = services.member_create(
            join_channel=Member.Channel.WECHAT, plaza=plaza, phone=f"+86139{i:08d}", nickname=f"Demo shopper {i}"
        )
        Identity.objects.create(member=member, channel=Identity.Channel.WECHAT_OPENID, external_id=openid)
        # A demo has a past: the member row says when they joined (no point moves here).
        Member.objects.filter(pk=member.pk).update(created_at=joined)
        member.created_at = joined
    return member


def welcome_grant(member: Member) -> PointsTransaction:
    return ledger.points_grant(
        member=member, points=WELCOME_POINTS, reason="welcome gift", idempotency_key=f"seed:welcome:{member.pk}",
        at=member.created_at,
    )


def sale(*, member: Member, store: Store, amount_fen: int, key: str, reference: str, at: datetime | None = None):
    """A POS sale at ``store`` dated ``at`` (default now): the earn, the Purchase and the Visit.

    payments.services.purchase_record books a sale *now* and pushes "you earned N points";
    a demo's history is in the past and tells nobody, so this books the same three rows
    the same way, at ``at``. The points move only through ``ledger.points_earn``.
    """
    with transaction.atomic():
        earn = ledger.points_earn(
            member=member, store=store, amount_fen=amount_fen, idempotency_key=key, reference=reference, at=at
        )
        purchase = Purchase.objects.filter(earn=earn).first()
        if purchase is None:
            purchase = Purchase.objects.create(
                merchant=store.merchant, store=store, member_id=earn.member_id, amount_fen=amount_fen,
                order_ref=reference, earn=earn, created_at=earn.created_at,
            )
            services.visit_record(
                member=member, plaza=store.plaza, store=store, kind=Visit.Kind.PURCHASE, amount_fen=amount_fen,
                at=earn.created_at,
            )
    return purchase


def sale_refund(*, purchase: Purchase, amount_fen: int, key: str) -> PurchaseRefund:
    """Refund part of a demo sale now, as payments.services.purchase_refund does: the points back through the ledger."""
    with transaction.atomic():
        reversal = ledger.points_reverse(original=purchase.earn, amount_fen=amount_fen, idempotency_key=key)
        refund = PurchaseRefund.objects.filter(reversal=reversal).first()
        if refund is None:
            refund = PurchaseRefund.objects.create(
                purchase=purchase, amount_fen=amount_fen, reversal=reversal, created_at=reversal.created_at
            )
            Purchase.objects.filter(pk=purchase.pk).update(refunded_fen=purchase.refunded_fen + amount_fen)
    return refund


# --- the lifecycle personas -------------------------------------------------------------


@dataclass(frozen=True)
class Persona:
    """``count`` shoppers the segment rules (members/segments.py) put in ``segment``."""

    segment: str
    count: int
    # For the persona's j-th shopper and the present: when they joined, and the instants
    # of their purchases.
    joined: Callable[[int, datetime], datetime]
    purchases: Callable[[int, datetime], list[datetime]]
    amount_fen: tuple[int, int]


def _days(now: datetime, days: int, hours: int = 0) -> datetime:
    return now - timedelta(days=days, hours=hours)


def _lapsed_purchases(j: int, now: datetime) -> list[datetime]:
    # Regulars once — a purchase a month — who stopped coming 125 to 217 days ago.
    last = 125 + 4 * j
    return [_days(now, last + 30 * m, hours=j % 7) for m in range(2 + j % 3)]


def _month_start(now: datetime, back: int) -> datetime:
    """Midnight on the first of the local calendar month ``back`` months before ``now``'s."""
    local = timezone.localtime(now)
    year, month = divmod(local.year * 12 + local.month - 1 - back, 12)
    return timezone.make_aware(datetime(year, month + 1, 1))


def _loyal_purchases(j: int, now: datetime) -> list[datetime]:
    # A purchase in each of the last six complete months (loyalty asks for the last three).
    return [_month_start(now, back) + timedelta(days=2 + 3 * j, hours=12) for back in range(1, 7)]


PERSONAS = [
    Persona("lapsed", 24, lambda j, now: _lapsed_purchases(j, now)[-1] - timedelta(days=14), _lapsed_purchases,
            (8_000, 60_000)),
    Persona("loyal", 4, lambda j, now: _days(now, 230), _loyal_purchases, (20_000, 150_000)),
    Persona("occasional", 4, lambda j, now: _days(now, 250 + 20 * j),
            lambda j, now: [_days(now, 200 + 20 * j), _days(now, 30 + 15 * j)], (5_000, 40_000)),
    Persona("one_time", 3, lambda j, now: _days(now, 23 + 25 * j), lambda j, now: [_days(now, 20 + 25 * j)], (3_000, 30_000)),
    Persona("potential", 3, lambda j, now: _days(now, 10 + 20 * j), lambda j, now: [], (0, 0)),
]
PERSONA_MEMBERS = sum(persona.count for persona in PERSONAS)


def personas_ensure(*, first: int, plazas: list, stores: list[Store], now: datetime, rng: Random) -> dict[str, list[Member]]:
    """Demo shoppers ``first`` … of every persona, with their back-dated history; by segment."""
    made: dict[str, list[Member]] = {}
    i = first
    for persona in PERSONAS:
        for j in range(persona.count):
            member = shopper_ensure(i=i, plaza=plazas[i % len(plazas)], joined=persona.joined(j, now))
            welcome_grant(member)
            for n, at in enumerate(persona.purchases(j, now)):
                store = rng.choice(stores)
                sale(member=member, store=store, amount_fen=rng.randint(*persona.amount_fen), at=at,
                     key=f"seed:persona:{member.pk}:{n}", reference=f"DEMO-{member.pk}-P{n}")
            made.setdefault(persona.segment, []).append(member)
            i += 1
    return made


def points_mall_trial(member: Member) -> PointsTransaction:
    return ledger.points_grant(
        member=member, points=POINTS_MALL_TRIAL, reason="demo: points to try the points mall",
        idempotency_key=f"seed:points-mall:{member.pk}",
    )
