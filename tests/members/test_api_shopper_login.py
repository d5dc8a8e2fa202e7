"""Logging in to the shopper API (/api/mp/v1/auth/…) against the local fake platforms.

wechatpy and python-alipay-sdk run for real (through core.platforms); only the far
end is the fake server of tests/fakes/platform_server.py.
"""

import json
from pathlib import Path

import pytest
from django.core.cache import cache
from django.test import Client, override_settings

from members import identity, ledger
from members.auth import shopper_token_issue, shopper_token_read
from members.models import Identity, Member
from tests.factories import assert_ledger_invariants, make_member, make_store
from tests.fakes.platform_server import (
    Reply,
    alipay_request_signature_valid,
    alipay_signed_response,
    json_reply,
    text_reply,
)

pytestmark = pytest.mark.django_db

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "mp"
SESSION = json.loads((FIXTURES / "wechat_jscode2session.json").read_text())
INVALID_CODE = json.loads((FIXTURES / "wechat_jscode2session_invalid_code.json").read_text())
ALIPAY_TOKEN = json.loads((FIXTURES / "alipay_oauth_token.json").read_text())
ALIPAY_CODE_INVALID = json.loads((FIXTURES / "alipay_oauth_token_code_invalid.json").read_text())
ALIPAY_RESPONSE_KEY = "alipay_system_oauth_token_response"

MINIAPP = {"WECHAT_MINIAPP_ID": "wx-mini", "WECHAT_MINIAPP_SECRET": "mini-secret"}
Channel = Identity.Channel


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, (response.status_code, response.content[:500])
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["code"] == code, body
    assert isinstance(body["message"], str) and body["message"]
    return body


def post(path: str, body, **extra):
    return Client().post(path, data=json.dumps(body), content_type="application/json", **extra)


def me(token: str):
    return Client().get("/api/mp/v1/me/", headers={"Authorization": f"Bearer {token}"})


# --- WeChat -------------------------------------------------------------------------------


@pytest.fixture
def wechat(platform_server):
    """The mini-program configured, WeChat faked."""
    with override_settings(**platform_server.settings(), **MINIAPP, PLATFORM_TIMEOUT_SECONDS=2):
        yield platform_server


def jscode2session(answer: dict, *, code: str = "CODE-1"):
    """WeChat's jscode2session: ``answer`` for our app's credentials and ``code``, 40029 for any other code."""

    def script(request):
        assert (request.param("appid"), request.param("secret")) == ("wx-mini", "mini-secret")
        assert request.param("grant_type") == "authorization_code"
        return json_reply(answer if request.param("js_code") == code else INVALID_CODE)

    return script


def wechat_login(code: str = "CODE-1"):
    return post("/api/mp/v1/auth/wechat/", {"code": code})


def test_wechat_login_makes_a_new_member_and_a_token_that_opens_me(wechat):
    wechat.script("/sns/jscode2session", jscode2session(SESSION))

    response = wechat_login()

    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"token", "member_no", "expires_at", "created"}
    assert body["created"] is True
    member = Member.objects.get(member_no=body["member_no"])
    assert member.join_channel == Member.Channel.MINIAPP
    assert set(member.identities.values_list("channel", "external_id")) == {
        (Channel.MINIAPP_OPENID, SESSION["openid"]),
        (Channel.WECHAT_UNIONID, SESSION["unionid"]),
    }
    assert me(body["token"]).json()["member_no"] == member.member_no
    [request] = wechat.requests_to("/sns/jscode2session")
    assert request.param("js_code") == "CODE-1"


def test_wechat_session_key_stays_on_the_server(wechat):
    wechat.script("/sns/jscode2session", jscode2session(SESSION))

    response = wechat_login()

    assert SESSION["session_key"] not in response.content.decode()
    member = Member.objects.get(member_no=response.json()["member_no"])
    assert cache.get(f"miniapp-session-key:{member.pk}") == SESSION["session_key"]


def test_wechat_login_again_finds_the_same_member(wechat):
    wechat.script("/sns/jscode2session", jscode2session(SESSION))
    first = wechat_login().json()

    second = wechat_login().json()

    assert second["member_no"] == first["member_no"] and second["created"] is False
    assert Member.objects.count() == 1


def test_wechat_login_without_unionid_still_finds_the_member_by_openid(wechat):
    answer = {key: value for key, value in SESSION.items() if key != "unionid"}
    wechat.script("/sns/jscode2session", jscode2session(answer))

    body = wechat_login().json()

    member = Member.objects.get(member_no=body["member_no"])
    assert list(member.identities.values_list("channel", flat=True)) == [Channel.MINIAPP_OPENID]


