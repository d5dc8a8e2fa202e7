"""A new follower's unionid is learned during their first message, after its commit and
before the reply, so that the mini-program they open a second later is the same member
with the same points; when WeChat is slow, refuses or names none, the task takes over."""

import json
import time

import pytest
from django.test import Client

from bots import tasks
from bots import wechat as wechat_endpoint
from members import services
from members.models import Identity, Member
from tests.bots.conftest import configure_wechat
from tests.bots.platforms import OPENID, WeChat, fixture_xml
from tests.fakes.platform_server import Reply, json_reply

pytestmark = pytest.mark.django_db

UNIONID = "o6_bmasdasdsad6_2sgVt7hMZOPfL"
USER_INFO = {"subscribe": 1, "openid": OPENID, "unionid": UNIONID}
TASK = "bots.tasks.wechat_unionid_fetch"
Channel = Identity.Channel


@pytest.fixture
def official_account(settings, platform_server):
    """The official account with its app secret and the mini-program, in plaintext mode;
    WeChat's API is the local fake."""
    configure_wechat(settings, aes_key="")
    for name, value in platform_server.settings().items():
        setattr(settings, name, value)
    settings.WECHAT_APP_SECRET = "oa-secret"
    settings.WECHAT_MINIAPP_ID, settings.WECHAT_MINIAPP_SECRET = "wx-mini", "mini-secret"
    settings.PLATFORM_TIMEOUT_SECONDS = 3
    platform_server.script("/cgi-bin/token", json_reply({"access_token": "TOKEN-1", "expires_in": 7200}))
    return platform_server


@pytest.fixture
def enqueued(monkeypatch):
    """Tasks the inline attempt hands over, recorded instead of run (tests run tasks
    synchronously, which would hide whether the reply waited for one)."""
    calls = []
    for module in (tasks, wechat_endpoint):
        monkeypatch.setattr(module, "async_task", lambda func, *args: calls.append((func, *args)))
    return calls


def slow_then_fast(payload: dict, *, delay: float):
    """A script answering its first request after ``delay`` seconds, later ones at once."""
    calls = []

    def script(_request):
        calls.append(1)
        return Reply(body=json.dumps(payload), delay=delay if len(calls) == 1 else 0.0)

    return script


def follower() -> Member:
    return Identity.objects.get(channel=Channel.WECHAT_OPENID, external_id=OPENID).member


def unionid_member() -> Member | None:
    identity = Identity.objects.filter(channel=Channel.WECHAT_UNIONID, external_id=UNIONID).first()
    return identity.member if identity else None


@pytest.mark.django_db(transaction=True)
def test_a_new_followers_scan_links_the_unionid_before_the_reply_and_the_miniprogram_finds_that_member(
    official_account, enqueued
):
    services.plaza_create(code="sh-wanda", name="上海五角场万达广场")
    official_account.script("/cgi-bin/user/info", json_reply(USER_INFO))
    official_account.script(
        "/sns/jscode2session", json_reply({"openid": "mini-openid-1", "session_key": "c2Vzc2lvbmtleTEyMzQ1Ng==",
                                          "unionid": UNIONID}),
    )

    # Real commits, as in production: what runs after the commit runs inside the
    # request, so what is there when the reply is back was done before it.
    reply = WeChat(Client(), safe=False).say(fixture_xml("wechat/subscribe_scene.xml"))

    assert "签到成功！" in reply
    assert unionid_member() == follower()
    assert enqueued == []
    [info] = official_account.requests_to("/cgi-bin/user/info")
    assert (info.param("openid"), info.param("access_token")) == (OPENID, "TOKEN-1")

    login = Client().post("/api/mp/v1/auth/wechat/", data=json.dumps({"code": "CODE-1"}),
                          content_type="application/json")

    assert login.status_code == 200, login.content
    body = login.json()
    assert (body["member_no"], body["created"]) == (follower().member_no, False)
    me = Client().get("/api/mp/v1/me/", headers={"Authorization": f"Bearer {body['token']}"})
    assert me.json()["points_balance"] == 10
    assert Member.objects.count() == 1
    assert set(follower().identities.values_list("channel", flat=True)) == {
        "wechat_openid", "wechat_unionid", "miniapp_openid",
    }


