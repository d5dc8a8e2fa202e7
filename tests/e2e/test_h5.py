"""A follower opens the member card from the chat, in WeChat's browser: the H5 pages log
them in through WeChat's web OAuth (the callback URL must be the public https one, as
the proxy tells it), and the card's member code scans at the till."""

import re
import secrets
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.e2e.clients import Browser

pytestmark = pytest.mark.e2e

WECHAT_BROWSER = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148 MicroMessenger/8.0.47 NetType/WIFI"


def test_a_follower_opens_the_member_card_in_wechat_and_its_code_scans_at_the_till(deployment):
    site, wechat, account = deployment.site, deployment.wechat, deployment.official_account
    openid = wechat.follower(unionid="oUe2e" + secrets.token_hex(12))
    assert "签到成功" in account.subscribe(openid, scene=f"checkin:{deployment.plaza_code}")
    browser = Browser(site, user_agent=WECHAT_BROWSER)

    to_login = browser.get("/m/")
    assert to_login.status_code == 302, to_login.status_code
    to_oauth = browser.get(urlsplit(to_login.headers["Location"])._replace(scheme="", netloc="").geturl())
    assert to_oauth.status_code == 302, to_oauth.status_code
    to_wechat = browser.get(urlsplit(to_oauth.headers["Location"])._replace(scheme="", netloc="").geturl())
    assert to_wechat.status_code == 302, to_wechat.status_code
    authorize = urlsplit(to_wechat.headers["Location"])
    params = {name: values[0] for name, values in parse_qs(authorize.query).items()}
    assert (params["appid"], params["scope"]) == (deployment.keys.wechat_app_id, "snsapi_base"), params
    callback = urlsplit(params["redirect_uri"])
    assert (callback.scheme, callback.netloc, callback.path) == ("https", site.host, "/m/login/wechat/callback/"), params

    # WeChat sends the browser back with a code for this follower.
    back = browser.get(f"{callback.path}?code={wechat.web_login(openid)}&state={params['state']}")
    assert back.status_code == 302 and urlsplit(back.headers["Location"]).path == "/m/", (back.status_code, back.text[:300])
    card = browser.get("/m/")

    assert card.status_code == 200, card.status_code
    assert re.search(r'id="points-balance">10<', card.text), "the card does not show the check-in's 10 points"
    code = re.search(r'data-code="(\d{23})"', card.text).group(1)
    lookup = site.get_json("/api/v1/members/lookup/", token=deployment.shop.api_key, params={"code": code})
    assert lookup.status_code == 200 and lookup.json()["points_balance"] == 10, lookup.text[:300]
    for page in ("/m/history/", "/m/inbox/"):
        assert browser.get(page).status_code == 200, page
    # Paying with more points than a scanned code may: the shopper confirms on the shop's
    # page, and the till redeems the single-use code it shows.
    redeem_page = f"/m/redeem/{deployment.shop.store_code}/"
    form = browser.get(redeem_page)
    assert form.status_code == 200 and re.search(r'id="points-balance">10<', form.text), form.status_code
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)
    confirmed = browser.post_form(redeem_page, {"csrfmiddlewaretoken": csrf, "points": "8"}, referer=redeem_page)
    assert confirmed.status_code == 200, (confirmed.status_code, confirmed.text[:300])
    token = re.search(r'id="redemption-token">(rt_[\w-]+)<', confirmed.text).group(1)
    pay = site.post_json(
        "/api/v1/redemptions/", {"redemption_token": token, "store_code": deployment.shop.store_code, "points": 8},
        token=deployment.shop.api_key, idempotency_key=f"e2e-h5-redeem-{secrets.token_hex(4)}",
    )
    assert pay.status_code == 201 and pay.json()["points_balance"] == 2, pay.text[:300]
    again = site.post_json(
        "/api/v1/redemptions/", {"redemption_token": token, "store_code": deployment.shop.store_code, "points": 1},
        token=deployment.shop.api_key, idempotency_key=f"e2e-h5-redeem-{secrets.token_hex(4)}",
    )
    assert again.status_code == 409 and again.json()["code"] == "redemption_token_used", again.text[:300]
