"""The refresh of the dashboards' summary tables: grouped queries over the apps' tables.

Each run rewrites the daily figures of the recent local days (today so far and
yesterday, where late refunds and expiries land; ``days`` or ``first`` for a backfill),
then the totals: the points members hold, members by plaza and segment, campaign
results. A range of days is deleted and written again in one transaction per chunk of a
month, so running it twice writes the same rows, and a run killed half-way leaves every
chunk either as it was or done. Nothing here is read or written by a sale.

Where each figure comes from (days are the mall's local days, settings.TIME_ZONE):

- new members: ``Member.created_at``, at the plaza they joined at;
- active members, check-ins, visits, customers: ``Visit`` rows (active: a check-in,
  purchase or payment, as members.segments counts visits; customers: a purchase or a
  payment), at the visit's plaza and the merchant of its store;
- sales: POS ``Purchase`` rows and paid ``Order`` rows with a member (gross, the day
  booked or paid); refunds: ``PurchaseRefund`` and succeeded ``OrderRefund`` rows;
- points: ``PointsTransaction.points`` (the member's net change) by kind, at the plaza
  of the transaction's store and its merchant. Check-in and campaign gifts and staff
  adjustments have no store: they count for the whole mall only;
- points members hold: minus the sum of every system account (entries sum to zero),
  from the roll-up's cached balances plus the entries since (members.ledger.ledger_rollup);
- members by plaza and segment: one grouped scan of active members with their
  ``MemberSegment`` (the nightly run's) and ``last_visit_at``.
"""

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Min, Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from backoffice.models import DashboardCampaign, DashboardDay, DashboardMembers, DashboardRefresh
from core.errors import ApplicationError
from coupons.campaigns import campaign_results
from coupons.models import Campaign
from members.models import Account, Entry, Member, PointsTransaction, SegmentRun, Visit
from members.segments import PURCHASE_KINDS, VISIT_KINDS
from payments.models import Order, OrderRefund, Purchase, PurchaseRefund

# Each run rewrites today and yesterday: refunds, expiries and late payments of
# yesterday land after midnight.
RECENT_DAYS = 2
MAX_DAYS = 3660
CHUNK_DAYS = 31
ACTIVE_DAYS = 30
CAMPAIGN_WINDOW_DAYS = 30
# Campaigns measured by a run: the most recent that ran, active or ended within this long.
CAMPAIGNS_MEASURED = 20
CAMPAIGNS_ENDED_WITHIN = timedelta(days=60)
# An order is paid within its expiry (minutes to hours) of being made: its paid day is
# looked for among the orders made up to this long before (Order.created_at is indexed).
ORDER_PAID_WITHIN = timedelta(days=2)
KEEP_REFRESHES = timedelta(days=7)

FIGURES = (
    "members_new", "members_active", "checkins", "visits", "customers", "sales_count", "sales_fen", "refunds_fen",
    "points_issued", "points_redeemed", "points_expired", "points_taken_back",
)
PAID = (Order.Status.PAID, Order.Status.PARTIALLY_REFUNDED, Order.Status.REFUNDED)

Kind = PointsTransaction.Kind
Level = DashboardDay.Level
# progress(phase, done, total): "days" (days written) then "totals" (steps).
Progress = Callable[[str, int, int], None]
Key = tuple[date, str, int | None, int | None]


class InvalidDays(ApplicationError):
    """The number of days to refresh is out of range."""

    code = "invalid_days"


@dataclass(frozen=True)
class RefreshSummary:
    refresh: DashboardRefresh
    days: int  # local days rewritten
    rows: int  # DashboardDay rows written


