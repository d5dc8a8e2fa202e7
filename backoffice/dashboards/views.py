"""The dashboards' entry points: the admin index's context and the CSV export.

Both validate the filters, call backoffice.dashboards.figures and render; the mall's
admin site (o2o_site.admin.MallAdminSite) wires them in.
"""

import csv

from django.http import HttpResponse, JsonResponse
from django.urls import reverse
from django.utils.http import urlencode
from django.utils.translation import gettext, gettext_lazy

from backoffice.dashboards import figures
from core.admin_fields import format_yuan
from core.errors import ApplicationError
from members.models import Segment

SEGMENT_LABELS = {
    Segment.LAPSED: gettext_lazy("lapsed"),
    Segment.LOYAL: gettext_lazy("loyal"),
    Segment.OCCASIONAL: gettext_lazy("occasional"),
    Segment.ONE_TIME: gettext_lazy("one-time"),
    Segment.POTENTIAL: gettext_lazy("potential"),
    "": gettext_lazy("not yet segmented"),
}


def dashboard_context(request, *, admin_site_name: str = "admin") -> dict:
    """What the admin index adds to its context: nothing for staff who may not see the
    figures; else the dashboard, with an error above it when a filter was refused (the
    page then shows the default filters)."""
    user = request.user
    if not figures.dashboard_visible(user):
        return {}
    errors = []
    try:
        filters = figures.filters_parse(user=user, params=request.GET)
    except ApplicationError as exc:
        errors.append(exc.message)
        try:  # the same days, without the plaza or merchant refused
            filters = figures.filters_parse(user=user, params={k: request.GET.get(k) for k in ("from", "to")})
        except ApplicationError:
            filters = figures.default_filters(user=user)
    dashboard = figures.dashboard_build(user=user, filters=filters, errors=errors)
    query = _query(filters)
    return {
        "dashboard": dashboard,
        "dashboard_cards": _cards(dashboard),
        "dashboard_segments": [
            {"segment": segment, "label": SEGMENT_LABELS[segment], "members": members}
            for segment, members in dashboard.members["sizes"].items()
        ],
        "dashboard_chart": _chart(dashboard),
        "dashboard_campaigns": [_campaign(row) for row in dashboard.campaigns],
        "dashboard_csv_url": (
            reverse(f"{admin_site_name}:dashboard_csv") + "?" + urlencode(query) if figures.dashboard_exportable(user) else ""
        ),
        "dashboard_refresh_every": figures.REFRESH_EVERY,
    }


def _query(filters: figures.Filters) -> dict:
    query = {"from": filters.first.isoformat(), "to": filters.last.isoformat()}
    if filters.plaza is not None:
        query["plaza"] = filters.plaza.pk
    if filters.merchant_id is not None:
        query["merchant"] = filters.merchant_id
    return query


