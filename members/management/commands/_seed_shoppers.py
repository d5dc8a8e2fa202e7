"""seed_demo's shoppers and what each of them did over the past year: a plan of visits
drawn from a persona (VIPs, regulars, occasional shoppers, regulars who stopped coming,
newcomers, members who never bought), deterministic for a given random seed.

The plan is data only; ``_seed_history`` books it through the real services.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from random import Random

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from members import services
from members.management.commands._seed_mall import TENANTS
from members.models import Identity, Member, Plaza, Store

DEMO_OPENID = "demo-openid-{:04d}"
HISTORY_DAYS = 365
WELCOME_POINTS = 100
# The demo's main shopper (the first one) gets these to try the points mall with.
POINTS_MALL_TRIAL = 1000


@dataclass(frozen=True)
class Persona:
    name: str
    weight: int
    visits: tuple[int, int]  # visits over the year
    ticket_scale: float  # × the shop's typical ticket
    # The part of the year the visits fall in, in days back from now (far, near).
    span: tuple[int, int]
    joined_recently: bool = False


PERSONAS = [
    Persona("vip", 6, (10, 18), 3.0, (HISTORY_DAYS, 0)),
    Persona("regular", 24, (4, 9), 1.5, (HISTORY_DAYS, 0)),
    Persona("occasional", 30, (1, 3), 1.0, (HISTORY_DAYS, 10)),
    Persona("lapsed", 22, (2, 5), 1.0, (HISTORY_DAYS, 130)),
    Persona("new", 12, (0, 2), 1.0, (40, 0), joined_recently=True),
    Persona("dormant", 6, (0, 0), 1.0, (HISTORY_DAYS, 0)),
]


@dataclass
class Event:
    at: datetime
    kind: str  # sale, order, checkin, refund, redeem, adjust, grant
    n: int = 0  # its number in the member's plan (its idempotency keys carry it)
    store: Store | None = None
    plaza: Plaza | None = None
    amount_fen: int = 0
    points: int = 0
    present: bool = True
    of: int | None = None  # a refund: the sale's n
    reason: str = ""
    expires_at: datetime | None = None


@dataclass
class Plan:
    i: int
    persona: Persona
    joined: datetime
    events: list[Event] = field(default_factory=list)


def shoppers_ensure(*, count: int, plazas: list[Plaza], plans: list["Plan"]) -> list[Member]:
    """Demo shoppers 0 … count-1 (official-account openid ``demo-openid-NNNN``), found or
    made; a new one is dated as having joined when its plan says."""
    openids = [DEMO_OPENID.format(i) for i in range(count)]
    found = {
        identity.external_id: identity.member
        for identity in Identity.objects.select_related("member__tier").filter(
            channel=Identity.Channel.WECHAT_OPENID, external_id__in=openids
        )
    }
    members = []
    with transaction.atomic():
        for i, openid in enumerate(openids):
            member = found.get(openid)
            if member is None:
                joined = plans[i].joined
                member = services.member_create(
                    join_channel=Member.Channel.WECHAT, plaza=plazas[i % len(plazas)], phone=f"+86139{i:08d}",
                    nickname=_nickname(i),
                )
                Identity.objects.create(member=member, channel=Identity.Channel.WECHAT_OPENID, external_id=openid)
                # A demo has a past: the member row says when they joined (no point moves here).
                Member.objects.filter(pk=member.pk).update(created_at=joined)
                member.created_at = joined
            members.append(member)
    return members


_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
_GIVEN = ["伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "洋", "艳", "勇", "军", "杰", "娟", "涛", "明", "超", "秀英", "霞", "平"]


def _nickname(i: int) -> str:
    return f"{_SURNAMES[i % len(_SURNAMES)]}{_GIVEN[(i * 7) % len(_GIVEN)]}"


def _persona(rng: Random) -> Persona:
    pick = rng.randrange(sum(p.weight for p in PERSONAS))
    for persona in PERSONAS:
        if pick < persona.weight:
            return persona
        pick -= persona.weight
    return PERSONAS[-1]


def _instant(now: datetime, days_back: float, rng: Random) -> datetime:
    """A moment in opening hours (10:00–21:59 local) ``days_back`` days before ``now``, never after it."""
    local = timezone.localtime(now - timedelta(days=days_back))
    at = local.replace(hour=rng.randint(10, 21), minute=rng.randrange(60), second=rng.randrange(60), microsecond=0)
    return min(at, now - timedelta(minutes=5))


def plans_make(*, count: int, seed: int, now: datetime, plazas: list[Plaza], stores: dict[str, Store]) -> list[Plan]:
    """Every shopper's year, drawn from ``seed``: the same seed, the same plans (relative to ``now``)."""
    by_plaza: dict[str, list[Store]] = {}
    for tenant in TENANTS:
        by_plaza.setdefault(tenant.plaza, []).append(stores[tenant.store_code])
    tickets = {tenant.store_code: tenant.ticket for tenant in TENANTS}
    rates = {tenant.store_code: tenant.earn_rate_bp for tenant in TENANTS}
    plans = []
    for i in range(count):
        rng = Random(seed * 1_000_003 + i)
        persona = _persona(rng)
        far, near = persona.span
        joined = _instant(now, rng.uniform(near + 2, far) if persona.joined_recently else rng.uniform(far, far + 60), rng)
        plan = Plan(i=i, persona=persona, joined=joined)
        home = plazas[i % len(plazas)].code
        first_day = min(far, (now - joined).days - 1)
        visits = sorted(
            (rng.uniform(near, first_day) for _ in range(rng.randint(*persona.visits))) if first_day > near else [],
            reverse=True,
        )
        n = 0
        # The merchant-funded points the plan has earned so far, less what it spent or
        # refunded: a redemption is planned only within it, so the till never refuses it
        # (and a second run, which skips what is booked, books exactly what the first did).
        sure = 0
        for days_back in visits:
            plaza_code = home if rng.random() < 0.85 else rng.choice(plazas).code
            shops = by_plaza[plaza_code]
            at = _instant(now, days_back, rng)
            if rng.random() < 0.2:
                plan.events.append(Event(at=at - timedelta(minutes=30), kind="checkin", n=n, plaza=shops[0].plaza))
                n += 1
            for _ in range(1 if rng.random() < 0.9 else 2):
                store = rng.choice(shops)
                low, high = tickets[store.code]
                amount = int((low + (high - low) * rng.random() ** 2) * persona.ticket_scale) // 100 * 100 + rng.choice((0, 0, 50, 80))
                kind = "order" if rng.random() < 0.03 else "sale"
                at = at + timedelta(minutes=rng.randint(5, 50))
                plan.events.append(Event(at=at, kind=kind, n=n, store=store, amount_fen=max(amount, 100),
                                         present=kind == "order" or rng.random() < 0.85))
                sale_n = n
                n += 1
                base = max(amount, 100) * rates[store.code] // 10000 // settings.POINT_VALUE_FEN
                sure += base
                if kind == "sale" and rng.random() < 0.04 and days_back > 3:
                    sure -= base
                    part = amount if rng.random() < 0.5 else amount // 2
                    plan.events.append(Event(at=at + timedelta(days=rng.uniform(0.2, 3)), kind="refund", n=n, of=sale_n,
                                             store=store, amount_fen=max(part, 1)))
                    n += 1
            if rng.random() < 0.12:
                store = rng.choice(shops)
                points = rng.choice((50, 100, 200, 300, 500))
                if points <= sure:
                    sure -= points
                    plan.events.append(Event(at=at + timedelta(minutes=60), kind="redeem", n=n, store=store, points=points))
                    n += 1
        if rng.random() < 0.02 and visits:
            plan.events.append(Event(at=_instant(now, rng.uniform(near, first_day), rng), kind="adjust", n=n,
                                     points=rng.choice((50, 100, 200)), reason=f"补登小票 receipt {2026_0000 + i}"))
            n += 1
        if rng.random() < 0.25 and first_day > 60:
            # A promotion's gift that lapses after 60 days unless spent: points expire in the demo.
            at = _instant(now, rng.uniform(max(near, 62), first_day), rng)
            plan.events.append(Event(at=at, kind="grant", n=n, points=200, reason="demo: promotion gift",
                                     expires_at=at + timedelta(days=60)))
            n += 1
        plan.events.sort(key=lambda event: (event.at, event.n))
        plans.append(plan)
    return plans
