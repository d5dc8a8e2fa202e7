"""What the dashboards show: reads of the summary tables alone, for the admin index and
its CSV export.

A page costs a fixed handful of bounded, indexed reads whatever the mall's size: the
last refresh, at most MAX_DAYS rows of daily figures (summed per day by the database),
the members by plaza and segment, the latest campaign results, and the plazas and
merchants of the filters. Nothing here reads members, visits, sales or the ledger.

Who sees what (members.roles): a plaza manager sees only the plazas bound to them (and
the merchants with a store there); the mall-wide points figures are not theirs. Exports
need ``backoffice.export_dashboard`` (operators, finance).
"""

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from django.db.models import Max, Sum
from django.utils import timezone
from django.utils.dateparse import parse_date
from django.utils.translation import gettext, gettext_lazy

from backoffice.models import DashboardCampaign, DashboardDay, DashboardMembers, DashboardRefresh
from backoffice.dashboards.refresh import FIGURES
from core.errors import ApplicationError, PermissionDenied
from members.models import Merchant, Plaza, Segment, Store
from members.roles import plaza_scope

DEFAULT_DAYS = 30
MAX_DAYS = 366
MAX_MERCHANTS = 1000
CAMPAIGNS_SHOWN = 10
# What the page says about how often the figures are written (backoffice 0004's schedule).
REFRESH_EVERY = gettext_lazy("every hour")

VIEW_PERMISSION = "backoffice.view_dashboardday"
EXPORT_PERMISSION = "backoffice.export_dashboard"


class InvalidFilter(ApplicationError):
    """A filter of the dashboard is malformed or out of range."""

    code = "invalid_dashboard_filter"


class FilterNotAllowed(PermissionDenied):
    """The plaza or merchant asked for is outside the user's plazas."""

    code = "dashboard_filter_not_allowed"


def dashboard_visible(user) -> bool:
    return user.is_active and user.is_staff and user.has_perm(VIEW_PERMISSION)


def dashboard_exportable(user) -> bool:
    return dashboard_visible(user) and user.has_perm(EXPORT_PERMISSION)


@dataclass(frozen=True)
class Filters:
    first: date
    last: date
    plaza: Plaza | None = None
    merchant_id: int | None = None
    # The plazas the figures cover: None for the whole mall.
    plaza_ids: list[int] | None = None


@dataclass
class Dashboard:
    filters: Filters
    refresh: DashboardRefresh | None
    series: list[dict]  # one per day, every figure (zeros where nothing happened)
    totals: dict[str, int]
    members: dict[str, int]  # total, lapsed, active_30d, high_value, and each segment's size
    members_computed_at: datetime | None
    show_points_held: bool
    campaigns: list[DashboardCampaign]
    plazas: list[tuple[int, str]]
    merchants: list[tuple[int, str]]
    errors: list[str] = field(default_factory=list)

    @property
    def merchant_name(self) -> str:
        return dict(self.merchants).get(self.filters.merchant_id, "")


def filters_parse(*, user, params, today: date | None = None) -> Filters:
    """The dashboard's filters from a query string (from, to, plaza, merchant), checked
    against the user's plazas. Raises InvalidFilter or FilterNotAllowed."""
    today = today or timezone.localdate()
    last = _date(params.get("to"), "to", default=today)
    first = _date(params.get("from"), "from", default=last - timedelta(days=DEFAULT_DAYS - 1))
    if last < first:
        raise InvalidFilter(gettext("“To” is before “from”."), extra={"field": "to"})
    if (last - first).days + 1 > MAX_DAYS:
        raise InvalidFilter(gettext("At most %(days)d days at a time.") % {"days": MAX_DAYS}, extra={"field": "from"})
    scope = plaza_scope(user)
    plaza = None
    plaza_ids = scope
    if params.get("plaza"):
        plaza_id = _id(params.get("plaza"), "plaza")
        if scope is not None and plaza_id not in scope:
            raise FilterNotAllowed(gettext("This plaza is not one of yours."), extra={"field": "plaza"})
        plaza = Plaza.objects.filter(pk=plaza_id).first()
        if plaza is None:
            raise InvalidFilter(gettext("No such plaza."), extra={"field": "plaza"})
        plaza_ids = [plaza.pk]
    merchant_id = None
    if params.get("merchant"):
        merchant_id = _id(params.get("merchant"), "merchant")
        stores = Store.objects.filter(merchant_id=merchant_id)
        if plaza_ids is not None:
            stores = stores.filter(plaza_id__in=plaza_ids)
        if not stores.exists():
            raise FilterNotAllowed(gettext("This merchant has no store in the plazas shown."), extra={"field": "merchant"})
    return Filters(first=first, last=last, plaza=plaza, merchant_id=merchant_id, plaza_ids=plaza_ids)


def _date(value, name: str, *, default: date) -> date:
    if value in (None, ""):
        return default
    try:
        parsed = parse_date(str(value))
    except ValueError:
        parsed = None
    if parsed is None or not date(2000, 1, 1) <= parsed <= date(2999, 12, 31):
        raise InvalidFilter(gettext("Give dates as YYYY-MM-DD."), extra={"field": name})
    return parsed


def _id(value, name: str) -> int:
    text = str(value)
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise InvalidFilter(gettext("Choose from the list."), extra={"field": name})
    return int(text)


def default_filters(*, user, today: date | None = None) -> Filters:
    today = today or timezone.localdate()
    return Filters(first=today - timedelta(days=DEFAULT_DAYS - 1), last=today, plaza_ids=plaza_scope(user))


