"""A follower's unionid is fetched from WeChat's user info (for a new follower during their
first message, else by a task), and links them to their mini-program self."""

import pytest
from django.test import override_settings

from bots.models import InboundMessage
from members import ledger
from members.identity import member_for_identity
from members.models import Identity, Member
from tests.bots.platforms import OPENID, fixture_xml
from tests.fakes.platform_server import json_reply

pytestmark = pytest.mark.django_db


@pytest.fixture
def wechat_api(platform_server, wechat_settings):
    """The official account with its app secret: WeChat's API is the local fake."""
    platform_server.script("/cgi-bin/token", json_reply({"access_token": "TOKEN-1", "expires_in": 7200}))
    with override_settings(**platform_server.settings(), WECHAT_APP_SECRET="oa-secret", PLATFORM_TIMEOUT_SECONDS=2):
        yield platform_server


def test_a_follower_and_a_miniprogram_user_with_one_unionid_are_one_member(wechat, wechat_api, plaza):
    shopper = member_for_identity(
        channel=Identity.Channel.MINIAPP_OPENID, external_id="mini-openid-1", unionid="union-1",
        join_channel=Member.Channel.MINIAPP,
    ).member
    ledger.points_grant(member=shopper, points=300, reason="gift", idempotency_key="t:mini-gift")
    wechat_api.script("/cgi-bin/user/info", json_reply({"subscribe": 1, "openid": OPENID, "unionid": "union-1"}))

    reply = wechat.say(fixture_xml("wechat/subscribe_scene.xml"))

    assert "签到成功！" in reply  # the check-in made on the follower's new member, then merged
    [info] = wechat_api.requests_to("/cgi-bin/user/info")
    assert info.param("openid") == OPENID and info.param("access_token") == "TOKEN-1"
    follower = Identity.objects.get(channel=Identity.Channel.WECHAT_OPENID, external_id=OPENID)
    assert follower.member_id == shopper.pk
    assert Member.objects.filter(status=Member.Status.ACTIVE).count() == 1
    # The check-in made on the follower's new member moved over with the merge.
    assert ledger.member_points_balance(member=shopper) == 310
    assert set(Identity.objects.filter(member=shopper).values_list("channel", flat=True)) == {
        "miniapp_openid", "wechat_unionid", "wechat_openid",
    }


def test_a_known_unionid_is_not_fetched_again(wechat, wechat_api):
    wechat_api.script("/cgi-bin/user/info", json_reply({"subscribe": 1, "openid": OPENID, "unionid": "union-9"}))
    wechat.say(fixture_xml("wechat/subscribe.xml"))
    wechat.say(fixture_xml("wechat/text.xml"))
    wechat.say(fixture_xml("wechat/subscribe.xml", CreateTime=1700009999))
    assert len(wechat_api.requests_to("/cgi-bin/user/info")) == 1
    assert Identity.objects.filter(channel=Identity.Channel.WECHAT_UNIONID, external_id="union-9").exists()


def test_user_info_refused_or_down_leaves_the_member_as_is(wechat, wechat_api):
    wechat_api.script("/cgi-bin/user/info", json_reply({"errcode": 40003, "errmsg": "invalid openid"}))
    assert "欢迎加入大会员" in wechat.say(fixture_xml("wechat/subscribe.xml"))
    assert not Identity.objects.filter(channel=Identity.Channel.WECHAT_UNIONID).exists()
    assert InboundMessage.objects.count() == 1


def test_without_an_app_secret_wechat_is_never_called(wechat, platform_server):
    with override_settings(**platform_server.settings()):
        wechat.say(fixture_xml("wechat/subscribe.xml"))
    assert platform_server.requests == []
    assert Identity.objects.filter(channel=Identity.Channel.WECHAT_OPENID).count() == 1
