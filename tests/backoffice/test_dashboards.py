"""The staff dashboards (backoffice.dashboards): the refresh against the ledger and the
sales, its idempotence, the admin index with data and without, its fixed number of
queries, plaza managers' scope, and the CSV export and who may take it."""

import csv
import importlib
import io
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.apps import apps
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.db import connection
from django.db.models import Q, Sum
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django_q.models import Schedule

from backoffice import tasks
from backoffice.dashboards import figures, refresh
from backoffice.models import DashboardDay, DashboardMembers, DashboardRefresh
from members import checkin, ledger, roles, services
from members.models import Account, Lot, Member, PointsTransaction, StaffPlaza, Store, Visit
from payments import services as sales
from payments.models import Purchase, PurchaseRefund

pytestmark = pytest.mark.django_db

SHANGHAI = ZoneInfo("Asia/Shanghai")
DAY1, DAY2 = date(2026, 3, 2), date(2026, 3, 3)
EVENING2 = datetime(2026, 3, 3, 21, 0, tzinfo=SHANGHAI)
INDEX = "/admin/"
CSV_URL = "/admin/dashboard.csv"
Level = DashboardDay.Level


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=SHANGHAI)


@pytest.fixture(autouse=True)
def _roles():
    # A transactional test elsewhere empties the groups the migrations made.
    assert roles.roles_sync() == []


class Mall:
    """Two plazas; a tea shop at A, noodles at B, a chain at both; three members."""

    def __init__(self):
        self.a = services.plaza_create(code="plaza-a", name="Plaza A")
        self.b = services.plaza_create(code="plaza-b", name="Plaza B")
        self.tea, self.tea_a, _, _ = services.merchant_create(name="Tea", plaza=self.a, store_code="tea-a")
        self.noodles, self.noodles_b, _, _ = services.merchant_create(name="Noodles", plaza=self.b, store_code="noodles-b")
        self.chain, self.chain_a, _, _ = services.merchant_create(name="Chain", plaza=self.a, store_code="chain-a")
        self.chain_b = Store.objects.create(merchant=self.chain, plaza=self.b, code="chain-b", name="Chain B")
        self.staff = User.objects.create_user("ops-adjuster", is_staff=True)

    def buy(self, store, member, amount_fen, key, when):
        return sales.purchase_record(
            merchant=store.merchant, store=store, member=member, amount_fen=amount_fen, idempotency_key=key, at=when, push=False,
        )


@pytest.fixture
def mall() -> Mall:
    """Two days of a small mall, each booked at its own time through the services."""
    with time_machine.travel(at(DAY1, 9), tick=False):
        mall = Mall()
        mall.m1 = services.member_create(join_channel=Member.Channel.WECHAT, plaza=mall.a)
        mall.m2 = services.member_create(join_channel=Member.Channel.WECHAT, plaza=mall.b)
        mall.m3 = services.member_create(join_channel=Member.Channel.POS)
    with time_machine.travel(at(DAY1, 10), tick=False):
        checkin.checkin(member=mall.m1, plaza=mall.a, push=False)
        checkin.checkin(member=mall.m2, plaza=mall.b, push=False)
        mall.tea_sale = mall.buy(mall.tea_a, mall.m1, 10_000, "d1-tea", at(DAY1, 10, 5))
        mall.buy(mall.noodles_b, mall.m2, 20_000, "d1-noodles", at(DAY1, 11))
        mall.buy(mall.chain_a, mall.m1, 5_000, "d1-chain", at(DAY1, 12))
        # Mall-funded, no store: counts for the whole mall only; expires on day 2.
        ledger.points_grant(member=mall.m3, points=100, reason="welcome", idempotency_key="d1-gift", expires_at=at(DAY2, 9))
    with time_machine.travel(at(DAY2, 10), tick=False):
        checkin.checkin(member=mall.m1, plaza=mall.a, push=False)
        mall.buy(mall.chain_b, mall.m2, 8_000, "d2-chain", at(DAY2, 10, 30))
        sales.purchase_refund(purchase=mall.tea_sale, amount_fen=5_000, idempotency_key="d2-refund", at=at(DAY2, 11))
        ledger.points_redeem(member=mall.m2, store=mall.noodles_b, points=50, idempotency_key="d2-redeem", at=at(DAY2, 12))
        services.visit_record(member=mall.m2, plaza=mall.b, store=mall.noodles_b, kind=Visit.Kind.REDEMPTION, at=at(DAY2, 12))
        ledger.points_adjust(member=mall.m2, points=-10, operator=mall.staff, reason="typo", idempotency_key="d2-adjust",
                             at=at(DAY2, 13))
        ledger.points_expire_lot(lot=Lot.objects.get(transaction__idempotency_key="d1-gift"), at=at(DAY2, 14))
    return mall


