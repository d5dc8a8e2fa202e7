"""H5 login: WeChat web OAuth, Alipay auth_base (against the local fake platform), the
sandbox demo login, and logging out."""

from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import override_settings
from django.urls import reverse

from members import services, web_auth
from members.models import Identity, Member
from tests.fakes.platform_server import (
    Reply,
    alipay_request_signature_valid,
    alipay_signed_response,
    json_reply,
    text_reply,
)

pytestmark = pytest.mark.django_db

WECHAT_APP = {"WECHAT_APP_ID": "wx-oa", "WECHAT_APP_SECRET": "oa-secret"}




@pytest.fixture
def wechat(platform_server):
    with override_settings(**platform_server.settings(), **WECHAT_APP, PLATFORM_TIMEOUT_SECONDS=2):
        yield platform_server


@pytest.fixture
def alipay(platform_server, app_keys, alipay_keys):
    with override_settings(
        **platform_server.settings(),
        ALIPAY_APP_ID="2021000000000001",
        ALIPAY_APP_PRIVATE_KEY=app_keys.private_pem,
        ALIPAY_PUBLIC_KEY=alipay_keys.public_pem,
        PLATFORM_TIMEOUT_SECONDS=2,
    ):
        yield platform_server


def alipay_gateway(app_keys, alipay_keys, response_key: str, payload: dict):
    """The gateway: answers only requests signed with the app key, signing its answer."""

    def script(request):
        if not alipay_request_signature_valid(request.form, app_keys.public_pem):
            return json_reply({"error_response": {"code": "40002", "sub_code": "isv.invalid-signature"}})
        return Reply(body=alipay_signed_response(response_key, payload, alipay_keys.private_pem))

    return script


def start(client, platform: str, next_url: str = "/m/history/") -> dict[str, str]:
    """Open the login; returns the query of the platform authorize URL it redirects to."""
    response = client.get(reverse(f"h5:login-{platform}"), {"next": next_url})
    assert response.status_code == 302
    location = urlsplit(response["Location"])
    return {name: values[0] for name, values in parse_qs(location.query).items()} | {"_url": response["Location"]}


def session_member_id(client):
    return client.session.get(web_auth.SESSION_MEMBER)


# --- WeChat ---------------------------------------------------------------------------


def test_wechat_login_redirects_to_the_authorize_page_with_snsapi_base(client, wechat):
    query = start(client, "wechat")

    assert query["_url"].startswith("https://open.weixin.qq.com/connect/oauth2/authorize?appid=wx-oa&redirect_uri=")
    assert query["_url"].endswith("#wechat_redirect")
    assert query["redirect_uri"] == "http://testserver/m/login/wechat/callback/"
    assert (query["response_type"], query["scope"]) == ("code", "snsapi_base")
    assert query["state"].isalnum() and len(query["state"]) >= 32


def test_wechat_authorize_url_comes_from_the_setting(client, wechat, settings):
    settings.WECHAT_OAUTH_AUTHORIZE_URL = "http://127.0.0.1:9/authorize"

    assert start(client, "wechat")["_url"].startswith("http://127.0.0.1:9/authorize?appid=wx-oa&")


def test_wechat_callback_creates_the_member_and_logs_them_in(client, wechat):
    wechat.script("/sns/oauth2/access_token", json_reply({"access_token": "AT", "expires_in": 7200, "openid": "o-new-1", "scope": "snsapi_base"}))
    state = start(client, "wechat", next_url="/m/history/")["state"]
    before = client.session.session_key

    response = client.get(reverse("h5:login-wechat-callback"), {"code": "CODE-1", "state": state})

    assert response.status_code == 302 and response["Location"] == "/m/history/"
    identity = Identity.objects.select_related("member").get(channel=Identity.Channel.WECHAT_OPENID, external_id="o-new-1")
    assert identity.member.join_channel == Member.Channel.H5
    assert session_member_id(client) == identity.member.pk
    assert client.session.session_key != before  # a new session key on login
    [request] = wechat.requests_to("/sns/oauth2/access_token")
    assert request.query == {"appid": ["wx-oa"], "secret": ["oa-secret"], "code": ["CODE-1"], "grant_type": ["authorization_code"]}
    assert client.get(reverse("h5:card")).status_code == 200