def test_wechat_login_links_an_official_account_follower_by_unionid(wechat):
    follower = identity.member_for_identity(
        channel=Channel.WECHAT_OPENID, external_id="oa-follower-1", unionid=SESSION["unionid"],
        join_channel=Member.Channel.WECHAT,
    ).member
    wechat.script("/sns/jscode2session", jscode2session(SESSION))

    body = wechat_login().json()

    assert body["member_no"] == follower.member_no and body["created"] is False
    assert Member.objects.count() == 1
    assert Identity.objects.get(channel=Channel.MINIAPP_OPENID, external_id=SESSION["openid"]).member_id == follower.pk


def test_wechat_login_merges_a_follower_and_a_mini_program_member_who_share_a_unionid(wechat):
    store = make_store()
    follower = identity.member_for_identity(
        channel=Channel.WECHAT_OPENID, external_id="oa-follower-1", unionid=SESSION["unionid"],
        join_channel=Member.Channel.WECHAT,
    ).member
    shopper = identity.member_for_identity(
        channel=Channel.MINIAPP_OPENID, external_id=SESSION["openid"], join_channel=Member.Channel.MINIAPP
    ).member
    ledger.points_earn(member=follower, store=store, amount_fen=10_000, idempotency_key="earn-follower")
    ledger.points_earn(member=shopper, store=store, amount_fen=25_000, idempotency_key="earn-shopper")
    shopper_token = shopper_token_issue(member=shopper).token
    wechat.script("/sns/jscode2session", jscode2session(SESSION))

    body = wechat_login().json()

    assert body["member_no"] == follower.member_no  # the older member survives
    shopper.refresh_from_db()
    assert shopper.status == Member.Status.MERGED and shopper.merged_into_id == follower.pk
    assert ledger.member_points_balance(member=follower) == 350
    assert ledger.member_points_balance(member=shopper) == 0
    assert me(body["token"]).json()["points_balance"] == 350
    # The merged-away member's token is not logged out: it speaks for the survivor.
    assert me(shopper_token).json()["member_no"] == follower.member_no
    assert_ledger_invariants()


@pytest.mark.parametrize(("errcode", "status", "code"), [
    (40029, 400, "login_code_invalid"),
    (40163, 400, "login_code_invalid"),
    (40226, 403, "login_refused"),
    (-1, 503, "platform_unavailable"),
    (40125, 502, "platform_rejected"),  # our app secret is wrong
])
def test_wechat_refusals_map_to_stable_codes_and_create_nothing(wechat, errcode, status, code):
    wechat.script("/sns/jscode2session", json_reply({"errcode": errcode, "errmsg": "refused"}))

    assert_error(wechat_login(), status, code)

    assert Member.objects.count() == 0
    assert Identity.objects.count() == 0


def test_wechat_login_with_a_used_code_is_refused_as_invalid(wechat):
    wechat.script("/sns/jscode2session", jscode2session(SESSION, code="CODE-1"))

    assert_error(wechat_login("CODE-USED"), 400, "login_code_invalid")

    assert Member.objects.count() == 0


@pytest.mark.parametrize(("reply", "status", "code"), [
    (text_reply("{}", delay=3), 503, "platform_unavailable"),
    (json_reply({"errmsg": "busy"}, status=502), 503, "platform_unavailable"),
    (text_reply("<html>gateway error</html>", content_type="text/html"), 502, "platform_bad_response"),
    (json_reply({"session_key": "x"}), 502, "platform_bad_response"),  # no openid
    (json_reply({"openid": "o-1"}), 502, "platform_bad_response"),  # no session key
    (json_reply({"openid": "o" * 200, "session_key": "x"}), 502, "platform_bad_response"),
    (json_reply({"openid": "o-1", "session_key": "x", "unionid": 42}), 502, "platform_bad_response"),
], ids=["timeout", "http-502", "html", "no-openid", "no-session-key", "oversized-openid", "unionid-not-text"])
def test_wechat_failures_answer_502_or_503_and_create_nothing(wechat, reply, status, code):
    wechat.script("/sns/jscode2session", reply)

    with override_settings(PLATFORM_TIMEOUT_SECONDS=0.3):
        assert_error(wechat_login(), status, code)

    assert Member.objects.count() == 0


@override_settings(WECHAT_MINIAPP_ID="", WECHAT_MINIAPP_SECRET="")
def test_wechat_login_answers_503_when_the_mini_program_is_not_configured():
    assert_error(wechat_login(), 503, "platform_not_configured")


def test_wechat_login_refuses_a_banned_member_and_issues_no_token(wechat):
    found = identity.member_for_identity(
        channel=Channel.MINIAPP_OPENID, external_id=SESSION["openid"], join_channel=Member.Channel.MINIAPP
    )
    Member.objects.filter(pk=found.member.pk).update(status=Member.Status.BANNED)
    wechat.script("/sns/jscode2session", jscode2session(SESSION))

    body = assert_error(wechat_login(), 403, "member_banned")

    assert "token" not in body


