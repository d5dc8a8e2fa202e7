"""GET /api/v1/purchases/, /redemptions/, /purchase-refunds/, /redemption-refunds/ and
/order-refunds/: a merchant's own rows of a period of local days, paged, for reconciliation."""

import uuid
from contextlib import contextmanager
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from members.models import Store
from payments.gateways import sandbox
from tests.factories import make_member
from tests.payments.conftest import Api, assert_error, grant
from tests.payments.orders_support import Shopper

pytestmark = pytest.mark.django_db

PURCHASES = "/api/v1/purchases/"
REDEMPTIONS = "/api/v1/redemptions/"
PURCHASE_REFUNDS = "/api/v1/purchase-refunds/"
REDEMPTION_REFUNDS = "/api/v1/redemption-refunds/"
ORDER_REFUNDS = "/api/v1/order-refunds/"
LISTS = [PURCHASES, REDEMPTIONS, PURCHASE_REFUNDS, REDEMPTION_REFUNDS, ORDER_REFUNDS]
MALL = ZoneInfo("Asia/Shanghai")  # settings.TIME_ZONE: days are the mall's local days
DAY = {"from": "2026-03-10", "to": "2026-03-10"}


@contextmanager
def at(year, month, day, hour, minute=0, second=0):
    with time_machine.travel(datetime(year, month, day, hour, minute, second, tzinfo=MALL), tick=False):
        yield


def buy(shop, member, amount_fen, store=None) -> dict:
    response = shop.api.purchase(store_code=(store or shop.store).code, amount_fen=amount_fen, member=member)
    assert response.status_code == 201, response.content
    return response.json()


def spend(shop, member, points) -> dict:
    response = shop.api.redeem(store_code=shop.store.code, points=points, member=member)
    assert response.status_code == 201, response.content
    return response.json()


