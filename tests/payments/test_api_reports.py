"""GET /api/v1/reports/daily/ and /api/v1/settlements/: a merchant's numbers."""

from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.test import Client

from tests.factories import make_member
from tests.payments.conftest import Api, assert_error

pytestmark = pytest.mark.django_db

DAILY = "/api/v1/reports/daily/"
SETTLEMENTS = "/api/v1/settlements/"
MALL = ZoneInfo("Asia/Shanghai")  # settings.TIME_ZONE: days are the mall's local days


@contextmanager
def at(year, month, day, hour, minute=0):
    """Run what follows at a given local time of the mall."""
    with time_machine.travel(datetime(year, month, day, hour, minute, tzinfo=MALL), tick=False):
        yield


def buy(shop, member, amount_fen):
    response = shop.api.purchase(store_code=shop.store.code, amount_fen=amount_fen, member=member)
    assert response.status_code == 201, response.content
    return response.json()


@pytest.fixture
def busy_day(shop):
    """2026-03-10: 3 purchases by 2 members, one refunded in full, one redemption."""
    ann, bob = make_member(), make_member()
    with at(2026, 3, 10, 10):
        buy(shop, ann, 10_000)  # 100 points
        refunded = buy(shop, ann, 5_000)  # 50 points
        buy(shop, bob, 6_000)  # 60 points
    with at(2026, 3, 10, 15):
        assert shop.api.refund_purchase(refunded["id"], 5_000).status_code == 201  # 50 points back
    with at(2026, 3, 10, 16):
        assert shop.api.redeem(store_code=shop.store.code, points=30, member=bob).status_code == 201
    return shop


def test_daily_report_has_one_row_per_day_with_the_day_figures(busy_day):
    response = busy_day.api.get(DAILY, {"from": "2026-03-09", "to": "2026-03-11"})

    assert response.status_code == 200
    rows = response.json()
    assert [row["day"] for row in rows] == ["2026-03-09", "2026-03-10", "2026-03-11"]
    assert rows[1] == {
        "day": "2026-03-10",
        "customers": 2,
        "transactions": 3,
        "sales_fen": 21_000,
        "refunds_fen": 5_000,
        "average_ticket_fen": 7_000,
        "frequency": "1.50",
        "points_funded": 160,  # 210 issued, 50 taken back by the refund
        "points_accepted": 30,
    }
    quiet = {"customers": 0, "transactions": 0, "sales_fen": 0, "refunds_fen": 0, "average_ticket_fen": 0,
             "frequency": "0.00", "points_funded": 0, "points_accepted": 0}
    assert rows[0] == {"day": "2026-03-09", **quiet}
    assert rows[2] == {"day": "2026-03-11", **quiet}


def test_daily_sales_are_customers_times_ticket_times_frequency(shop):
    ann, bob, cat = make_member(), make_member(), make_member()
    with at(2026, 3, 10, 12):
        for member, amount in [(ann, 1_000), (ann, 1_001), (bob, 2_999), (bob, 10), (cat, 777)]:
            buy(shop, member, amount)

    row = shop.api.get(DAILY, {"from": "2026-03-10", "to": "2026-03-10"}).json()[0]

    assert (row["customers"], row["transactions"], row["sales_fen"]) == (3, 5, 5_787)
    assert row["average_ticket_fen"] == 5_787 // 5
    assert row["frequency"] == "1.67"
    customers, ticket = row["customers"], row["average_ticket_fen"]
    estimate = customers * ticket * Decimal(row["frequency"])
    # Rounding: the ticket is floored to the fen (< 1 fen a transaction), the frequency rounded to 2 decimals.
    assert abs(estimate - row["sales_fen"]) <= customers * ticket * Decimal("0.005") + row["transactions"]


def test_daily_report_splits_days_at_local_midnight(shop):
    ann = make_member()
    with at(2026, 3, 10, 23, 30):  # 15:30 UTC on the 10th
        buy(shop, ann, 1_000)
    with at(2026, 3, 11, 0, 30):  # 16:30 UTC, still the 10th in UTC
        buy(shop, ann, 2_000)

    rows = shop.api.get(DAILY, {"from": "2026-03-10", "to": "2026-03-11"}).json()

    assert [(r["day"], r["transactions"], r["sales_fen"]) for r in rows] == [("2026-03-10", 1, 1_000), ("2026-03-11", 1, 2_000)]


def test_daily_report_of_92_days_is_allowed(shop):
    response = shop.api.get(DAILY, {"from": "2026-01-01", "to": "2026-04-02"})

    assert response.status_code == 200
    assert len(response.json()) == 92