@pytest.mark.parametrize("body", [{}, {"code": ""}, {"code": 42}, {"code": "x" * 129}, ["CODE-1"]])
def test_wechat_login_refuses_malformed_input_without_calling_wechat(wechat, body):
    assert_error(post("/api/mp/v1/auth/wechat/", body), 400, "validation_error")

    assert wechat.requests == []


# --- Alipay -------------------------------------------------------------------------------




@pytest.fixture
def alipay(platform_server, app_keys, alipay_keys):
    """Alipay configured with keys made for the test, its gateway faked."""
    with override_settings(
        **platform_server.settings(), ALIPAY_APP_ID="2021000000000001", ALIPAY_APP_PRIVATE_KEY=app_keys.private_pem,
        ALIPAY_PUBLIC_KEY=alipay_keys.public_pem, PLATFORM_TIMEOUT_SECONDS=2,
    ):
        yield platform_server


def oauth_token(app_keys, alipay_keys, answer: dict, *, response_key: str = ALIPAY_RESPONSE_KEY, code: str = "AUTH-1"):
    """alipay.system.oauth.token: answers only requests signed with our app key, for ``code``,
    signing its answer with the (fake) Alipay key."""

    def script(request):
        form = request.form
        assert alipay_request_signature_valid(form, app_keys.public_pem)
        assert (form["method"], form["grant_type"]) == ("alipay.system.oauth.token", "authorization_code")
        if form["code"] != code:
            return Reply(body=alipay_signed_response("error_response", ALIPAY_CODE_INVALID, alipay_keys.private_pem))
        return Reply(body=alipay_signed_response(response_key, answer, alipay_keys.private_pem))

    return script


def alipay_login(auth_code: str = "AUTH-1"):
    return post("/api/mp/v1/auth/alipay/", {"auth_code": auth_code})


def test_alipay_login_makes_a_new_member_by_user_id(alipay, app_keys, alipay_keys):
    alipay.script("/gateway.do", oauth_token(app_keys, alipay_keys, ALIPAY_TOKEN))

    response = alipay_login()

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["created"] is True
    member = Member.objects.get(member_no=body["member_no"])
    assert member.join_channel == Member.Channel.ALIPAY
    assert list(member.identities.values_list("channel", "external_id")) == [(Channel.ALIPAY_USER_ID, ALIPAY_TOKEN["user_id"])]
    assert me(body["token"]).status_code == 200
    assert ALIPAY_TOKEN["access_token"] not in response.content.decode()


def test_alipay_login_again_finds_the_same_member(alipay, app_keys, alipay_keys):
    alipay.script("/gateway.do", oauth_token(app_keys, alipay_keys, ALIPAY_TOKEN))
    first = alipay_login().json()

    second = alipay_login().json()

    assert (second["member_no"], second["created"]) == (first["member_no"], False)


def test_alipay_login_takes_the_open_id_of_apps_that_get_no_user_id(alipay, app_keys, alipay_keys):
    answer = {"open_id": "074a1CcTG1LelxKe4xQC0zgNdId0nxi95b5lsNpazWYoCo5", "access_token": "AT"}
    alipay.script("/gateway.do", oauth_token(app_keys, alipay_keys, answer))

    member = Member.objects.get(member_no=alipay_login().json()["member_no"])

    assert member.identities.get().external_id == answer["open_id"]


def test_alipay_refused_auth_code_is_400_and_creates_nothing(alipay, app_keys, alipay_keys):
    alipay.script("/gateway.do", oauth_token(app_keys, alipay_keys, ALIPAY_TOKEN, code="AUTH-1"))

    assert_error(alipay_login("AUTH-USED"), 400, "login_code_invalid")

    assert Member.objects.count() == 0


@pytest.mark.parametrize(("sub_code", "status", "code"), [
    ("isv.unmatched-app-id", 400, "login_code_invalid"),
    ("isp.unknow-error", 503, "platform_unavailable"),
    ("isv.invalid-app-id", 502, "platform_rejected"),
])
def test_alipay_refusals_map_to_stable_codes(alipay, app_keys, alipay_keys, sub_code, status, code):
    refusal = {"code": "40002", "msg": "Invalid Arguments", "sub_code": sub_code, "sub_msg": "…"}
    alipay.script("/gateway.do", oauth_token(app_keys, alipay_keys, refusal, response_key="error_response"))

    assert_error(alipay_login(), status, code)

    assert Member.objects.count() == 0