def every_row(api: Api, path: str, params: dict, *, limit: int = 100) -> list[dict]:
    rows, cursor = [], None
    while True:
        page = api.get(path, {**params, "limit": limit, **({"cursor": cursor} if cursor else {})})
        assert page.status_code == 200, page.content
        rows += page.json()["results"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return rows


@pytest.fixture
def sandbox_on(settings):
    settings.O2O_SANDBOX = True


def paid_order(shop, member, amount_fen: int) -> str:
    out_trade_no = Shopper(member).order(store_code=shop.store.code, amount_fen=amount_fen).json()["out_trade_no"]
    headers, body = sandbox.trade_pay(out_trade_no=out_trade_no)
    notified = Api(None).client.post("/payments/notify/sandbox/", data=body, content_type="application/json", headers=headers)
    assert notified.status_code == 200
    return out_trade_no


@pytest.fixture
def busy_day(shop, sandbox_on):
    """2026-03-10 at shop: 3 purchases by 2 members, one refunded in part, 2 redemptions, one given back in part,
    an order paid and refunded; the day before and after, a purchase each."""
    ann, bob = make_member(phone="13800138000", nickname="Ann"), make_member()
    grant(bob, 1_000)
    with at(2026, 3, 9, 23, 59, 59):
        buy(shop, ann, 999)
    with at(2026, 3, 10, 0, 0, 0):
        first = buy(shop, ann, 10_000)
    with at(2026, 3, 10, 10):
        buy(shop, ann, 5_000)
        buy(shop, bob, 6_000)
        taken = spend(shop, bob, 300)
        spend(shop, bob, 40)
    with at(2026, 3, 10, 15):
        assert shop.api.refund_purchase(first["id"], 2_500).status_code == 201
        assert shop.api.refund_redemption(taken["id"], 100).status_code == 201
        out_trade_no = paid_order(shop, ann, 8_000)
        refunded = shop.api.post(f"/api/v1/orders/{out_trade_no}/refunds/", {"amount_fen": 3_000})
        assert refunded.status_code == 201, refunded.content
    with at(2026, 3, 11, 0, 0, 0):
        buy(shop, bob, 777)
    return shop


# --- what is listed -----------------------------------------------------------------------------


def test_purchases_of_a_day_are_listed_oldest_first_as_their_detail_shows_them(busy_day):
    response = busy_day.api.get(PURCHASES, DAY)

    assert response.status_code == 200
    body = response.json()
    assert body["next_cursor"] is None
    assert [row["amount_fen"] for row in body["results"]] == [10_000, 5_000, 6_000]
    for row in body["results"]:
        assert row == busy_day.api.get(f"{PURCHASES}{row['id']}/").json()
        assert row["points_balance"] is None


def test_rows_never_name_the_shopper_beyond_the_member_number(busy_day):
    for path in LISTS:
        text = busy_day.api.get(path, DAY).content.decode()
        assert "13800138000" not in text and "Ann" not in text and "phone" not in text and "nickname" not in text, path


def test_refunds_and_redemptions_of_a_day_are_listed_by_kind(busy_day):
    redemptions = busy_day.api.get(REDEMPTIONS, DAY).json()["results"]
    purchase_refunds = busy_day.api.get(PURCHASE_REFUNDS, DAY).json()["results"]
    redemption_refunds = busy_day.api.get(REDEMPTION_REFUNDS, DAY).json()["results"]
    order_refunds = busy_day.api.get(ORDER_REFUNDS, DAY).json()["results"]

    assert [(r["points"], r["returned_points"]) for r in redemptions] == [(300, 100), (40, 0)]
    assert [(r["amount_fen"], r["points_reversed"], r["shortfall_points"], r["store_code"]) for r in purchase_refunds] == [
        (2_500, 25, 0, busy_day.store.code)]
    assert [(r["redemption_id"], r["points"]) for r in redemption_refunds] == [(redemptions[0]["id"], 100)]
    assert [(r["kind"], r["status"], r["amount_fen"], r["store_code"]) for r in order_refunds] == [
        ("requested", "succeeded", 3_000, busy_day.store.code)]
    assert order_refunds[0]["finished_at"] is not None


def test_the_lists_add_up_to_the_daily_report_of_the_same_day(busy_day):
    report = busy_day.api.get("/api/v1/reports/daily/", DAY).json()[0]
    purchases = every_row(busy_day.api, PURCHASES, DAY, limit=2)
    redemptions = every_row(busy_day.api, REDEMPTIONS, DAY, limit=1)
    purchase_refunds = every_row(busy_day.api, PURCHASE_REFUNDS, DAY, limit=1)
    redemption_refunds = every_row(busy_day.api, REDEMPTION_REFUNDS, DAY, limit=1)

    assert sum(p["amount_fen"] for p in purchases) == report["sales_fen"] == 21_000
    assert len(purchases) == report["transactions"]
    assert len({p["member_no"] for p in purchases}) == report["customers"]
    assert sum(r["amount_fen"] for r in purchase_refunds) == report["refunds_fen"]
    # Sales booked by member number earn the merchant's points only: what it funded, less what refunds took back
    # (the paid order earned too, and its refund took its share back).
    order_points = 80 - 30
    assert sum(p["points_earned"] for p in purchases) - sum(r["points_reversed"] for r in purchase_refunds) + order_points == report["points_funded"]
    assert sum(r["points"] for r in redemptions) - sum(r["points"] for r in redemption_refunds) == report["points_accepted"]


# --- days, periods, stores --------------------------------------------------------------------


def test_days_are_the_malls_local_days(busy_day):
    def amounts(first, last):
        return [row["amount_fen"] for row in busy_day.api.get(PURCHASES, {"from": first, "to": last}).json()["results"]]

    assert amounts("2026-03-09", "2026-03-09") == [999]  # 23:59:59 local, 15:59:59 UTC
    assert amounts("2026-03-11", "2026-03-11") == [777]  # 00:00 local, still the 10th in UTC
    assert amounts("2026-03-09", "2026-03-11") == [999, 10_000, 5_000, 6_000, 777]
    assert amounts("2026-03-12", "2026-06-11") == []  # 92 days


@pytest.mark.parametrize("params", [
    {},
    {"from": "2026-03-10"},
    {"to": "2026-03-10"},
    {"from": "", "to": "2026-03-10"},
    {"from": "2026-3-10", "to": "2026-03-10"},
    {"from": "20260310", "to": "2026-03-10"},
    {"from": "2026-02-30", "to": "2026-03-10"},
    {"from": "２０２６-03-10", "to": "2026-03-10"},
    {"from": "2026-03-10T00:00", "to": "2026-03-10"},
    {"from": "2026-03-11", "to": "2026-03-10"},
    {"from": "2026-01-01", "to": "2026-04-03"},  # 92 days and one
    {"from": "1999-12-31", "to": "2000-01-01"},
    {"from": "9999-12-31", "to": "9999-12-31"},
])
@pytest.mark.parametrize("path", LISTS)
def test_a_bad_period_is_refused_with_invalid_period(shop, path, params):
    assert_error(shop.api.get(path, params), 400, "invalid_period")


@pytest.mark.parametrize("params, code", [
    ({"cursor": "not-a-cursor"}, "invalid_cursor"),
    ({"cursor": "1-9223372036854775808"}, "invalid_cursor"),
    ({"cursor": "999999999999999999-1"}, "invalid_cursor"),
    ({"limit": 0}, "validation_error"),
    ({"limit": 101}, "validation_error"),
    ({"store_code": ""}, "validation_error"),
    ({"limit": ""}, "validation_error"),
    ({"store_code": "x" * 33}, "validation_error"),
])
def test_bad_paging_or_store_parameters_are_refused_with_their_code(shop, params, code):
    assert_error(shop.api.get(PURCHASES, {**DAY, **params}), 400, code)


def test_the_store_filter_lists_only_that_store(busy_day):
    second = Store.objects.create(merchant=busy_day.merchant, plaza=busy_day.plaza, code=f"s2-{uuid.uuid4().hex[:8]}", name="Two")
    with at(2026, 3, 10, 20):
        buy(busy_day, make_member(), 1_234, store=second)

    there = busy_day.api.get(PURCHASES, {**DAY, "store_code": second.code}).json()["results"]
    here = busy_day.api.get(PURCHASES, {**DAY, "store_code": busy_day.store.code}).json()["results"]

    assert [row["amount_fen"] for row in there] == [1_234]
    assert [row["amount_fen"] for row in here] == [10_000, 5_000, 6_000]
    assert busy_day.api.get(PURCHASE_REFUNDS, {**DAY, "store_code": second.code}).json()["results"] == []


# --- another merchant ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", LISTS)
def test_another_merchants_rows_never_appear_and_its_store_is_not_found(busy_day, other_shop, path):
    mine = busy_day.api.get(path, DAY).json()["results"]
    assert mine  # the busy day has a row of every kind

    theirs = other_shop.api.get(path, DAY)
    assert theirs.status_code == 200
    assert theirs.json() == {"results": [], "next_cursor": None}
    # A cursor taken from the other merchant's list shows nothing of theirs either.
    page = busy_day.api.get(path, {**DAY, "limit": 1})
    assert other_shop.api.get(path, {**DAY, "cursor": page.json()["next_cursor"] or ""}).json()["results"] == []
    assert_error(other_shop.api.get(path, {**DAY, "store_code": busy_day.store.code}), 404, "store_not_found")


@pytest.mark.parametrize("path", LISTS)
def test_the_lists_need_a_valid_key(shop, path):
    assert_error(Api(None).get(path, DAY), 401, "not_authenticated")
    assert_error(Api("sk_forged").get(path, DAY), 401, "invalid_api_key")


# --- paging -------------------------------------------------------------------------------------


def test_pages_stay_stable_when_sales_are_booked_between_calls(shop):
    member = make_member()
    with at(2026, 3, 10, 9):
        booked = [buy(shop, member, 100 + n)["id"] for n in range(5)]
    seen, cursor, hour = [], None, 10
    while True:
        page = shop.api.get(PURCHASES, {**DAY, "limit": 2, **({"cursor": cursor} if cursor else {})}).json()
        seen += [row["id"] for row in page["results"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        with at(2026, 3, 10, hour):  # a sale at the till while the back office pages
            booked.append(buy(shop, member, 1_000 + hour)["id"])
        hour += 1

    assert len(seen) == len(set(seen))
    assert seen == booked  # every sale once, in the order booked, the new ones on later pages


def test_rows_booked_in_the_same_microsecond_are_paged_by_id(shop):
    member = make_member()
    with at(2026, 3, 10, 9):
        booked = [buy(shop, member, 100 + n)["id"] for n in range(5)]

    assert [row["id"] for row in every_row(shop.api, PURCHASES, DAY, limit=2)] == booked


def test_a_page_costs_the_same_queries_whatever_its_size(shop, django_assert_max_num_queries):
    members = [make_member() for _ in range(3)]
    with at(2026, 3, 10, 9):
        for n in range(30):
            buy(shop, members[n % 3], 100 + n)
    shop.api.get(PURCHASES, DAY)  # warm the key's caches as a POS would have

    counts = {}
    for limit in (2, 30):
        with CaptureQueriesContext(connection) as queries:
            assert len(shop.api.get(PURCHASES, {**DAY, "limit": limit, "store_code": shop.store.code}).json()["results"]) == limit
        counts[limit] = len(queries)

    assert counts[2] == counts[30]
    with django_assert_max_num_queries(counts[2]):
        shop.api.get(REDEMPTIONS, {**DAY, "limit": 100, "store_code": shop.store.code})
