"""Races through the real stack: gunicorn's workers and threads, one database, the
platforms' retries. Each starts its requests together behind a barrier."""

import secrets
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.e2e.clients import wechat_text_xml
from tests.e2e.test_closed_loop import me, member_code, mini_program_login, pos

pytestmark = pytest.mark.e2e


def at_once(calls):
    """Run every call in a thread of its own, released together; their results in order."""
    barrier = threading.Barrier(len(calls))

    def run(call):
        barrier.wait(timeout=30)
        return call()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(run, calls))


def test_twenty_redemptions_at_once_against_a_balance_for_five_spend_exactly_five(deployment):
    site, shop = deployment.site, deployment.other_shop
    token = mini_program_login(site, deployment.wechat.miniapp_login(unionid=None))["token"]
    sale = {"member_code": member_code(site, token), "store_code": shop.store_code, "amount_fen": 50000}
    purchase = pos(site, shop, "/api/v1/purchases/", sale)
    assert purchase.status_code == 201 and purchase.json()["points_balance"] == 500, purchase.text[:500]
    tokens = []
    for _ in range(20):  # the shopper confirms each spend in the app: one token a redemption
        confirmed = site.post_json("/api/mp/v1/redemption-tokens/", {"store_code": shop.store_code, "points": 100},
                                   token=token)
        assert confirmed.status_code == 201, (confirmed.status_code, confirmed.text[:500])
        tokens.append(confirmed.json()["redemption_token"])

    responses = at_once([
        lambda t=t: pos(site, shop, "/api/v1/redemptions/", {"redemption_token": t, "store_code": shop.store_code,
                                                              "points": 100})
        for t in tokens
    ])

    statuses = Counter(response.status_code for response in responses)
    assert statuses == {201: 5, 409: 15}, [(r.status_code, r.text[:200]) for r in responses]
    assert {r.json()["code"] for r in responses if r.status_code == 409} == {"insufficient_points"}
    assert sorted(r.json()["points_balance"] for r in responses if r.status_code == 201) == [0, 100, 200, 300, 400]
    profile = me(site, token)
    assert profile["points_balance"] == 0, profile
    redeemed = deployment.db.value(
        "SELECT COUNT(*) FROM payments_redemption r JOIN members_member m ON m.id = r.member_id WHERE m.member_no = %s",
        profile["member_no"],
    )
    wallet = deployment.db.value(
        "SELECT a.balance FROM members_account a JOIN members_member m ON m.id = a.member_id "
        "WHERE a.kind = 'wallet' AND m.member_no = %s", profile["member_no"],
    )
    assert (redeemed, wallet) == (5, 0)


def test_ten_deliveries_of_one_wechat_message_at_once_get_one_reply_and_one_conversation_row(deployment):
    """WeChat retries a message it had no answer to; a proxy may replay one. Same query string, same body."""
    account = deployment.official_account
    openid = deployment.wechat.follower(unionid="oUe2e" + secrets.token_hex(12))
    query, body = account.delivery(wechat_text_xml(openid=openid, account=account.account, content="积分"))

    responses = at_once([lambda: account.deliver(query, body) for _ in range(10)])

    assert [response.status_code for response in responses] == [200] * 10, [r.text[:200] for r in responses]
    contents = {account.reply(response)["Content"] for response in responses}
    assert len(contents) == 1 and "您的积分：0 分" in contents.pop()
    db = deployment.db
    assert db.value("SELECT COUNT(*) FROM bots_inboundmessage WHERE from_user = %s", openid) == 1
    assert db.value("SELECT COUNT(*) FROM members_identity WHERE channel = 'wechat_openid' AND external_id = %s", openid) == 1