@pytest.mark.parametrize(("reply", "status", "code"), [
    (text_reply("{}", delay=3), 503, "platform_unavailable"),
    (text_reply("<html>gateway error</html>", content_type="text/html"), 502, "platform_bad_response"),
    (json_reply({ALIPAY_RESPONSE_KEY: ALIPAY_TOKEN, "sign": "forged"}), 502, "platform_bad_response"),
], ids=["timeout", "html", "bad-signature"])
def test_alipay_failures_answer_502_or_503_and_create_nothing(alipay, reply, status, code):
    alipay.script("/gateway.do", reply)

    with override_settings(PLATFORM_TIMEOUT_SECONDS=0.3):
        assert_error(alipay_login(), status, code)

    assert Member.objects.count() == 0


def test_alipay_answer_without_a_user_is_a_bad_response(alipay, app_keys, alipay_keys):
    alipay.script("/gateway.do", oauth_token(app_keys, alipay_keys, {"access_token": "AT"}))

    assert_error(alipay_login(), 502, "platform_bad_response")

    assert Member.objects.count() == 0


@override_settings(ALIPAY_APP_ID="", ALIPAY_APP_PRIVATE_KEY="", ALIPAY_PUBLIC_KEY="")
def test_alipay_login_answers_503_when_alipay_is_not_configured():
    assert_error(alipay_login(), 503, "platform_not_configured")


# --- throttling ---------------------------------------------------------------------------


@override_settings(SHOPPER_LOGIN_RATE="3/min", WECHAT_MINIAPP_ID="", WECHAT_MINIAPP_SECRET="")
def test_login_attempts_are_throttled_per_client_address():
    for _ in range(3):
        assert_error(wechat_login(), 503, "platform_not_configured")

    response = post("/api/mp/v1/auth/alipay/", {"auth_code": "A"})

    assert_error(response, 429, "throttled")
    assert int(response["Retry-After"]) > 0
    # Another address has its own count.
    assert_error(post("/api/mp/v1/auth/wechat/", {"code": "C"}, REMOTE_ADDR="10.0.0.2"), 503, "platform_not_configured")


# --- the sandbox demo login -----------------------------------------------------------------


def demo_login(body=None, **extra):
    return post("/api/mp/v1/auth/demo/", body if body is not None else {}, **extra)


def seeded_demo_member(n: int = 0) -> Member:
    """A shopper as seed_demo makes them."""
    member = make_member(nickname=f"Demo shopper {n}")
    Identity.objects.create(member=member, channel=Channel.WECHAT_OPENID, external_id=f"demo-openid-{n:03d}")
    return member


@override_settings(O2O_SANDBOX=True)
def test_demo_login_in_sandbox_makes_a_new_demo_shopper():
    response = demo_login()

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["created"] is True
    member = Member.objects.get(member_no=body["member_no"])
    assert member.identities.get().external_id.startswith("demo-")
    assert me(body["token"]).json()["nickname"] == "Demo shopper"


@override_settings(O2O_SANDBOX=True)
def test_demo_login_in_sandbox_logs_in_as_a_seeded_demo_shopper():
    member = seeded_demo_member()

    body = demo_login({"member_no": member.member_no}).json()

    assert (body["member_no"], body["created"]) == (member.member_no, False)
    assert shopper_token_read(token=body["token"]).pk == member.pk


@override_settings(O2O_SANDBOX=True)
def test_demo_login_refuses_a_member_without_a_demo_identity():
    real = identity.member_for_identity(channel=Channel.WECHAT_OPENID, external_id="o-real", join_channel=Member.Channel.WECHAT).member

    assert_error(demo_login({"member_no": real.member_no}), 404, "demo_member_not_found")
    assert_error(demo_login({"member_no": "000000000000"}), 404, "demo_member_not_found")


@override_settings(O2O_SANDBOX=True)
def test_demo_login_refuses_a_banned_demo_shopper():
    member = seeded_demo_member()
    Member.objects.filter(pk=member.pk).update(status=Member.Status.BANNED)

    assert_error(demo_login({"member_no": member.member_no}), 403, "member_banned")


@override_settings(O2O_SANDBOX=False)
@pytest.mark.parametrize("method", ["post", "get", "put", "delete"])
def test_demo_login_does_not_exist_outside_sandbox(method):
    member = seeded_demo_member()
    client = Client(enforce_csrf_checks=True)
    body = {"data": json.dumps({"member_no": member.member_no}), "content_type": "application/json"} if method != "get" else {}

    response = client.generic(method.upper(), "/api/mp/v1/auth/demo/", **body)
    unknown = client.generic(method.upper(), "/api/mp/v1/auth/nowhere/", **body)

    assert (response.status_code, response.json()) == (unknown.status_code, unknown.json())
    assert_error(response, 404, "not_found")
    assert Member.objects.count() == 1
