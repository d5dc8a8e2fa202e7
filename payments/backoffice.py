"""A merchant's own sales for its back office: the purchases, redemptions and refunds of a
period of the mall's local days, page by page, to reconcile with its till and with the
daily report (payments.reports).

Rows come oldest first, ordered by (created_at, id), and are paged by a keyset cursor
(the last row's created_at and id, in the same form as the shopper API's cursors), so a
page is one index range scan on (merchant, created_at) whatever the page number, and a
row written while a client pages appears once, on a later page, never twice.
"""

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from datetime import timezone as dt_timezone

from django.db.models import Q, QuerySet
from django.utils import timezone

from core.errors import ApplicationError
from members.models import Merchant, Store
from payments.models import OrderRefund, Purchase, PurchaseRefund, Redemption, RedemptionRefund
from payments.reports import FIRST_DAY, LAST_DAY, MAX_REPORT_DAYS, InvalidPeriod

_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)
_CURSOR = re.compile(r"([0-9]{1,18})-([0-9]{1,19})", re.ASCII)
_EPOCH = datetime(1970, 1, 1, tzinfo=dt_timezone.utc)


class InvalidCursor(ApplicationError):
    """This cursor was not given by this API."""

    code = "invalid_cursor"


@dataclass(frozen=True)
class Period:
    first: date
    last: date  # inclusive

    @property
    def bounds(self) -> tuple[datetime, datetime]:
        """[start, end) in the mall's time zone (settings.TIME_ZONE)."""
        tz = timezone.get_current_timezone()
        return (
            timezone.make_aware(datetime.combine(self.first, time.min), tz),
            timezone.make_aware(datetime.combine(self.last + timedelta(days=1), time.min), tz),
        )


def period_parse(*, first: str | None, last: str | None) -> Period:
    """Local days ``first``..``last`` (YYYY-MM-DD, inclusive), by the daily report's rule:
    ``last`` not before ``first``, at most MAX_REPORT_DAYS days, within the ledger's years."""
    days = []
    for name, text in (("from", first), ("to", last)):
        if not text or _DAY.fullmatch(text) is None:
            raise InvalidPeriod(f"'{name}' must be a day, YYYY-MM-DD")
        try:
            days.append(date.fromisoformat(text))
        except ValueError:
            raise InvalidPeriod(f"'{name}' is not a day of the calendar") from None
    period = Period(*days)
    if period.last < period.first:
        raise InvalidPeriod("'to' is before 'from'")
    if period.first < FIRST_DAY or period.last > LAST_DAY:
        raise InvalidPeriod(f"days must be from {FIRST_DAY} to {LAST_DAY}")
    if (period.last - period.first).days + 1 > MAX_REPORT_DAYS:
        raise InvalidPeriod(f"at most {MAX_REPORT_DAYS} days at a time")
    return period


def _in_period(queryset: QuerySet, period: Period) -> QuerySet:
    start, end = period.bounds
    return queryset.filter(created_at__gte=start, created_at__lt=end).order_by("created_at", "id")


def merchant_purchases(*, merchant: Merchant, period: Period, store: Store | None = None) -> QuerySet:
    rows = Purchase.objects.filter(merchant=merchant).select_related("earn", "store", "member")
    if store is not None:
        rows = rows.filter(store=store)
    return _in_period(rows, period)


def merchant_redemptions(*, merchant: Merchant, period: Period, store: Store | None = None) -> QuerySet:
    rows = Redemption.objects.filter(merchant=merchant).select_related("store", "member")
    if store is not None:
        rows = rows.filter(store=store)
    return _in_period(rows, period)


def merchant_purchase_refunds(*, merchant: Merchant, period: Period, store: Store | None = None) -> QuerySet:
    """Refunds booked in the period, whenever their purchase was."""
    rows = PurchaseRefund.objects.filter(purchase__merchant=merchant).select_related("purchase__store", "reversal")
    if store is not None:
        rows = rows.filter(purchase__store=store)
    return _in_period(rows, period)


def merchant_redemption_refunds(*, merchant: Merchant, period: Period, store: Store | None = None) -> QuerySet:
    rows = RedemptionRefund.objects.filter(redemption__merchant=merchant).select_related("redemption__store")
    if store is not None:
        rows = rows.filter(redemption__store=store)
    return _in_period(rows, period)


def merchant_order_refunds(*, merchant: Merchant, period: Period, store: Store | None = None) -> QuerySet:
    """Refunds of the merchant's orders asked for in the period, in whatever state they are now."""
    rows = OrderRefund.objects.filter(order__merchant=merchant).select_related("order__store")
    if store is not None:
        rows = rows.filter(order__store=store)
    return _in_period(rows, period)


def page(queryset: QuerySet, *, cursor: str, limit: int) -> tuple[list, str | None]:
    """The ``limit`` rows of ``queryset`` (ordered by created_at, id) after ``cursor``, and the next cursor."""
    if cursor:
        created_at, pk = _cursor_read(cursor)
        # The first condition alone bounds the index range; the second breaks ties by id.
        queryset = queryset.filter(created_at__gte=created_at).filter(
            Q(created_at__gt=created_at) | Q(created_at=created_at, pk__gt=pk)
        )
    rows = list(queryset[: limit + 1])
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    last = rows[-1]
    return rows, f"{(last.created_at - _EPOCH) // timedelta(microseconds=1)}-{last.pk}"


def _cursor_read(cursor: str) -> tuple[datetime, int]:
    match = _CURSOR.fullmatch(cursor)
    if match is None:
        raise InvalidCursor()
    pk = int(match[2])
    if pk >= 2**63:  # beyond any id; SQLite would not even take it as a parameter
        raise InvalidCursor()
    try:
        return _EPOCH + timedelta(microseconds=int(match[1])), pk
    except OverflowError:
        raise InvalidCursor() from None