@pytest.mark.parametrize(
    ("params", "field", "code"),
    [
        ({"to": "2026-03-10"}, "from", "required"),
        ({"from": "2026-03-10"}, "to", "required"),
        ({"from": "2026-03-10", "to": "tomorrow"}, "to", "invalid"),
        ({"from": "2026-02-30", "to": "2026-03-10"}, "from", "invalid"),
        ({"from": "10/03/2026", "to": "2026-03-10"}, "from", "invalid"),
    ],
)
def test_daily_report_refuses_missing_or_malformed_dates(api, params, field, code):
    response = api.get(DAILY, params)

    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"
    assert response.json()["errors"][field][0]["code"] == code


@pytest.mark.parametrize(("first", "last"), [("2026-03-10", "2026-03-09"), ("2026-01-01", "2026-04-03")])
def test_daily_report_refuses_a_backwards_or_too_long_period(api, first, last):
    response = api.get(DAILY, {"from": first, "to": last})

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_period"


@pytest.mark.parametrize(
    ("first", "last"),
    [("9999-12-31", "9999-12-31"), ("0001-01-01", "0001-01-02"), ("1999-12-31", "2000-01-01"), ("2999-12-31", "3000-01-01")],
)
def test_daily_report_outside_the_ledger_years_is_400_not_a_server_error(shop, first, last):
    api = Api(shop.raw_key, client=Client(raise_request_exception=False))

    response = api.get(DAILY, {"from": first, "to": last})

    assert_error(response, 400, "invalid_period")


def test_daily_report_of_the_last_supported_day_is_served(api):
    response = api.get(DAILY, {"from": "2999-12-31", "to": "2999-12-31"})

    assert response.status_code == 200
    assert response.json()[0]["day"] == "2999-12-31"


# --- settlements ------------------------------------------------------------------------


def test_settlement_states_funded_accepted_and_net(busy_day):
    response = busy_day.api.get(SETTLEMENTS, {"period": "2026-03"})

    assert response.status_code == 200
    assert response.json() == {
        "period": "2026-03",
        "funded_points": 160,
        "accepted_points": 30,
        "funded_fen": 160,
        "accepted_fen": 30,
        "net_fen": -130,  # the merchant pays the pool
        # No QR orders this month: nothing collected on the merchant's behalf.
        "collected_fen": 0,
        "refunded_fen": 0,
        "payments_due_fen": 0,
        # No coupons: nothing the mall owes for its coupons' discounts.
        "coupons_mall_funded_fen": 0,
        "coupons_merchant_funded_fen": 0,
        "total_due_fen": -130,
    }


def test_settlement_takes_months_in_local_time(shop):
    ann = make_member()
    with at(2026, 3, 31, 23, 30):  # March in the mall (15:30 UTC)
        buy(shop, ann, 10_000)
    with at(2026, 4, 1, 0, 30):  # April in the mall, still March 31st in UTC
        buy(shop, ann, 20_000)

    march = shop.api.get(SETTLEMENTS, {"period": "2026-03"}).json()
    april = shop.api.get(SETTLEMENTS, {"period": "2026-04"}).json()

    assert march["funded_points"] == 100
    assert april["funded_points"] == 200


def test_settlement_of_a_quiet_month_is_zero(busy_day):
    assert busy_day.api.get(SETTLEMENTS, {"period": "2026-02"}).json()["net_fen"] == 0


@pytest.mark.parametrize("period", ["", "2026-13", "2026-00", "2026-1", "26-03", "2026-03-01", "abcd-ef", "1999-12", "2026/03"])
def test_settlement_refuses_a_malformed_period(api, period):
    response = api.get(SETTLEMENTS, {"period": period})

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_period"


def test_settlement_without_a_period_is_refused(api):
    response = api.get(SETTLEMENTS)

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_period"


@pytest.mark.parametrize("period", ["2026-+1", "+2026-1", "2026- 1", "٢٠٢٦-٠٣"])
def test_settlement_period_is_four_and_two_ascii_digits(api, period):
    response = api.get(SETTLEMENTS, {"period": period})

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_period"


@pytest.mark.parametrize("period", ["9999-12", "3000-01"])
def test_settlement_beyond_the_ledger_years_is_400_not_a_server_error(shop, period):
    api = Api(shop.raw_key, client=Client(raise_request_exception=False))

    response = api.get(SETTLEMENTS, {"period": period})

    assert_error(response, 400, "invalid_period")


@pytest.mark.parametrize("period", ["2000-01", "2999-12"])
def test_settlement_of_the_first_and_last_supported_months_is_served(api, period):
    response = api.get(SETTLEMENTS, {"period": period})

    assert response.status_code == 200
    assert response.json()["period"] == period
