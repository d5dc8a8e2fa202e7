"""A merchant's numbers: daily sales and visits, and the monthly settlement (points, the
payments the mall collected for it, and the coupon discounts the mall funded).

Aggregates in the database (one grouped query per source), never loops over rows.
Days are the mall's local days (settings.TIME_ZONE).
"""

import calendar
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.db.models import Count, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from core.errors import ApplicationError
from coupons.models import CouponRedemption, CouponTemplate
from members import ledger
from members.models import Account, Entry, Merchant
from payments.models import Order, OrderRefund, Purchase, PurchaseRefund

MAX_REPORT_DAYS = 92
# Reports cover the years the ledger can hold; outside them date arithmetic would overflow.
FIRST_DAY, LAST_DAY = date(2000, 1, 1), date(2999, 12, 31)
_PERIOD = re.compile(r"(?P<year>2[0-9]{3})-(?P<month>[0-9]{2})", re.ASCII)


class InvalidPeriod(ApplicationError):
    """The period is malformed or too long."""

    code = "invalid_period"


@dataclass(frozen=True)
class DailyFigures:
    day: date
    customers: int  # distinct members who bought
    transactions: int  # purchases booked
    sales_fen: int  # gross sales
    refunds_fen: int  # refunds booked that day
    average_ticket_fen: int  # sales / transactions, rounded down to the fen
    frequency: str  # transactions per customer, 2 decimals: sales = customers × ticket × frequency
    points_funded: int  # points the merchant issued that day, net of refunds taken back
    points_accepted: int  # points the merchant took as payment, net of those given back


def _day_bounds(first: date, last: date) -> tuple[datetime, datetime]:
    tz = timezone.get_current_timezone()
    return (
        timezone.make_aware(datetime.combine(first, time.min), tz),
        timezone.make_aware(datetime.combine(last + timedelta(days=1), time.min), tz),
    )


def merchant_daily_report(*, merchant: Merchant, first: date, last: date) -> list[DailyFigures]:
    if last < first:
        raise InvalidPeriod("'to' is before 'from'")
    if first < FIRST_DAY or last > LAST_DAY:
        raise InvalidPeriod(f"days must be from {FIRST_DAY} to {LAST_DAY}")
    if (last - first).days + 1 > MAX_REPORT_DAYS:
        raise InvalidPeriod(f"at most {MAX_REPORT_DAYS} days at a time")
    start, end = _day_bounds(first, last)
    tz = timezone.get_current_timezone()
    in_period = {"created_at__gte": start, "created_at__lt": end}

    sales = {
        row["day"]: row
        for row in Purchase.objects.filter(merchant=merchant, **in_period)
        .annotate(day=TruncDate("created_at", tzinfo=tz))
        .values("day")
        .annotate(customers=Count("member", distinct=True), transactions=Count("id"), sales=Sum("amount_fen"))
    }
    refunds = dict(
        PurchaseRefund.objects.filter(purchase__merchant=merchant, **in_period)
        .annotate(day=TruncDate("created_at", tzinfo=tz))
        .values_list("day")
        .annotate(s=Sum("amount_fen"))
    )
    points = {}
    for day, kind, total in (
        Entry.objects.filter(account__merchant=merchant, **in_period)
        .annotate(day=TruncDate("created_at", tzinfo=tz))
        .values_list("day", "account__kind")
        .annotate(s=Sum("amount"))
    ):
        points[(day, kind)] = total

    report = []
    for n in range((last - first).days + 1):
        day = first + timedelta(days=n)
        row = sales.get(day, {})
        customers, transactions, total = row.get("customers", 0), row.get("transactions", 0), row.get("sales") or 0
        frequency = Decimal(transactions) / Decimal(customers) if customers else Decimal(0)
        report.append(
            DailyFigures(
                day=day,
                customers=customers,
                transactions=transactions,
                sales_fen=total,
                refunds_fen=refunds.get(day) or 0,
                average_ticket_fen=total // transactions if transactions else 0,
                frequency=str(frequency.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)),
                points_funded=-(points.get((day, Account.Kind.MERCHANT_FUNDING)) or 0),
                points_accepted=points.get((day, Account.Kind.MERCHANT_ACCEPTANCE)) or 0,
            )
        )
    return report