def _cards(dashboard: figures.Dashboard) -> dict[str, list[dict]]:
    """The figures, in groups; each card a label, a value and how fresh it is."""
    totals, members, refresh = dashboard.totals, dashboard.members, dashboard.refresh
    period = gettext("in the period")
    as_of = refresh.finished_at if refresh else None
    groups = {"members": [], "visits": [], "sales": [], "points": []}
    if dashboard.filters.merchant_id is None:
        groups["members"] = [
            {"key": "members_total", "label": gettext("Members"), "value": members["total"], "as_of": dashboard.members_computed_at},
            {"key": "members_new", "label": gettext("New members"), "value": totals["members_new"], "note": period, "as_of": as_of},
            {"key": "members_active", "label": gettext("Active in 30 days"), "value": members["active_30d"],
             "as_of": dashboard.members_computed_at},
            {"key": "members_lapsed", "label": gettext("Lapsed"), "value": members["lapsed"], "as_of": dashboard.members_computed_at,
             "note": _segments_note(refresh)},
        ]
        groups["visits"] = [
            {"key": "checkins", "label": gettext("Check-ins"), "value": totals["checkins"], "note": period, "as_of": as_of},
            {"key": "visits", "label": gettext("Visits"), "value": totals["visits"], "note": period, "as_of": as_of},
        ]
    else:
        groups["visits"] = [
            {"key": "visits", "label": gettext("Visits"), "value": totals["visits"], "note": period, "as_of": as_of},
        ]
    sales_count, sales_fen = totals["sales_count"], totals["sales_fen"]
    groups["sales"] = [
        {"key": "sales_fen", "label": gettext("Sales through the programme"), "value": format_yuan(sales_fen), "note": period,
         "as_of": as_of},
        {"key": "sales_count", "label": gettext("Number of sales"), "value": sales_count, "note": period, "as_of": as_of},
        {"key": "average_ticket", "label": gettext("Average ticket"),
         "value": format_yuan(sales_fen // sales_count if sales_count else 0), "note": period, "as_of": as_of},
        {"key": "refunds_fen", "label": gettext("Refunds"), "value": format_yuan(totals["refunds_fen"]), "note": period,
         "as_of": as_of},
    ]
    groups["points"] = [
        {"key": "points_issued", "label": gettext("Points issued"), "value": totals["points_issued"], "note": period, "as_of": as_of},
        {"key": "points_redeemed", "label": gettext("Points redeemed"), "value": totals["points_redeemed"], "note": period,
         "as_of": as_of},
        {"key": "points_expired", "label": gettext("Points expired"), "value": totals["points_expired"], "note": period,
         "as_of": as_of},
    ]
    if dashboard.show_points_held and refresh is not None:
        groups["points"] += [
            {"key": "points_outstanding", "label": gettext("Points outstanding"),
             "value": refresh.points_spendable + refresh.points_pending,
             "note": gettext("%(pending)s of them pending") % {"pending": refresh.points_pending}, "as_of": as_of},
            {"key": "liability", "label": gettext("Outstanding liability"), "value": format_yuan(refresh.liability_fen),
             "note": gettext("mall-wide"), "as_of": as_of},
        ]
    return groups


def _campaign(row) -> dict:
    incremental = ""
    if row.incremental_comeback_bp is not None:
        incremental = gettext("%(value)s pp (95%% interval %(low)s to %(high)s)") % {
            "value": _points_of_percentage(row.incremental_comeback_bp),
            "low": _points_of_percentage(row.incremental_low_bp), "high": _points_of_percentage(row.incremental_high_bp),
        }
    return {
        "name": row.campaign.name, "treated": row.treated, "holdout": row.holdout, "redeemed": row.redeemed,
        "treated_came_back": row.treated_came_back, "holdout_came_back": row.holdout_came_back,
        "incremental": incremental, "computed_at": row.computed_at,
    }


def _points_of_percentage(bp: int) -> str:
    """Basis points of a share as signed points of percentage, one decimal: 123 → "+1.2"."""
    sign = "-" if bp < 0 else "+"
    tenths = (abs(bp) + 5) // 10
    return f"{sign}{tenths // 10}.{tenths % 10}"


def _segments_note(refresh) -> str:
    if refresh is None or refresh.segments_day is None:
        return gettext("segments not computed yet")
    return gettext("segments of the night of %(day)s") % {"day": refresh.segments_day.isoformat()}


def _chart(dashboard: figures.Dashboard) -> dict:
    """The series for dashboard.js (json_script): labels and datasets, already translated."""
    series = dashboard.series

    def values(name):
        return [day[name] for day in series]

    return {
        "labels": [day["day"].strftime("%m-%d") for day in series],
        "charts": [
            {"id": "chart-members", "kind": "line", "title": gettext("Members and visits"), "datasets": [
                {"label": gettext("New members"), "data": values("members_new")},
                {"label": gettext("Active members"), "data": values("members_active")},
                {"label": gettext("Check-ins"), "data": values("checkins")},
                {"label": gettext("Visits"), "data": values("visits")},
            ]},
            {"id": "chart-sales", "kind": "bar", "title": gettext("Sales through the programme (yuan)"), "datasets": [
                {"label": gettext("Sales"), "data": [day["sales_fen"] / 100 for day in series]},
                {"label": gettext("Refunds"), "data": [day["refunds_fen"] / 100 for day in series]},
            ]},
            {"id": "chart-points", "kind": "line", "title": gettext("Points"), "datasets": [
                {"label": gettext("Issued"), "data": values("points_issued")},
                {"label": gettext("Redeemed"), "data": values("points_redeemed")},
                {"label": gettext("Expired"), "data": values("points_expired")},
            ]},
        ],
    }


def dashboard_csv(request) -> HttpResponse:
    """The daily series of the filters as CSV (UTF-8 with a BOM, which Excel needs for Chinese)."""
    user = request.user
    if not figures.dashboard_exportable(user):
        error = figures.FilterNotAllowed(gettext("You may not export the dashboards."))
        return JsonResponse({"code": "dashboard_export_not_allowed", "message": error.message}, status=403)
    try:
        filters = figures.filters_parse(user=user, params=request.GET)
    except ApplicationError as exc:
        return JsonResponse(exc.as_dict(), status=exc.status)
    name = f"dashboard_{filters.first.isoformat()}_{filters.last.isoformat()}"
    if filters.plaza is not None:
        name += f"_plaza-{filters.plaza.code}"
    if filters.merchant_id is not None:
        name += f"_merchant-{filters.merchant_id}"
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{name}.csv"'
    response.write("\ufeff")
    csv.writer(response).writerows(figures.dashboard_csv_rows(filters=filters))
    return response
