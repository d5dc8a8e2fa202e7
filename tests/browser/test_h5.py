"""The shopper's H5 pages in a real browser: member card with both codes, the code
refreshing before it expires, history, inbox, checking in from a printed link, and
switching to English."""

import re

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.contrib.sessions.backends.db import SessionStore
from django.test import Client

from members import checkin, codes, ledger, pushes, services, web_auth
from members.models import Identity, Member
from tests.browser.conftest import browser_test
from tests.factories import make_plaza, make_store

pytestmark = [*browser_test, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def sandbox(settings):
    settings.O2O_SANDBOX = True


@pytest.fixture
def shopper():
    """A seed_demo-style shopper with some history, so the demo login offers them."""
    member = services.member_create(join_channel=Member.Channel.WECHAT, nickname="演示顾客 0")
    Identity.objects.create(member=member, channel=Identity.Channel.WECHAT_OPENID, external_id="demo-openid-000")
    store = make_store()
    ledger.points_grant(member=member, points=100, reason="welcome gift", idempotency_key="b:welcome")
    ledger.points_earn(member=member, store=store, amount_fen=25_800, idempotency_key="b:earn")
    ledger.points_redeem(member=member, store=store, points=40, idempotency_key="b:redeem")
    return member


def log_in(page, live_server, member):
    """The session a login would make, put straight into the browser."""
    session = SessionStore()
    session[web_auth.SESSION_MEMBER] = member.pk
    session.create()
    page.context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": session.session_key, "url": live_server.url}])


def test_member_card_after_the_demo_login_shows_a_qr_and_a_barcode(page, shopper, screenshot):
    page.goto("/m/")
    assert page.url.endswith("/m/login/?next=/m/")
    screenshot("login")
    page.get_by_role("link", name="演示：选择一位顾客").click()
    screenshot("demo-login")
    page.get_by_role("button", name=re.compile("演示顾客 0")).click()

    page.wait_for_url("**/m/")
    assert page.locator("#points-balance").inner_text() == str(ledger.member_points_balance(member=shopper))
    for selector in ["#member-code .qr svg", "#member-code .barcode svg"]:
        box = page.locator(selector).bounding_box()
        assert box["width"] > 150 and box["height"] > 60, selector
    code = page.locator("#member-code").get_attribute("data-code")
    assert page.locator("#member-code .digits").inner_text().replace(" ", "") == code
    assert codes.member_code_check(code=code, caller="browser-test").pk == shopper.pk
    screenshot("card")


def test_member_code_refreshes_in_place_before_it_expires(page, live_server, shopper, monkeypatch, screenshot):
    monkeypatch.setattr(codes, "STEP_SECONDS", 2)  # the live server runs in this process
    log_in(page, live_server, shopper)
    page.goto("/m/")
    first = page.locator("#member-code").get_attribute("data-code")
    first_qr = page.locator("#member-code .qr").inner_html()
    page.evaluate("window.notReloaded = true")

    page.wait_for_function("(first) => document.getElementById('member-code').dataset.code !== first", arg=first, timeout=6_000)

    second = page.locator("#member-code").get_attribute("data-code")
    assert page.evaluate("window.notReloaded") is True
    assert second[:12] == first[:12] == shopper.member_no and second != first
    assert page.locator("#member-code .digits").inner_text().replace(" ", "") == second
    assert page.locator("#member-code .qr").inner_html() != first_qr
    assert codes.member_code_check(code=second, caller="browser-test").pk == shopper.pk
    screenshot("card-refreshed")


def test_history_and_inbox(page, live_server, shopper, screenshot):
    pushes.push_send(member=shopper, event="test", event_key="b:msg:1", title="欢迎加入大会员", body="首次消费送 100 积分。")
    pushes.push_send(member=shopper, event="test", event_key="b:msg:2", title="积分即将过期", body="您有 40 积分将在 30 天内过期。", link="/m/history/")
    log_in(page, live_server, shopper)
    page.goto("/m/")
    assert page.locator(".menu .badge").inner_text() == "2"

    page.get_by_role("link", name="积分明细").click()
    page.wait_for_url("**/m/history/")
    rows = page.locator(".rows li")
    assert rows.count() == 3
    assert rows.nth(0).locator(".points").inner_text() == "-40"
    assert "积分抵扣" in rows.nth(0).inner_text() and "赠送" in rows.nth(2).inner_text()
    screenshot("history")

    page.goto("/m/inbox/")
    assert page.locator(".rows li.unread").count() == 2
    assert page.get_by_text("欢迎加入大会员").is_visible()
    screenshot("inbox")
    page.reload()
    assert page.locator(".rows li.unread").count() == 0


def test_check_in_from_a_printed_link(page, shopper, screenshot):
    plaza = make_plaza()
    plaza.name, plaza.city, plaza.notice = "上海五角场万达广场", "上海", "今日 B1 美食节，全场 8 折"
    plaza.save()
    link = "/m/checkin/" + checkin.checkin_token_make(plaza=plaza) + "/"

    page.goto(link)
    assert page.get_by_role("heading", name="上海五角场万达广场").is_visible()
    assert page.get_by_text("今日 B1 美食节").is_visible()
    screenshot("landing")
    page.get_by_role("link", name="登录并签到").click()
    page.get_by_role("link", name="演示：选择一位顾客").click()
    page.get_by_role("button", name=re.compile("演示顾客 0")).click()
    page.wait_for_url("**" + link)
    screenshot("logged-in")
    page.get_by_role("button", name="立即签到").click()

    done = page.locator(".done")
    done.wait_for()
    assert done.locator(".big").inner_text() == f"+{settings.CHECKIN_POINTS}"
    assert "今日已签到" in done.inner_text() and "1 天" in done.inner_text()
    assert page.locator("#points-balance").inner_text() == str(ledger.member_points_balance(member=shopper))
    screenshot("done")


def test_switching_to_english_is_remembered(page, live_server, shopper, screenshot):
    log_in(page, live_server, shopper)
    page.goto("/m/history/")
    assert page.locator("html").get_attribute("lang") == "zh-hans"

    page.get_by_role("button", name="English").click()

    page.wait_for_url("**/m/history/")
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.get_by_role("heading", name="Points history").is_visible()
    screenshot("history-en")
    page.goto("/m/")
    assert page.get_by_role("heading", name="Member code").is_visible()
    screenshot("card-en")
    page.get_by_role("button", name="简体中文").click()
    assert page.get_by_role("heading", name="会员码").is_visible()


def test_pay_page_unknown_codes_and_the_print_page(page, live_server, screenshot):
    store = make_store()
    store.name, store.unit = "星巴克 Starbucks", "L1-012"
    store.save()
    store.plaza.name = "北京CBD万达广场"
    store.plaza.save()

    response = page.goto("/m/pay/no-such-shop/")
    assert response.status == 404 and page.get_by_text("门店码无效").is_visible()
    response = page.goto("/m/checkin/forged-token/")
    assert response.status == 404 and page.get_by_text("签到码无效").is_visible()
    screenshot("checkin-404")

    staff = Client()
    staff.force_login(User.objects.create_superuser("boss", "boss@example.com", "pw"))
    cookie = staff.cookies[settings.SESSION_COOKIE_NAME].value
    page.context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": cookie, "url": live_server.url}])
    page.goto(f"/admin/members/store/{store.pk}/print-qr/")
    image = page.locator(".poster img")
    image.wait_for()
    assert page.evaluate("(img) => img.complete && img.naturalWidth > 0", image.element_handle())
    screenshot("print-store")