def refreshed(mall: Mall, **kwargs) -> refresh.RefreshSummary:
    with time_machine.travel(EVENING2, tick=False):
        return refresh.dashboards_refresh(at=EVENING2, **kwargs)


def row(level, day, plaza=None, merchant=None) -> DashboardDay:
    return DashboardDay.objects.get(level=level, day=day, plaza=plaza, merchant=merchant)


def snapshot() -> list[tuple]:
    return list(DashboardDay.objects.order_by("day", "level", "plaza_id", "merchant_id").values_list(
        "day", "level", "plaza_id", "merchant_id", *refresh.FIGURES))


# --- the refresh ------------------------------------------------------------------


def test_refresh_figures_equal_the_sales_and_the_ledger(mall):
    summary = refreshed(mall)

    assert summary.days == 2
    for day in (DAY1, DAY2):
        mall_row = row(Level.MALL, day)
        start, end = at(day, 0), at(day, 0) + timedelta(days=1)
        purchases = Purchase.objects.filter(created_at__gte=start, created_at__lt=end)
        assert mall_row.sales_count == purchases.count()
        assert mall_row.sales_fen == purchases.aggregate(s=Sum("amount_fen"))["s"]
        txns = PointsTransaction.objects.filter(created_at__gte=start, created_at__lt=end)
        assert mall_row.points_issued == (txns.filter(kind__in=["earn", "grant"]).aggregate(s=Sum("points"))["s"] or 0)
        assert mall_row.points_expired == -(txns.filter(kind="expire").aggregate(s=Sum("points"))["s"] or 0)
    assert row(Level.MALL, DAY2).refunds_fen == PurchaseRefund.objects.aggregate(s=Sum("amount_fen"))["s"] == 5_000

    day1 = row(Level.MALL, DAY1)
    assert (day1.members_new, day1.checkins, day1.visits, day1.members_active, day1.customers) == (3, 2, 5, 2, 2)
    assert (day1.sales_count, day1.sales_fen) == (3, 35_000)
    assert day1.points_issued == 100 + 100 + 200 + 50 + 10 + 10  # grant, three sales at 1 %, two check-ins
    day2 = row(Level.MALL, DAY2)
    assert (day2.points_redeemed, day2.points_expired, day2.points_taken_back) == (50, 100, 50 + 10)

    # A plaza: its own members, check-ins and stores; m1 bought twice there: one customer.
    a1 = row(Level.PLAZA, DAY1, plaza=mall.a)
    assert (a1.members_new, a1.checkins, a1.customers, a1.sales_count, a1.sales_fen) == (1, 1, 1, 2, 15_000)
    assert a1.points_issued == 150  # its stores' sales; check-in gifts have no store
    # A merchant at both plazas, and at each.
    assert row(Level.MERCHANT, DAY2, merchant=mall.chain).sales_fen == 8_000
    assert row(Level.PLAZA_MERCHANT, DAY2, plaza=mall.b, merchant=mall.chain).sales_fen == 8_000
    assert not DashboardDay.objects.filter(level=Level.PLAZA_MERCHANT, day=DAY2, plaza=mall.a, merchant=mall.chain).exists()
    assert row(Level.MERCHANT, DAY2, merchant=mall.noodles).points_redeemed == 50

    # Issued − redeemed − expired − taken back, over every day, is what members hold.
    wallets = Account.objects.filter(kind=Account.Kind.WALLET).aggregate(s=Sum("balance"))["s"]
    pending = Lot.objects.exclude(status=Lot.Status.AVAILABLE).aggregate(s=Sum("remaining"))["s"] or 0
    net = DashboardDay.objects.filter(level=Level.MALL).aggregate(
        s=Sum("points_issued") - Sum("points_redeemed") - Sum("points_expired") - Sum("points_taken_back"))["s"]
    assert net == wallets + pending
    done = summary.refresh
    assert (done.points_spendable, done.points_pending, done.liability_fen) == (wallets, pending, wallets + pending)
    assert done.finished_at == EVENING2 and (done.first_day, done.last_day) == (DAY1, DAY2)