def dashboards_refresh(
    *, at: datetime | None = None, days: int = RECENT_DAYS, first: date | None = None, progress: Progress | None = None,
) -> RefreshSummary:
    """Rewrite the daily figures of the ``days`` local days up to ``at`` (today included),
    or of every day from ``first``; then the totals. Safe to run twice."""
    now = at or timezone.now()
    last = timezone.localdate(now)
    if first is None:
        if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= MAX_DAYS:
            raise InvalidDays(f"days must be 1 to {MAX_DAYS}", extra={"max": MAX_DAYS})
        first = last - timedelta(days=days - 1)
    first = max(min(first, last), last - timedelta(days=MAX_DAYS - 1))
    total_days = (last - first).days + 1
    rows = 0
    chunk_first = first
    while chunk_first <= last:
        chunk_last = min(chunk_first + timedelta(days=CHUNK_DAYS - 1), last)
        rows += _days_write(chunk_first, chunk_last, now)
        if progress:
            progress("days", (chunk_last - first).days + 1, total_days)
        chunk_first = chunk_last + timedelta(days=1)
    refresh = _totals_write(first, last, now, progress)
    return RefreshSummary(refresh=refresh, days=total_days, rows=rows)


def first_day_with_data() -> date | None:
    """The first local day anything happened on: where a full backfill starts."""
    candidates = [
        Member.objects.order_by("pk").values_list("created_at", flat=True).first(),
        PointsTransaction.objects.aggregate(m=Min("created_at"))["m"],
        Visit.objects.aggregate(m=Min("occurred_at"))["m"],
    ]
    found = [timezone.localdate(moment) for moment in candidates if moment is not None]
    return min(found) if found else None


# --- the days ---------------------------------------------------------------------


def _bounds(first: date, last: date, now: datetime) -> tuple[datetime, datetime]:
    tz = timezone.get_current_timezone()
    start = timezone.make_aware(datetime.combine(first, time.min), tz)
    end = timezone.make_aware(datetime.combine(last + timedelta(days=1), time.min), tz)
    return start, min(end, now + timedelta(microseconds=1))


def _days_write(first: date, last: date, now: datetime) -> int:
    figures = _days_compute(first, last, now)
    rows = [
        DashboardDay(day=day, level=level, plaza_id=plaza_id, merchant_id=merchant_id, computed_at=now, **values)
        for (day, level, plaza_id, merchant_id), values in sorted(figures.items(), key=_sort_key)
        if any(values.values())
    ]
    with transaction.atomic():
        DashboardDay.objects.filter(day__gte=first, day__lte=last).delete()
        DashboardDay.objects.bulk_create(rows, batch_size=1000)
    return len(rows)


def _sort_key(item) -> tuple:
    day, level, plaza_id, merchant_id = item[0]
    return (day, level, plaza_id or 0, merchant_id or 0)