def test_wechat_callback_finds_an_existing_member_and_links_the_unionid(client, wechat):
    member = services.member_create(join_channel=Member.Channel.WECHAT)
    Identity.objects.create(member=member, channel=Identity.Channel.WECHAT_OPENID, external_id="o-known")
    wechat.script("/sns/oauth2/access_token", json_reply({"access_token": "AT", "openid": "o-known", "unionid": "u-1"}))
    state = start(client, "wechat")["state"]

    client.get(reverse("h5:login-wechat-callback"), {"code": "C", "state": state})

    assert session_member_id(client) == member.pk
    assert Member.objects.count() == 1
    assert Identity.objects.filter(member=member, channel=Identity.Channel.WECHAT_UNIONID, external_id="u-1").exists()


@pytest.mark.parametrize("state", ["", "0" * 32, "wrong-state"])
def test_wechat_callback_with_a_bad_state_is_refused_and_creates_nothing(client, wechat, state):
    wechat.script("/sns/oauth2/access_token", json_reply({"access_token": "AT", "openid": "o-attacker"}))
    start(client, "wechat")

    response = client.get(reverse("h5:login-wechat-callback"), {"code": "ATTACKER-CODE", "state": state})

    assert response.status_code == 400
    assert "登录已过期" in response.content.decode()
    assert not Member.objects.exists() and not Identity.objects.exists()
    assert session_member_id(client) is None
    assert wechat.requests_to("/sns/oauth2/access_token") == []


def test_wechat_callback_without_a_login_started_here_is_refused(client, wechat):
    response = client.get(reverse("h5:login-wechat-callback"), {"code": "C", "state": "a" * 32})

    assert response.status_code == 400
    assert not Member.objects.exists()


def test_a_state_is_used_once(client, wechat):
    wechat.script("/sns/oauth2/access_token", json_reply({"access_token": "AT", "openid": "o-1"}))
    state = start(client, "wechat")["state"]
    client.get(reverse("h5:login-wechat-callback"), {"code": "C", "state": state})

    replay = client.get(reverse("h5:login-wechat-callback"), {"code": "C", "state": state})

    assert replay.status_code == 400
    assert len(wechat.requests_to("/sns/oauth2/access_token")) == 1


def test_a_state_from_the_other_platform_is_refused(client, wechat, alipay):
    state = start(client, "alipay")["state"]

    response = client.get(reverse("h5:login-wechat-callback"), {"code": "C", "state": state})

    assert response.status_code == 400
    assert wechat.requests == []


def test_an_old_state_is_refused(client, wechat, monkeypatch):
    state = start(client, "wechat")["state"]
    monkeypatch.setattr(web_auth, "STATE_MAX_AGE_SECONDS", -1)

    assert client.get(reverse("h5:login-wechat-callback"), {"code": "C", "state": state}).status_code == 400


def test_wechat_callback_with_a_code_the_platform_rejects_is_a_friendly_error(client, wechat):
    wechat.script("/sns/oauth2/access_token", json_reply({"errcode": 40029, "errmsg": "invalid code"}))
    state = start(client, "wechat")["state"]

    response = client.get(reverse("h5:login-wechat-callback"), {"code": "USED", "state": state})

    assert response.status_code == 400
    page = response.content.decode()
    assert "登录失败" in page and 'class="topbar"' in page and "40029" not in page
    assert not Member.objects.exists()
    assert session_member_id(client) is None


def test_wechat_callback_with_an_unusable_openid_is_a_friendly_error(client, wechat):
    wechat.script("/sns/oauth2/access_token", json_reply({"access_token": "AT", "openid": "o" * 129}))
    state = start(client, "wechat")["state"]

    response = client.get(reverse("h5:login-wechat-callback"), {"code": "C", "state": state})

    assert response.status_code == 400
    assert not Member.objects.exists()


def test_wechat_callback_without_a_code_asks_nothing_and_fails(client, wechat):
    state = start(client, "wechat")["state"]

    response = client.get(reverse("h5:login-wechat-callback"), {"state": state})

    assert response.status_code == 400
    assert wechat.requests == []


def test_wechat_not_answering_is_a_friendly_503(client, wechat):
    wechat.script("/sns/oauth2/access_token", text_reply("{}", delay=3))
    state = start(client, "wechat")["state"]

    response = client.get(reverse("h5:login-wechat-callback"), {"code": "C", "state": state})

    assert response.status_code == 503
    assert not Member.objects.exists()