def period_parse(period: str) -> tuple[date, date]:
    """"2026-11" → (2026-11-01, 2026-11-30). ASCII digits only (int() would take "٢٠٢٦")."""
    match = _PERIOD.fullmatch(period or "")
    if match is None or not 1 <= int(match["month"]) <= 12:
        raise InvalidPeriod("period must be YYYY-MM, from 2000-01 to 2999-12")
    year, month = int(match["year"]), int(match["month"])
    return date(year, month, 1), date(year, month, calendar.monthrange(year, month)[1])


@dataclass(frozen=True)
class MonthlyStatement:
    """The points settlement, the payments the mall's own account collected for the
    merchant (orders outside partner mode), which the mall owes it, and the discounts of
    the mall's coupons it took (at its tills and on its orders), which the mall owes it too.

    Coupon discounts count in the month of their redemption; a sale refunded in full
    takes its discount back in the month of the refund (as refunded payments do), so a
    month's statement does not change once the month is over.
    """

    merchant_id: int
    start: datetime
    end: datetime
    funded_points: int
    accepted_points: int
    funded_fen: int
    accepted_fen: int
    net_fen: int  # points: positive, the pool owes the merchant
    collected_fen: int  # paid to the mall's account for this merchant's orders
    refunded_fen: int  # of those, given back by refunds that succeeded in the period
    payments_due_fen: int  # collected − refunded: what the mall owes for payments
    coupons_mall_funded_fen: int  # the mall's coupons' discounts on the merchant's sales, less those reversed
    coupons_merchant_funded_fen: int  # the merchant's own coupons' discounts, likewise (for information)
    total_due_fen: int  # net_fen + payments_due_fen + coupons_mall_funded_fen: positive, the mall pays the merchant


def merchant_monthly_settlement(*, merchant: Merchant, period: str) -> MonthlyStatement:
    first, last = period_parse(period)
    start, end = _day_bounds(first, last)
    points = ledger.merchant_settlement(merchant=merchant, start=start, end=end)
    mall_orders = Order.objects.filter(merchant=merchant, collector=Order.Collector.MALL)
    collected = mall_orders.filter(paid_at__gte=start, paid_at__lt=end).aggregate(s=Sum("payable_fen"))["s"] or 0
    refunded = OrderRefund.objects.filter(
        order__in=mall_orders, kind=OrderRefund.Kind.REQUESTED, status=OrderRefund.Status.SUCCEEDED,
        finished_at__gte=start, finished_at__lt=end,
    ).aggregate(s=Sum("cash_fen"))["s"] or 0
    coupons = _coupon_discounts(merchant, start, end)
    mall_funded = coupons.get(CouponTemplate.FundedBy.MALL, 0)
    return MonthlyStatement(
        **points.__dict__, collected_fen=collected, refunded_fen=refunded, payments_due_fen=collected - refunded,
        coupons_mall_funded_fen=mall_funded, coupons_merchant_funded_fen=coupons.get(CouponTemplate.FundedBy.MERCHANT, 0),
        total_due_fen=points.net_fen + collected - refunded + mall_funded,
    )


def _coupon_discounts(merchant: Merchant, start: datetime, end: datetime) -> dict[str, int]:
    """{funded_by: discounts of redemptions made in [start, end) − those reversed in it}."""
    redemptions = CouponRedemption.objects.filter(merchant=merchant)
    totals: dict[str, int] = {}
    for sign, moment in ((1, "created_at"), (-1, "reversed_at")):
        rows = (
            redemptions.filter(**{f"{moment}__gte": start, f"{moment}__lt": end})
            .values_list("funded_by").annotate(s=Sum("discount_fen"))
        )
        for funded_by, total in rows:
            totals[funded_by] = totals.get(funded_by, 0) + sign * (total or 0)
    return totals