def _days_compute(first: date, last: date, now: datetime) -> dict[Key, dict[str, int]]:
    """Every level's figures of the days in [first, last], up to ``now``: one grouped
    query per source (four for visits: distinct members do not add up across levels)."""
    start, end = _bounds(first, last, now)
    tz = timezone.get_current_timezone()
    figures: dict[Key, dict[str, int]] = defaultdict(lambda: dict.fromkeys(FIGURES, 0))

    def add(day, plaza_id, merchant_id, **values):
        keys = [(day, Level.MALL, None, None)]
        if plaza_id is not None:
            keys.append((day, Level.PLAZA, plaza_id, None))
        if merchant_id is not None:
            keys.append((day, Level.MERCHANT, None, merchant_id))
            if plaza_id is not None:
                keys.append((day, Level.PLAZA_MERCHANT, plaza_id, merchant_id))
        for key in keys:
            row = figures[key]
            for name, value in values.items():
                row[name] += value or 0

    def by_day(queryset, field: str):
        return queryset.annotate(day=TruncDate(field, tzinfo=tz)).order_by()

    # New members, at the plaza they joined at.
    joined = by_day(Member.objects.filter(created_at__gte=start, created_at__lt=end), "created_at")
    for day, plaza_id, count in joined.values_list("day", "join_plaza_id").annotate(n=Count("id")):
        add(day, plaza_id, None, members_new=count)

    # Visits: distinct members are counted at each level by its own grouping.
    visits = by_day(Visit.objects.filter(occurred_at__gte=start, occurred_at__lt=end), "occurred_at")
    counts = {
        "visits": Count("id"),
        "checkins": Count("id", filter=Q(kind=Visit.Kind.CHECKIN)),
        "members_active": Count("member", distinct=True, filter=Q(kind__in=VISIT_KINDS)),
        "customers": Count("member", distinct=True, filter=Q(kind__in=PURCHASE_KINDS)),
    }
    for level, plaza_field, merchant_field in (
        (Level.MALL, None, None), (Level.PLAZA, "plaza_id", None), (Level.MERCHANT, None, "store__merchant_id"),
        (Level.PLAZA_MERCHANT, "plaza_id", "store__merchant_id"),
    ):
        group = [field for field in (plaza_field, merchant_field) if field]
        for row in visits.values("day", *group).annotate(**counts):
            plaza_id = row.get(plaza_field) if plaza_field else None
            merchant_id = row.get(merchant_field) if merchant_field else None
            if merchant_field and merchant_id is None:
                continue  # check-ins: at a plaza, at no merchant
            figures[(row["day"], level, plaza_id, merchant_id)].update({name: row[name] for name in counts})

    # Sales through the programme: POS purchases, and orders paid by a member.
    purchases = by_day(Purchase.objects.filter(created_at__gte=start, created_at__lt=end), "created_at")
    paid = by_day(
        Order.objects.filter(
            created_at__gte=start - ORDER_PAID_WITHIN, created_at__lt=end, paid_at__gte=start, paid_at__lt=end,
            status__in=PAID, member__isnull=False,
        ),
        "paid_at",
    )
    for sales in (purchases, paid):
        for day, plaza_id, merchant_id, count, amount in sales.values_list("day", "store__plaza_id", "merchant_id").annotate(
            n=Count("id"), s=Sum("amount_fen")
        ):
            add(day, plaza_id, merchant_id, sales_count=count, sales_fen=amount)
    # PurchaseRefund.created_at is its reversal's, whose column is indexed.
    purchase_refunds = by_day(
        PurchaseRefund.objects.filter(reversal__created_at__gte=start, reversal__created_at__lt=end), "reversal__created_at"
    ).values_list("day", "purchase__store__plaza_id", "purchase__merchant_id")
    order_refunds = by_day(
        OrderRefund.objects.filter(
            status=OrderRefund.Status.SUCCEEDED, kind=OrderRefund.Kind.REQUESTED, order__member__isnull=False,
            created_at__lt=end, finished_at__gte=start, finished_at__lt=end,
        ),
        "finished_at",
    ).values_list("day", "order__store__plaza_id", "order__merchant_id")
    for refunds in (purchase_refunds, order_refunds):
        for day, plaza_id, merchant_id, amount in refunds.annotate(s=Sum("amount_fen")):
            add(day, plaza_id, merchant_id, refunds_fen=amount)

    # Points: the member's net change of each transaction, by kind. Transfers (merges)
    # move points between members: nothing changes for the mall.
    reverse_of_earn = Q(kind=Kind.REVERSE, reverses__kind=Kind.EARN)
    points = by_day(
        PointsTransaction.objects.filter(created_at__gte=start, created_at__lt=end).exclude(kind=Kind.TRANSFER), "created_at"
    ).values_list("day", "store__plaza_id", "merchant_id").annotate(
        issued=Sum("points", filter=Q(kind__in=[Kind.EARN, Kind.GRANT]) | Q(kind=Kind.ADJUST, points__gt=0)),
        redeemed=Sum("points", filter=Q(kind__in=[Kind.REDEEM, Kind.HOLD]) | (Q(kind=Kind.REVERSE) & ~reverse_of_earn)),
        expired=Sum("points", filter=Q(kind=Kind.EXPIRE)),
        taken_back=Sum("points", filter=reverse_of_earn | Q(kind=Kind.CANCEL) | Q(kind=Kind.ADJUST, points__lt=0)),
    )
    for day, plaza_id, merchant_id, issued, redeemed, expired, taken_back in points:
        add(
            day, plaza_id, merchant_id, points_issued=issued, points_redeemed=-(redeemed or 0), points_expired=-(expired or 0),
            points_taken_back=-(taken_back or 0),
        )
    return figures


# --- the totals -------------------------------------------------------------------