def test_a_banned_member_is_refused_at_login(client, wechat):
    member = services.member_create(join_channel=Member.Channel.WECHAT)
    Member.objects.filter(pk=member.pk).update(status=Member.Status.BANNED)
    Identity.objects.create(member=member, channel=Identity.Channel.WECHAT_OPENID, external_id="o-banned")
    wechat.script("/sns/oauth2/access_token", json_reply({"access_token": "AT", "openid": "o-banned"}))
    state = start(client, "wechat")["state"]

    response = client.get(reverse("h5:login-wechat-callback"), {"code": "C", "state": state})

    assert response.status_code == 403
    assert session_member_id(client) is None


def test_login_does_not_go_on_to_another_site(client, wechat):
    wechat.script("/sns/oauth2/access_token", json_reply({"access_token": "AT", "openid": "o-1"}))
    state = start(client, "wechat", next_url="https://evil.example/")["state"]

    response = client.get(reverse("h5:login-wechat-callback"), {"code": "C", "state": state})

    assert response["Location"] == reverse("h5:card")


def test_logging_in_as_another_member_starts_a_fresh_session(client, wechat):
    other = services.member_create(join_channel=Member.Channel.WECHAT)
    session = client.session
    session[web_auth.SESSION_MEMBER] = other.pk
    session["leftover"] = "from the other member"
    session.save()
    wechat.script("/sns/oauth2/access_token", json_reply({"access_token": "AT", "openid": "o-me"}))
    state = start(client, "wechat")["state"]

    client.get(reverse("h5:login-wechat-callback"), {"code": "C", "state": state})

    assert session_member_id(client) != other.pk
    assert "leftover" not in client.session


def test_oauth_pages_are_404_when_the_platform_is_not_configured(client):
    for name in ["h5:login-wechat", "h5:login-wechat-callback", "h5:login-alipay", "h5:login-alipay-callback"]:
        assert client.get(reverse(name)).status_code == 404, name


# --- Alipay ---------------------------------------------------------------------------


def test_alipay_login_redirects_to_the_authorize_page_with_auth_base(client, alipay):
    query = start(client, "alipay")

    assert query["_url"].startswith("https://openauth.alipay.com/oauth2/publicAppAuthorize.htm?app_id=2021000000000001&")
    assert query["scope"] == "auth_base"
    assert query["redirect_uri"] == "http://testserver/m/login/alipay/callback/"
    assert query["state"].isalnum()


def test_alipay_callback_creates_the_member_and_logs_them_in(client, alipay, app_keys, alipay_keys):
    payload = {"user_id": "2088000000000001", "access_token": "AT", "expires_in": 1296000}
    alipay.script("/gateway.do", alipay_gateway(app_keys, alipay_keys, "alipay_system_oauth_token_response", payload))
    state = start(client, "alipay", next_url="/m/inbox/")["state"]

    response = client.get(reverse("h5:login-alipay-callback"), {"auth_code": "AUTH-1", "state": state, "app_id": "2021000000000001"})

    assert response.status_code == 302 and response["Location"] == "/m/inbox/"
    identity = Identity.objects.get(channel=Identity.Channel.ALIPAY_USER_ID, external_id="2088000000000001")
    assert session_member_id(client) == identity.member_id
    [request] = alipay.requests_to("/gateway.do")
    assert (request.form["method"], request.form["code"]) == ("alipay.system.oauth.token", "AUTH-1")


def test_alipay_callback_with_a_code_alipay_rejects_is_a_friendly_error(client, alipay, app_keys, alipay_keys):
    refusal = {"code": "40002", "msg": "Invalid Arguments", "sub_code": "isv.code-invalid", "sub_msg": "授权码code无效"}
    alipay.script("/gateway.do", alipay_gateway(app_keys, alipay_keys, "error_response", refusal))
    state = start(client, "alipay")["state"]

    response = client.get(reverse("h5:login-alipay-callback"), {"auth_code": "USED", "state": state})

    assert response.status_code == 400
    assert "登录失败" in response.content.decode()
    assert not Member.objects.exists()


