"""Tiers over HTTP against the real processes: a follower whose scanned sales reach the
silver threshold is silver at once (the mini-program says so), hears about it from the
task cluster, and a sale booked by a bare member number moves nobody."""

import secrets

import pytest

from tests.e2e.clients import new_key
from tests.e2e.test_closed_loop import PUSH_TIMEOUT, follower_member_no, me, member_code, mini_program_login, pos

pytestmark = pytest.mark.e2e

SILVER_FEN = 500_000  # the tier table the migrations create: silver from ¥5,000 in 12 months


def new_shopper(deployment) -> tuple[str, str]:
    """A follower who scanned the plaza's QR, logged into the mini-program: (openid, token)."""
    wechat, account = deployment.wechat, deployment.official_account
    unionid = "oUe2e" + secrets.token_hex(12)
    openid = wechat.follower(unionid=unionid)
    account.subscribe(openid, scene=f"checkin:{deployment.plaza_code}")
    return openid, mini_program_login(deployment.site, wechat.miniapp_login(unionid=unionid))["token"]


def test_scanned_sales_that_reach_the_threshold_move_the_shopper_up_and_the_cluster_tells_them(deployment):
    site, wechat, shop = deployment.site, deployment.wechat, deployment.shop
    openid, token = new_shopper(deployment)
    assert me(site, token)["tier"] == "standard"

    first = pos(site, shop, "/api/v1/purchases/", {
        "member_code": member_code(site, token), "store_code": shop.store_code, "amount_fen": SILVER_FEN - 100_00,
    })
    assert first.status_code == 201, first.text[:500]
    assert me(site, token)["tier"] == "standard"

    second = pos(site, shop, "/api/v1/purchases/", {
        "member_code": member_code(site, token), "store_code": shop.store_code, "amount_fen": 100_00,
    })
    assert second.status_code == 201, second.text[:500]

    profile = me(site, token)
    assert (profile["tier"], profile["tier_name"]) == ("silver", "银卡"), profile
    pushed = wechat.wait_for_customer_service_message(openid, "升级", timeout=PUSH_TIMEOUT)
    assert pushed is not None and "银卡" in pushed, wechat.customer_service_messages(openid)
    changes = deployment.db.rows(
        "SELECT f.code, t.code, c.reason FROM members_tierchange c JOIN members_tier t ON t.id = c.to_tier_id "
        "LEFT JOIN members_tier f ON f.id = c.from_tier_id JOIN members_member m ON m.id = c.member_id "
        "WHERE m.member_no = %s ORDER BY c.id", profile["member_no"],
    )
    assert [tuple(row) for row in changes][-1] == ("standard", "silver", "upgrade"), changes


def test_a_sale_booked_by_the_bare_member_number_does_not_count_towards_a_tier(deployment):
    site, shop = deployment.site, deployment.shop
    openid, token = new_shopper(deployment)
    member_no = follower_member_no(deployment.official_account, openid)

    sale = pos(site, shop, "/api/v1/purchases/", {
        "member_no": member_no, "store_code": shop.store_code, "amount_fen": SILVER_FEN * 2,
    }, key=new_key("bare"))

    assert sale.status_code == 201, sale.text[:500]
    assert me(site, token)["tier"] == "standard"