def dashboard_series(*, filters: Filters) -> list[dict]:
    """Each day's figures in the filters' range, zeros where nothing happened: one
    grouped read of at most MAX_DAYS × (the user's plazas) summary rows."""
    rows = DashboardDay.objects.filter(day__gte=filters.first, day__lte=filters.last)
    if filters.merchant_id is not None:
        if filters.plaza_ids is None:
            rows = rows.filter(level=DashboardDay.Level.MERCHANT, merchant_id=filters.merchant_id)
        else:
            rows = rows.filter(level=DashboardDay.Level.PLAZA_MERCHANT, merchant_id=filters.merchant_id,
                               plaza_id__in=filters.plaza_ids)
    elif filters.plaza_ids is not None:
        rows = rows.filter(level=DashboardDay.Level.PLAZA, plaza_id__in=filters.plaza_ids)
    else:
        rows = rows.filter(level=DashboardDay.Level.MALL)
    by_day = {
        row["day"]: row
        for row in rows.values("day").annotate(**{name: Sum(name) for name in FIGURES}).order_by("day")
    }
    series = []
    for n in range((filters.last - filters.first).days + 1):
        day = filters.first + timedelta(days=n)
        row = by_day.get(day, {})
        series.append({"day": day, **{name: row.get(name) or 0 for name in FIGURES}})
    return series


def dashboard_build(*, user, filters: Filters, errors: list[str] | None = None) -> Dashboard:
    refresh = DashboardRefresh.objects.filter(finished_at__isnull=False).order_by("-finished_at").first()
    series = dashboard_series(filters=filters)
    totals = {name: sum(day[name] for day in series) for name in FIGURES}
    members, members_at = _members(filters)
    scope = plaza_scope(user)
    plazas = Plaza.objects.order_by("name")
    if scope is not None:
        plazas = plazas.filter(pk__in=scope)
    merchants = Merchant.objects.order_by("name", "pk")
    if filters.plaza_ids is not None:
        merchants = merchants.filter(pk__in=Store.objects.filter(plaza_id__in=filters.plaza_ids).values("merchant_id"))
    return Dashboard(
        filters=filters, refresh=refresh, series=series, totals=totals, members=members, members_computed_at=members_at,
        # Points are spendable at every plaza: what members hold is the mall's figure.
        show_points_held=scope is None and filters.plaza is None and filters.merchant_id is None,
        campaigns=_campaigns(filters, scope),
        plazas=list(plazas.values_list("pk", "name")),
        merchants=list(merchants.values_list("pk", "name")[:MAX_MERCHANTS]),
        errors=errors or [],
    )


def _members(filters: Filters) -> tuple[dict[str, int], datetime | None]:
    rows = DashboardMembers.objects.all()
    if filters.plaza_ids is not None:
        rows = rows.filter(plaza_id__in=filters.plaza_ids)
    sizes = {segment: 0 for segment in [*Segment.values, ""]}
    members = {"total": 0, "active_30d": 0, "high_value": 0}
    computed_at = None
    for row in rows.values("segment").annotate(
        n=Sum("members"), high_value=Sum("high_value_members"), active=Sum("active_30d"), at=Max("computed_at"),
    ).order_by():
        sizes[row["segment"]] = sizes.get(row["segment"], 0) + row["n"]
        members["total"] += row["n"]
        members["active_30d"] += row["active"]
        members["high_value"] += row["high_value"]
        computed_at = max(filter(None, [computed_at, row["at"]]), default=None)
    members["lapsed"] = sizes[Segment.LAPSED]
    members["sizes"] = sizes
    return members, computed_at


def _campaigns(filters: Filters, scope: list[int] | None) -> list[DashboardCampaign]:
    rows = DashboardCampaign.objects.select_related("campaign")
    if filters.merchant_id is not None:
        rows = rows.filter(campaign__merchant_id=filters.merchant_id)
    if scope is not None or filters.plaza is not None:
        # A plaza's campaigns: those aimed at the members who last came there.
        rows = rows.filter(campaign__plaza_id__in=filters.plaza_ids or [])
    return list(rows.order_by("-campaign__starts_at", "-campaign_id")[:CAMPAIGNS_SHOWN])


# --- the CSV export ---------------------------------------------------------------

CSV_COLUMNS = [
    ("day", gettext_lazy("day")),
    ("members_new", gettext_lazy("new members")),
    ("members_active", gettext_lazy("active members")),
    ("checkins", gettext_lazy("check-ins")),
    ("visits", gettext_lazy("visits")),
    ("customers", gettext_lazy("customers")),
    ("sales_count", gettext_lazy("sales")),
    ("sales_fen", gettext_lazy("sales (fen)")),
    ("refunds_fen", gettext_lazy("refunds (fen)")),
    ("points_issued", gettext_lazy("points issued")),
    ("points_redeemed", gettext_lazy("points redeemed")),
    ("points_expired", gettext_lazy("points expired")),
    ("points_taken_back", gettext_lazy("points taken back")),
]


def dashboard_csv_rows(*, filters: Filters) -> list[list]:
    """The daily series as CSV rows, a header first; money in fen, as stored."""
    rows = [[str(label) for _, label in CSV_COLUMNS]]
    for day in dashboard_series(filters=filters):
        rows.append([day["day"].isoformat() if name == "day" else day[name] for name, _ in CSV_COLUMNS])
    return rows