def test_alipay_callback_with_a_bad_state_is_refused_and_creates_nothing(client, alipay):
    start(client, "alipay")

    response = client.get(reverse("h5:login-alipay-callback"), {"auth_code": "X", "state": "forged"})

    assert response.status_code == 400
    assert not Member.objects.exists() and alipay.requests == []


# --- the login page -------------------------------------------------------------------


def test_login_page_inside_wechat_goes_straight_to_wechat(client, wechat):
    response = client.get(reverse("h5:login"), {"next": "/m/inbox/"}, HTTP_USER_AGENT="Mozilla/5.0 MicroMessenger/8.0.50")

    assert response.status_code == 302
    assert response["Location"] == reverse("h5:login-wechat") + "?next=%2Fm%2Finbox%2F"


def test_login_page_inside_alipay_goes_straight_to_alipay(client, alipay):
    response = client.get(reverse("h5:login"), HTTP_USER_AGENT="Mozilla/5.0 AlipayClient/10.5.0")

    assert response.status_code == 302 and response["Location"] == reverse("h5:login-alipay")


def test_login_page_in_a_browser_offers_the_configured_ways_in(client, wechat, settings):
    settings.O2O_SANDBOX = False

    page = client.get(reverse("h5:login")).content.decode()

    assert reverse("h5:login-wechat") in page
    assert reverse("h5:login-alipay") not in page
    assert reverse("h5:login-demo") not in page


# --- the sandbox's demo login ---------------------------------------------------------


@pytest.fixture
def demo_member():
    member = services.member_create(join_channel=Member.Channel.WECHAT, nickname="Demo shopper 0")
    Identity.objects.create(member=member, channel=Identity.Channel.WECHAT_OPENID, external_id="demo-openid-000")
    return member


def test_demo_login_lists_seed_demo_shoppers_and_logs_one_in(client, settings, demo_member):
    settings.O2O_SANDBOX = True
    stranger = services.member_create(join_channel=Member.Channel.WECHAT, nickname="Not a demo")
    Identity.objects.create(member=stranger, channel=Identity.Channel.WECHAT_OPENID, external_id="o-real")

    page = client.get(reverse("h5:login-demo")).content.decode()
    response = client.post(reverse("h5:login-demo"), {"openid": "demo-openid-000", "next": "/m/history/"})

    assert "Demo shopper 0" in page and "Not a demo" not in page
    assert response.status_code == 302 and response["Location"] == "/m/history/"
    assert session_member_id(client) == demo_member.pk


def test_demo_login_refuses_anyone_but_seed_demo_shoppers(client, settings, demo_member):
    settings.O2O_SANDBOX = True
    stranger = services.member_create(join_channel=Member.Channel.WECHAT)
    Identity.objects.create(member=stranger, channel=Identity.Channel.WECHAT_OPENID, external_id="o-real")

    for openid in ["o-real", "demo-openid-999", ""]:
        assert client.post(reverse("h5:login-demo"), {"openid": openid}).status_code == 404
    assert session_member_id(client) is None
    assert Member.objects.count() == 2


def test_demo_login_does_not_exist_outside_the_sandbox(client, settings, demo_member):
    settings.O2O_SANDBOX = False

    assert client.get(reverse("h5:login-demo")).status_code == 404
    assert client.post(reverse("h5:login-demo"), {"openid": "demo-openid-000"}).status_code == 404
    assert session_member_id(client) is None
    assert reverse("h5:login-demo") not in client.get(reverse("h5:login")).content.decode()


def test_demo_login_rotates_the_session_key(client, settings, demo_member):
    settings.O2O_SANDBOX = True
    session = client.session
    session["x"] = 1
    session.save()
    before = session.session_key

    client.post(reverse("h5:login-demo"), {"openid": "demo-openid-000"})

    assert client.session.session_key != before
    assert client.session["x"] == 1  # the same visitor's session, under a new key


def test_logout_ends_the_session(client, settings, demo_member):
    settings.O2O_SANDBOX = True
    client.post(reverse("h5:login-demo"), {"openid": "demo-openid-000"})

    response = client.post(reverse("h5:logout"))

    assert response.status_code == 200
    assert session_member_id(client) is None
    assert client.get(reverse("h5:card")).status_code == 302
    assert client.get(reverse("h5:logout")).status_code == 405