def test_points_held_reads_the_rollup_and_the_entries_since(mall):
    before = refreshed(mall).refresh
    ledger.ledger_rollup(now=EVENING2 + timedelta(hours=1))
    with time_machine.travel(EVENING2 + timedelta(hours=2), tick=False):
        ledger.points_grant(member=mall.m1, points=7, reason="late", idempotency_key="late-gift")
    assert refresh.points_held() == (before.points_spendable + 7, before.points_pending)


def test_refresh_run_twice_writes_the_same_rows(mall):
    refreshed(mall)
    first = snapshot()
    refreshed(mall)
    assert snapshot() == first
    assert DashboardRefresh.objects.count() == 2
    assert DashboardMembers.objects.aggregate(s=Sum("members"))["s"] == 3


def test_refresh_of_recent_days_leaves_older_days_alone(mall):
    refreshed(mall)
    DashboardDay.objects.filter(level=Level.MALL, day=DAY1).update(sales_fen=1)
    refreshed(mall, days=1)
    assert row(Level.MALL, DAY1).sales_fen == 1  # not rewritten
    assert row(Level.MALL, DAY2).sales_fen == 8_000


def test_members_by_plaza_and_segment(mall):
    refreshed(mall)
    counts = {(r.plaza_id, r.segment): (r.members, r.active_30d) for r in DashboardMembers.objects.all()}
    # No nightly segments yet: everyone is "not yet segmented"; m3 came nowhere.
    assert counts == {(mall.a.pk, ""): (1, 1), (mall.b.pk, ""): (1, 1), (None, ""): (1, 0)}


def test_refresh_refuses_a_bad_number_of_days():
    with pytest.raises(refresh.InvalidDays) as caught:
        refresh.dashboards_refresh(days=0)
    assert caught.value.code == "invalid_days"


def test_command_backfills_every_day_with_a_progress_bar(mall):
    out = io.StringIO()
    with time_machine.travel(at(DAY2, 0) + timedelta(days=9), tick=False):
        call_command("dashboards_refresh", "--all", stdout=out)
    assert "dashboards: days: 11/11" in out.getvalue()
    assert set(DashboardDay.objects.filter(level=Level.MALL).values_list("day", flat=True)) == {DAY1, DAY2}


def test_task_and_schedule():
    importlib.import_module("backoffice.migrations.0004_dashboards_schedule").forwards(apps, None)
    schedule = Schedule.objects.get(func="backoffice.tasks.dashboards_refresh")
    assert schedule.schedule_type == Schedule.HOURLY
    assert tasks.dashboards_refresh() == 0
    assert DashboardRefresh.objects.count() == 1


# --- the admin index ----------------------------------------------------------------


def staff(username: str, *groups: str, plazas=()) -> Client:
    user = User.objects.create_user(username, is_staff=True)
    for name in groups:
        user.groups.add(Group.objects.get(name=name))
    for plaza in plazas:
        StaffPlaza.objects.create(user=user, plaza=plaza)
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def admin_client_en(admin_user) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


def test_index_without_figures_says_when_they_come(admin_client_en):
    response = admin_client_en.get(INDEX)
    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="dashboard"' in page
    assert "No figures yet" in page and "dashboards_refresh" in page
    assert 'data-figure="members_total"' in page
    assert 'id="dashboard-data"' in page and "chart.umd.min.js" in page
    assert "Authentication and Authorization" in page  # the model list is still there


