"""The mall admin in Chinese, in a real browser at a desk's width: the member list with
number, nickname, masked or whole phone, tier and balance; a member's page with the
rolling spend in yuan; the tier table with thresholds in yuan and multipliers as ×1.5;
the points adjustment form with its reason and the shopper's description. Nothing
spills past the window. Screenshots under /tmp/screens/."""

import pytest
from django.contrib.auth.models import Group, User
from django.utils import timezone

from members import ledger, roles, services
from members.models import Member
from tests.browser.conftest import SCREENS_DIR, browser_test
from tests.factories import make_member

pytestmark = [*browser_test, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-long-staff-password-7"


@pytest.fixture
def mall():
    roles.roles_sync()
    plaza = services.plaza_create(code="sh", name="上海五角场广场")
    _, store, _, _ = services.merchant_create(name="喜茶 HEYTEA", plaza=plaza, store_code="heytea")
    members = []
    for n in range(6):
        member = make_member(phone=f"1380013800{n}", nickname=f"顾客{n}", tier_code="silver" if n % 2 else "standard")
        ledger.points_earn(
            member=member, store=store, amount_fen=12_345 * (n + 1), idempotency_key=f"earn-{n}", at=timezone.now(),
        )
        members.append(member)
    Member.objects.filter(pk=members[1].pk).update(tier_spend_fen=612_345)
    User.objects.create_superuser("operator", password=PASSWORD)
    finance = User.objects.create_user("finance", password=PASSWORD, is_staff=True)
    finance.groups.add(Group.objects.get(name=roles.FINANCE))
    cs = User.objects.create_user("service", password=PASSWORD, is_staff=True)
    cs.groups.add(Group.objects.get(name=roles.CUSTOMER_SERVICE))
    return {"members": members}


@pytest.fixture
def desk(browser, live_server):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN", base_url=live_server.url)
    context.set_default_timeout(5_000)
    page = context.new_page()
    yield page
    context.close()


def sign_in(page, username):
    page.goto("/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/")


def shot(page, name):
    SCREENS_DIR.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENS_DIR / f"admin-zh-{name}.png"), full_page=True)


def overflow(page) -> int:
    return page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")


def test_the_member_list_and_pages_in_chinese_with_yuan_and_multipliers(desk, mall):
    sign_in(desk, "operator")
    assert "大会员" in desk.locator("#site-name").inner_text()

    desk.goto("/admin/members/member/")
    table = desk.locator("#result_list").inner_text()
    assert "会员号" in table and "积分" in table and "等级" in table, table[:300]
    assert "138 0013 8001" in table or "13800138001" in table  # operators see whole phones
    assert "银卡" in table
    shot(desk, "members")
    assert overflow(desk) <= 1

    member = mall["members"][1]
    desk.goto(f"/admin/members/member/{member.pk}/change/")
    body = desk.locator("#content").inner_text()
    assert "¥6,123.45" in body, body[:800]
    shot(desk, "member")

    desk.goto("/admin/members/tier/")
    tiers = desk.locator("#result_list").inner_text()
    assert "¥5,000.00" in tiers and "×1.2" in tiers, tiers
    shot(desk, "tiers")

    desk.goto(f"/admin/members/member/{member.pk}/adjust-points/")
    form = desk.locator("#content").inner_text()
    assert "原因" in form, form[:500]
    shot(desk, "adjust")


def test_finance_sees_masked_phones_and_search_by_prefix_stays_with_those_who_see_them(desk, mall):
    sign_in(desk, "finance")
    desk.goto("/admin/members/member/")
    assert desk.locator("#result_list").count() == 0 or "****" in desk.locator("#result_list").inner_text()

    desk.context.clear_cookies()
    sign_in(desk, "service")
    desk.goto("/admin/members/member/?q=1380013800")
    rows = desk.locator("#result_list tbody tr")
    assert rows.count() == len(mall["members"])
    shot(desk, "search")
