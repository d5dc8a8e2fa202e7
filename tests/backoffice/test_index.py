"""The back office's landing page: the merchant API's daily report and this month's settlement."""

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.test import Client
from django.urls import reverse

from backoffice import services
from core.admin_fields import format_yuan
from tests.backoffice.conftest import PASSWORD, build_tenant
from tests.factories import make_member
from tests.payments.conftest import build_shop

pytestmark = pytest.mark.django_db
MALL = ZoneInfo("Asia/Shanghai")


def test_the_index_shows_the_same_daily_figures_as_the_api(settings):
    with time_machine.travel(datetime(2026, 3, 10, 11, tzinfo=MALL), tick=False):
        tenant = build_tenant("Alpha")
        other = make_member()
        assert tenant.shop.api.purchase(store_code=tenant.shop.store.code, amount_fen=3_333, member=other).status_code == 201
    with time_machine.travel(datetime(2026, 3, 20, 9, tzinfo=MALL), tick=False):
        response = tenant.client.get(reverse("merchant:index"))
        api = tenant.shop.api.get("/api/v1/reports/daily/", {"from": "2026-02-19", "to": "2026-03-20"}).json()

    assert response.status_code == 200
    daily = response.context["daily"]
    assert [row["day"].isoformat() for row in daily] == [row["day"] for row in reversed(api)]
    for shown, reported in zip(daily, reversed(api)):
        assert (shown["customers"], shown["transactions"], shown["frequency"]) == (
            reported["customers"], reported["transactions"], reported["frequency"])
        assert (shown["sales"], shown["ticket"], shown["refunds"]) == (
            format_yuan(reported["sales_fen"]), format_yuan(reported["average_ticket_fen"]),
            format_yuan(reported["refunds_fen"]))
        assert (shown["points_funded"], shown["points_accepted"]) == (reported["points_funded"], reported["points_accepted"])
    busy = next(row for row in daily if row["day"].isoformat() == "2026-03-10")
    assert (busy["customers"], busy["transactions"], busy["sales"]) == (2, 2, "¥133.33")
    page = response.content.decode()
    assert "¥133.33" in page and "Alpha" in page


def test_the_index_shows_this_months_settlement_as_the_api(settings):
    with time_machine.travel(datetime(2026, 3, 10, 11, tzinfo=MALL), tick=False):
        tenant = build_tenant("Alpha")
        response = tenant.client.get(reverse("merchant:index"))
        api = tenant.shop.api.get("/api/v1/settlements/", {"period": "2026-03"})

    assert api.status_code == 200, api.content
    statement, shown = api.json(), response.context["settlement"]
    assert shown["period"] == "2026-03"
    assert shown["total_due"] == format_yuan(statement["total_due_fen"])
    assert shown["collected"] == format_yuan(statement["collected_fen"]) == "¥95.00"  # the paid sandbox order's cash


def test_the_index_renders_for_a_merchant_with_no_sales_in_chinese(settings):
    settings.LANGUAGE_CODE = "zh-hans"
    shop = build_shop(name="Quiet")
    login = services.merchant_staff_create(merchant=shop.merchant, username="quiet-till", password=PASSWORD)
    client = Client()
    client.force_login(login.user)
    response = client.get(reverse("merchant:index"))
    assert response.status_code == 200
    assert '<html lang="zh-hans"' in response.content.decode()
    assert response.context["totals"]["transactions"] == 0 and len(response.context["daily"]) == 30