def test_index_with_figures_shows_them_with_their_freshness(admin_client_en, mall):
    refreshed(mall)
    with time_machine.travel(EVENING2 + timedelta(minutes=5), tick=False):
        response = admin_client_en.get(INDEX, {"from": "2026-03-01", "to": "2026-03-03"})
    assert response.status_code == 200
    dashboard = response.context["dashboard"]
    assert [day["sales_fen"] for day in dashboard.series] == [0, 35_000, 8_000]
    cards = {card["key"]: card for group in response.context["dashboard_cards"].values() for card in group}
    assert cards["sales_fen"]["value"] == "¥430.00"
    assert cards["members_total"]["value"] == 3
    assert cards["points_outstanding"]["value"] == dashboard.refresh.points_spendable + dashboard.refresh.points_pending
    assert cards["sales_fen"]["as_of"] == EVENING2
    page = response.content.decode()
    assert "Figures as of 2026-03-03 21:00" in page
    assert "every hour" in page


def test_index_queries_do_not_grow_with_the_data(admin_client_en, mall, django_assert_max_num_queries):
    refreshed(mall)
    with django_assert_max_num_queries(12):
        small = admin_client_en.get(INDEX, {"from": "2026-03-02", "to": "2026-03-02"})
    assert small.status_code == 200
    # A year of figures for every level: the same reads.
    DashboardDay.objects.bulk_create(
        DashboardDay(day=DAY1 - timedelta(days=n), level=level, plaza=plaza, merchant=merchant, sales_fen=n,
                     computed_at=EVENING2)
        for n in range(1, 365)
        for level, plaza, merchant in [(Level.MALL, None, None), (Level.PLAZA, mall.a, None), (Level.MERCHANT, None, mall.tea),
                                       (Level.PLAZA_MERCHANT, mall.a, mall.tea)]
    )
    with django_assert_max_num_queries(12):
        big = admin_client_en.get(INDEX, {"from": "2025-03-04", "to": "2026-03-03"})
    assert big.status_code == 200
    assert len(big.context["dashboard"].series) == 365
    with CaptureQueriesContext(connection) as small_filtered:
        admin_client_en.get(INDEX, {"from": "2026-03-02", "to": "2026-03-02", "plaza": mall.a.pk, "merchant": mall.tea.pk})
    with CaptureQueriesContext(connection) as big_filtered:
        admin_client_en.get(INDEX, {"from": "2025-03-04", "to": "2026-03-03", "plaza": mall.a.pk, "merchant": mall.tea.pk})
    assert len(big_filtered) == len(small_filtered) <= 12


def test_plaza_manager_sees_only_their_plaza(mall):
    refreshed(mall)
    client = staff("manager-a", roles.PLAZA_MANAGER, plazas=[mall.a])
    response = client.get(INDEX, {"from": "2026-03-02", "to": "2026-03-03"})
    dashboard = response.context["dashboard"]
    assert [day["sales_fen"] for day in dashboard.series] == [15_000, 0]
    assert dashboard.plazas == [(mall.a.pk, "Plaza A")]
    assert {name for _, name in dashboard.merchants} == {"Tea", "Chain"}
    assert dashboard.members["total"] == 1
    cards = {card["key"] for group in response.context["dashboard_cards"].values() for card in group}
    assert "liability" not in cards and "points_outstanding" not in cards
    assert response.context["dashboard_csv_url"] == ""  # exports are finance's and operators'

    # Another plaza, or a merchant only there, is refused: the page shows their own figures.
    for params in ({"plaza": mall.b.pk}, {"merchant": mall.noodles.pk}):
        refused = client.get(INDEX, {"from": "2026-03-02", "to": "2026-03-03", **params})
        assert refused.status_code == 200
        assert refused.context["dashboard"].errors
        assert [day["sales_fen"] for day in refused.context["dashboard"].series] == [15_000, 0]

    # The chain, at their plaza only.
    chain = client.get(INDEX, {"from": "2026-03-02", "to": "2026-03-03", "merchant": mall.chain.pk})
    assert [day["sales_fen"] for day in chain.context["dashboard"].series] == [5_000, 0]


def test_plaza_manager_index_queries_are_bounded(mall, django_assert_max_num_queries):
    refreshed(mall)
    client = staff("manager-ab", roles.PLAZA_MANAGER, plazas=[mall.a, mall.b])
    with django_assert_max_num_queries(16):
        response = client.get(INDEX, {"from": "2025-03-04", "to": "2026-03-03", "merchant": mall.chain.pk})
    assert sum(day["sales_fen"] for day in response.context["dashboard"].series) == 13_000