def _totals_write(first: date, last: date, now: datetime, progress: Progress | None) -> DashboardRefresh:
    steps = 3

    def step(done):
        if progress:
            progress("totals", done, steps)

    spendable, pending = points_held()
    step(1)
    members = _members_compute(now)
    step(2)
    campaigns = _campaigns_compute(now)
    segments_day = (
        SegmentRun.objects.filter(phase=SegmentRun.Phase.DONE).order_by("-day").values_list("day", flat=True).first()
    )
    with transaction.atomic():
        DashboardMembers.objects.all().delete()
        DashboardMembers.objects.bulk_create(members)
        for campaign_id, values in campaigns.items():
            DashboardCampaign.objects.update_or_create(campaign_id=campaign_id, defaults=values)
        refresh = DashboardRefresh.objects.create(
            started_at=now, finished_at=now, first_day=first, last_day=last, points_spendable=spendable,
            points_pending=pending, liability_fen=(spendable + pending) * settings.POINT_VALUE_FEN, segments_day=segments_day,
        )
        DashboardRefresh.objects.filter(started_at__lt=now - KEEP_REFRESHES).delete()
    step(3)
    return refresh


def points_held() -> tuple[int, int]:
    """(points in members' wallets, mall-funded points pending for them), now.

    Entries sum to zero, so members hold minus what the system accounts hold: their
    balances as the last roll-up left them, plus the entries since (a short range of
    entry ids) — a read of a few thousand accounts, never of the wallets.
    """
    system = Account.objects.exclude(kind=Account.Kind.WALLET)
    held = defaultdict(int)
    for kind, balance in system.values_list("kind").annotate(s=Sum("balance")).order_by():
        held[kind] += balance or 0
    # Accounts made since the last roll-up start at 0: their entries are all newer than
    # the lowest high-water mark of the accounts rolled up.
    low = system.filter(rolled_up_entry_id__gt=0).aggregate(m=Min("rolled_up_entry_id"))["m"] or 0
    recent = (
        Entry.objects.filter(pk__gt=low)
        .exclude(account__kind=Account.Kind.WALLET)
        .filter(pk__gt=F("account__rolled_up_entry_id"))
    )
    for kind, amount in recent.values_list("account__kind").annotate(s=Sum("amount")).order_by():
        held[kind] += amount or 0
    pending = held.get(Account.Kind.PENDING, 0)
    return -sum(held.values()), pending


def _members_compute(now: datetime) -> list[DashboardMembers]:
    """One grouped scan of active members: by join plaza and segment."""
    since = now - timedelta(days=ACTIVE_DAYS)
    rows = (
        Member.objects.filter(status=Member.Status.ACTIVE)
        .values_list("join_plaza_id", "segment__segment")
        .annotate(
            n=Count("id"), high_value=Count("id", filter=Q(segment__high_value=True)),
            active=Count("id", filter=Q(last_visit_at__gte=since)),
        )
        .order_by()
    )
    return [
        DashboardMembers(
            plaza_id=plaza_id, segment=segment or "", members=n, high_value_members=high_value, active_30d=active,
            computed_at=now,
        )
        for plaza_id, segment, n, high_value, active in rows
    ]


def _campaigns_compute(now: datetime) -> dict[int, dict]:
    recent = (
        Campaign.objects.filter(
            status__in=[Campaign.Status.ACTIVE, Campaign.Status.PAUSED, Campaign.Status.ENDED], starts_at__lte=now,
        )
        .filter(Q(ends_at__isnull=True) | Q(ends_at__gte=now - CAMPAIGNS_ENDED_WITHIN))
        .order_by("-starts_at", "-id")[:CAMPAIGNS_MEASURED]
    )
    measured = {}
    for campaign in recent:
        results = campaign_results(campaign=campaign, window_days=CAMPAIGN_WINDOW_DAYS)
        estimate = results.incremental_comeback
        measured[campaign.pk] = {
            "window_days": results.window_days,
            "treated": results.treated.targeted,
            "holdout": results.holdout.targeted,
            "redeemed": results.treated.redeemed,
            "treated_came_back": results.treated.came_back,
            "holdout_came_back": results.holdout.came_back,
            "incremental_comeback_bp": _bp(estimate.value) if estimate else None,
            "incremental_low_bp": _bp(estimate.low) if estimate else None,
            "incremental_high_bp": _bp(estimate.high) if estimate else None,
            "computed_at": now,
        }
    return measured


def _bp(share: float) -> int:
    """A share (0.0123) in basis points (123), rounded."""
    return round(share * 10000)