def test_a_slow_user_info_leaves_the_reply_fast_and_the_task_links_later(
    official_account, enqueued, settings, client, django_capture_on_commit_callbacks
):
    settings.WECHAT_UNIONID_INLINE_TIMEOUT_SECONDS = 0.3
    official_account.script("/cgi-bin/user/info", slow_then_fast(USER_INFO, delay=3.0))
    wechat = WeChat(client, safe=False, on_commit=django_capture_on_commit_callbacks)

    started = time.monotonic()
    reply = wechat.say(fixture_xml("wechat/subscribe.xml"))
    elapsed = time.monotonic() - started

    assert "欢迎加入大会员" in reply
    assert elapsed < 2.0, elapsed  # gave up after 0.3 s; WeChat answers after 3 s
    assert unionid_member() is None
    assert enqueued == [(TASK, OPENID)]

    tasks.wechat_unionid_fetch(OPENID)  # the task, in the cluster, with PLATFORM_TIMEOUT_SECONDS

    assert unionid_member() == follower()
    assert len(official_account.requests_to("/cgi-bin/user/info")) == 2


def test_a_slow_access_token_counts_against_the_same_short_wait(
    official_account, enqueued, settings, client, django_capture_on_commit_callbacks
):
    settings.WECHAT_UNIONID_INLINE_TIMEOUT_SECONDS = 0.3
    official_account.script(
        "/cgi-bin/token", slow_then_fast({"access_token": "TOKEN-1", "expires_in": 7200}, delay=3.0)
    )
    official_account.script("/cgi-bin/user/info", json_reply(USER_INFO))
    wechat = WeChat(client, safe=False, on_commit=django_capture_on_commit_callbacks)

    started = time.monotonic()
    wechat.say(fixture_xml("wechat/subscribe.xml"))

    assert time.monotonic() - started < 2.0
    assert official_account.requests_to("/cgi-bin/user/info") == []
    assert enqueued == [(TASK, OPENID)]


@pytest.mark.parametrize("user_info", [
    json_reply({"subscribe": 1, "openid": OPENID}),  # the account is bound to no open platform
    json_reply({"errcode": 40003, "errmsg": "invalid openid"}),
    json_reply({"errcode": -1, "errmsg": "system error"}),
    Reply(status=502, body="bad gateway"),
])
def test_user_info_without_a_unionid_or_failing_hands_over_to_the_task(
    official_account, enqueued, client, django_capture_on_commit_callbacks, user_info
):
    official_account.script("/cgi-bin/user/info", user_info)
    wechat = WeChat(client, safe=False, on_commit=django_capture_on_commit_callbacks)

    assert "欢迎加入大会员" in wechat.say(fixture_xml("wechat/subscribe.xml"))

    assert follower().status == Member.Status.ACTIVE
    assert not Identity.objects.filter(channel=Channel.WECHAT_UNIONID).exists()
    assert enqueued == [(TASK, OPENID)]


def test_an_access_token_wechat_calls_invalid_is_not_refetched_inline(
    official_account, enqueued, client, django_capture_on_commit_callbacks
):
    official_account.script("/cgi-bin/user/info", json_reply({"errcode": 40001, "errmsg": "invalid credential"}))
    wechat = WeChat(client, safe=False, on_commit=django_capture_on_commit_callbacks)

    wechat.say(fixture_xml("wechat/subscribe.xml"))

    # One token, one try: refreshing the token and trying again is the task's to do.
    assert len(official_account.requests_to("/cgi-bin/token")) == 1
    assert len(official_account.requests_to("/cgi-bin/user/info")) == 1
    assert enqueued == [(TASK, OPENID)]


def test_a_known_follower_is_asked_again_by_the_task_only(
    official_account, enqueued, client, django_capture_on_commit_callbacks
):
    official_account.script("/cgi-bin/user/info", json_reply({"subscribe": 1, "openid": OPENID}))
    wechat = WeChat(client, safe=False, on_commit=django_capture_on_commit_callbacks)
    wechat.say(fixture_xml("wechat/subscribe.xml"))  # new: asked inline, no unionid, handed over
    enqueued.clear()

    wechat.say(fixture_xml("wechat/text.xml"))
    wechat.say(fixture_xml("wechat/subscribe.xml", CreateTime=1700009999))  # follows again

    assert len(official_account.requests_to("/cgi-bin/user/info")) == 1
    assert enqueued == [(TASK, OPENID)]


def test_without_the_app_secret_a_new_follower_is_not_asked(settings, client, platform_server, enqueued):
    configure_wechat(settings, aes_key="")
    for name, value in platform_server.settings().items():
        setattr(settings, name, value)

    WeChat(client, safe=False).say(fixture_xml("wechat/subscribe.xml"))

    assert platform_server.requests == [] and enqueued == []
