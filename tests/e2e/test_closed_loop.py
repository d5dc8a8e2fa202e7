"""The closed loop (docs/design.md), over HTTP against the real processes: a new follower
scans a plaza's check-in QR, asks for their points, opens the mini-program, pays at a
shop's POS with their member code, hears about it from the task cluster, pays with
points, gets a refund, and the shop's daily report shows the sale."""

import re
import secrets
import threading
import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from tests.e2e.clients import new_key

pytestmark = pytest.mark.e2e

CHECKIN_POINTS = 10  # CHECKIN_POINTS: the example environment keeps the default
PUSH_TIMEOUT = 30  # seconds for the cluster to deliver a push (it polls; the machine may be busy)
MALL_TIME_ZONE = ZoneInfo("Asia/Shanghai")  # TIME_ZONE: reports are by the mall's local day


def poll(fetch, until, *, timeout: float, every: float = 0.2):
    """``fetch()`` again until ``until`` accepts its value, for at most ``timeout`` seconds; the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if until(value) or time.monotonic() >= deadline:
            return value
        time.sleep(every)


def mini_program_login(site, code: str) -> dict:
    response = site.post_json("/api/mp/v1/auth/wechat/", {"code": code})
    assert response.status_code == 200, (response.status_code, response.text[:500])
    return response.json()


def me(site, token: str) -> dict:
    response = site.get_json("/api/mp/v1/me/", token=token)
    assert response.status_code == 200, (response.status_code, response.text[:500])
    return response.json()


def member_code(site, token: str) -> str:
    response = site.get_json("/api/mp/v1/member-code/", token=token)
    assert response.status_code == 200, (response.status_code, response.text[:500])
    body = response.json()
    assert set(body) >= {"code", "expires_at"}, body
    return body["code"]


def pos(site, shop, path: str, body: dict, *, key: str | None = None):
    """The shop's POS: its API key, an Idempotency-Key, JSON."""
    return site.post_json(path, body, token=shop.api_key, idempotency_key=key or new_key("pos"))


def follower_member_no(official_account, openid: str) -> str:
    reply = official_account.text(openid, "会员码")
    match = re.search(r"会员号：(\d+)", reply)
    assert match, reply
    return match.group(1)