def test_plaza_manager_without_plazas_sees_nothing(mall):
    refreshed(mall)
    response = staff("manager-none", roles.PLAZA_MANAGER).get(INDEX)
    assert response.context["dashboard"].plazas == []
    assert sum(day["sales_fen"] for day in response.context["dashboard"].series) == 0
    assert response.context["dashboard"].members["total"] == 0


def test_staff_without_the_dashboard_see_the_model_list_only(mall):
    refreshed(mall)
    response = staff("cs", roles.CUSTOMER_SERVICE).get(INDEX)
    assert response.status_code == 200
    assert "dashboard" not in response.context
    assert 'id="dashboard"' not in response.content.decode()


# --- the CSV export -------------------------------------------------------------------


def read_csv(response) -> list[list[str]]:
    assert response["Content-Type"].startswith("text/csv")
    return list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))


def test_finance_exports_the_daily_series(mall):
    refreshed(mall)
    client = staff("finance", roles.FINANCE)
    index = client.get(INDEX, {"from": "2026-03-02", "to": "2026-03-03", "plaza": mall.b.pk})
    assert index.context["dashboard_csv_url"] == reverse("admin:dashboard_csv") + f"?from=2026-03-02&to=2026-03-03&plaza={mall.b.pk}"

    response = client.get(index.context["dashboard_csv_url"])
    assert response.status_code == 200
    assert 'filename="dashboard_2026-03-02_2026-03-03_plaza-plaza-b.csv"' in response["Content-Disposition"]
    rows = read_csv(response)
    header = rows[0]
    assert header[:3] == ["day", "new members", "active members"]
    by_day = {r[0]: dict(zip(header, r)) for r in rows[1:]}
    assert list(by_day) == ["2026-03-02", "2026-03-03"]
    assert by_day["2026-03-02"]["sales (fen)"] == "20000" and by_day["2026-03-03"]["sales (fen)"] == "8000"
    assert by_day["2026-03-03"]["points redeemed"] == "50"


def test_operator_exports_a_merchant(mall):
    refreshed(mall)
    response = staff("operator", roles.OPERATOR).get(CSV_URL, {"from": "2026-03-02", "to": "2026-03-03", "merchant": mall.chain.pk})
    rows = read_csv(response)
    assert [r[7] for r in rows[1:]] == ["5000", "8000"]


@pytest.mark.parametrize("role", [roles.PLAZA_MANAGER, roles.CUSTOMER_SERVICE, roles.MERCHANT_MANAGER])
def test_export_refused_to_other_roles(mall, role):
    refreshed(mall)
    response = staff(f"user-{role[:2]}", role, plazas=[mall.a]).get(CSV_URL)
    assert response.status_code == 403
    assert response.json()["code"] == "dashboard_export_not_allowed"


def test_export_refused_to_anonymous():
    response = Client().get(CSV_URL)
    assert response.status_code == 302 and "/login/" in response["Location"]


@pytest.mark.parametrize("params, code", [
    ({"from": "yesterday"}, "invalid_dashboard_filter"),
    ({"from": "2026-03-03", "to": "2026-03-01"}, "invalid_dashboard_filter"),
    ({"from": "2024-01-01", "to": "2026-03-01"}, "invalid_dashboard_filter"),
    ({"plaza": "１"}, "invalid_dashboard_filter"),
    ({"plaza": "999999"}, "invalid_dashboard_filter"),
    ({"merchant": "999999"}, "dashboard_filter_not_allowed"),
])
def test_export_bad_filters_answer_a_clear_error(admin_client_en, params, code):
    response = admin_client_en.get(CSV_URL, params)
    assert response.status_code in (400, 403)
    assert response.json()["code"] == code


def test_filters_default_to_the_last_30_days(admin_user):
    filters = figures.filters_parse(user=admin_user, params={}, today=DAY2)
    assert (filters.first, filters.last, filters.plaza_ids) == (DAY2 - timedelta(days=29), DAY2, None)


def test_members_seen_nowhere_count_for_the_mall_only(mall):
    refreshed(mall)
    assert DashboardMembers.objects.filter(Q(plaza__isnull=True)).get().members == 1