def test_scan_points_login_pay_push_redeem_refund_report(deployment):
    site, wechat, account, shop = deployment.site, deployment.wechat, deployment.official_account, deployment.shop
    unionid = "oUe2e" + secrets.token_hex(12)
    openid = wechat.follower(unionid=unionid)

    # Scan: a new follower scans the plaza's permanent check-in QR code.
    reply = account.subscribe(openid, scene=f"checkin:{deployment.plaza_code}")
    assert "签到成功" in reply and deployment.plaza_name in reply, reply
    assert f"+{CHECKIN_POINTS} 积分" in reply and f"当前积分 {CHECKIN_POINTS} 分" in reply, reply
    assert "欢迎加入大会员" in reply, reply

    assert f"您的积分：{CHECKIN_POINTS} 分" in account.text(openid, "积分")
    member_no = follower_member_no(account, openid)

    # The same person in the mini-program: the unionid links them (at once: see the test below).
    login = mini_program_login(site, wechat.miniapp_login(unionid=unionid))
    token = login["token"]
    profile = poll(lambda: me(site, token), lambda p: (p["member_no"], p["points_balance"]) == (member_no, CHECKIN_POINTS),
                   timeout=PUSH_TIMEOUT)
    assert (profile["member_no"], profile["points_balance"], profile["points_pending"]) == (member_no, CHECKIN_POINTS, 0), profile
    assert wechat.server.requests_to("/cgi-bin/user/info"), "the follower's unionid was never asked for"

    # Pay: the POS scans the member code shown in the mini-program and books a sale.
    code = member_code(site, token)
    sale = {"member_code": code, "store_code": shop.store_code, "amount_fen": 38800, "order_ref": "e2e-1"}
    key = new_key("purchase")
    purchase = pos(site, shop, "/api/v1/purchases/", sale, key=key)
    assert purchase.status_code == 201, (purchase.status_code, purchase.text[:500])
    booked = purchase.json()
    assert (booked["points_earned"], booked["points_balance"], booked["member_no"]) == (388, 398, member_no), booked
    replay = pos(site, shop, "/api/v1/purchases/", sale, key=key)
    assert (replay.status_code, replay.json()) == (201, booked)

    # Push: the task cluster tells the follower, inside WeChat's 48-hour window.
    pushed = wechat.wait_for_customer_service_message(openid, "388", timeout=PUSH_TIMEOUT)
    assert pushed is not None, f"no customer-service message about the sale: {wechat.customer_service_messages(openid)}"
    assert "398" in pushed, pushed
    assert me(site, token)["points_balance"] == 398

    # Pay with points: a fresh member code, scanned once.
    code = member_code(site, token)
    spend = {"member_code": code, "store_code": shop.store_code, "points": 100}
    redemption = pos(site, shop, "/api/v1/redemptions/", spend)
    assert redemption.status_code == 201, (redemption.status_code, redemption.text[:500])
    assert (redemption.json()["points"], redemption.json()["points_balance"]) == (100, 298), redemption.json()
    again = pos(site, shop, "/api/v1/redemptions/", spend)
    assert (again.status_code, again.json()["code"]) == (409, "member_code_used"), again.text[:500]
    pushed = wechat.wait_for_customer_service_message(openid, "100 积分", timeout=PUSH_TIMEOUT)
    assert pushed is not None and "298" in pushed, wechat.customer_service_messages(openid)

    # Refund half the sale: half the points go back.
    refund = pos(site, shop, f"/api/v1/purchases/{booked['id']}/refunds/", {"amount_fen": 19400})
    assert refund.status_code == 201, (refund.status_code, refund.text[:500])
    assert (refund.json()["points_reversed"], refund.json()["refundable_fen"]) == (194, 19400), refund.json()
    assert me(site, token)["points_balance"] == 298 - 194

    # The shop's daily report has the sale, the refund and the points.
    today = datetime.now(MALL_TIME_ZONE).date()
    report = site.get_json("/api/v1/reports/daily/", token=shop.api_key, params={
        "from": (today - timedelta(days=1)).isoformat(), "to": (today + timedelta(days=1)).isoformat(),
    })
    assert report.status_code == 200, (report.status_code, report.text[:500])
    totals = {name: sum(row[name] for row in report.json()) for name in (
        "customers", "transactions", "sales_fen", "refunds_fen", "points_funded", "points_accepted")}
    assert totals == {"customers": 1, "transactions": 1, "sales_fen": 38800, "refunds_fen": 19400,
                      "points_funded": 388 - 194, "points_accepted": 100}, report.json()


def test_a_new_follower_is_the_same_member_in_the_mini_program_at_once(deployment):
    """The follower's unionid is known by the time their first message is answered, so
    the mini-program they open next is the same member, with the check-in's points.

    WeChat's user info answers after 0.3 s here; one asked for after the reply (by the
    task cluster, say) is held until the mini-program has looked, so that "at once"
    cannot pass by luck."""
    site, wechat, account = deployment.site, deployment.wechat, deployment.official_account
    replied, looked = threading.Event(), threading.Event()

    def slow_user_info(request):
        after_reply = replied.is_set()
        time.sleep(0.3)
        if after_reply:
            looked.wait(timeout=10)

    unionid = "oUe2e" + secrets.token_hex(12)
    openid = wechat.follower(unionid=unionid, before_user_info=slow_user_info)
    try:
        reply = account.subscribe(openid, scene=f"checkin:{deployment.plaza_code}")
        replied.set()
        assert f"当前积分 {CHECKIN_POINTS} 分" in reply, reply

        login = mini_program_login(site, wechat.miniapp_login(unionid=unionid))
        profile = me(site, login["token"])
    finally:
        looked.set()

    assert login["created"] is False, login
    assert profile["points_balance"] == CHECKIN_POINTS, profile
    assert profile["member_no"] == follower_member_no(account, openid), profile
