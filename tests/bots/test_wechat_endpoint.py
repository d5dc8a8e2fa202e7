"""/wechat/: URL verification, every event and command in plaintext and safe mode, dedup."""

import time
from urllib.parse import urlencode

import pytest
from django.utils import timezone

from bots.models import InboundMessage
from bots.wechat import wechat_token
from members import ledger
from members.checkin import checkin
from members.models import Checkin, Identity, Member, Visit
from tests.bots.conftest import configure_wechat
from tests.bots.platforms import OPENID, WECHAT_TOKEN, WeChat, fixture_xml, wechat_signature
from tests.factories import assert_ledger_invariants

pytestmark = pytest.mark.django_db


def member_of(openid: str = OPENID) -> Member:
    return Identity.objects.get(channel=Identity.Channel.WECHAT_OPENID, external_id=openid).member


# --- URL verification -------------------------------------------------------------------


def now() -> str:
    return str(int(time.time()))


def test_url_verification_answers_echostr_to_a_good_signature(client, wechat_settings):
    timestamp = now()
    query = {"signature": wechat_signature(WECHAT_TOKEN, timestamp, "n0nce"), "timestamp": timestamp,
             "nonce": "n0nce", "echostr": "5837397520665436492"}
    response = client.get("/wechat/?" + urlencode(query))
    assert response.status_code == 200
    assert response.content == b"5837397520665436492"


@pytest.mark.parametrize("query", [
    lambda t: {"signature": "0" * 40, "timestamp": t, "nonce": "n0nce", "echostr": "1"},
    lambda t: {"signature": wechat_signature("another-token", t, "n0nce"), "timestamp": t, "nonce": "n0nce",
               "echostr": "1"},
    lambda t: {"timestamp": t, "nonce": "n0nce", "echostr": "1"},
    lambda t: {"signature": wechat_signature(WECHAT_TOKEN, "", ""), "echostr": "1"},
])
def test_url_verification_refuses_a_bad_or_missing_signature(client, wechat_settings, query):
    response = client.get("/wechat/?" + urlencode(query(now())))
    assert response.status_code == 403
    assert b"1" not in response.content


def test_without_a_token_outside_the_sandbox_the_endpoint_does_not_exist(client, settings):
    settings.WECHAT_TOKEN, settings.O2O_SANDBOX = "", False
    assert client.get("/wechat/?signature=x&timestamp=1&nonce=2&echostr=3").status_code == 404
    assert client.post("/wechat/", data=fixture_xml("wechat/text.xml"), content_type="text/xml").status_code == 404


def test_the_sandbox_without_a_token_signs_with_a_token_derived_from_the_secret_key(client, settings):
    settings.WECHAT_TOKEN, settings.O2O_SANDBOX = "", True
    token = wechat_token()
    assert len(token) == 32 and token != ""
    timestamp = now()
    good = {"signature": wechat_signature(token, timestamp, "2"), "timestamp": timestamp, "nonce": "2", "echostr": "ok"}
    assert client.get("/wechat/?" + urlencode(good)).content == b"ok"
    settings.SECRET_KEY = "another-secret-key-" + "y" * 40
    assert wechat_token() != token
    assert client.get("/wechat/?" + urlencode(good)).status_code == 403


def test_only_get_and_post(client, wechat_settings):
    timestamp = now()
    query = {"signature": wechat_signature(WECHAT_TOKEN, timestamp, "2"), "timestamp": timestamp, "nonce": "2"}
    assert client.put("/wechat/?" + urlencode(query)).status_code == 405


# --- text commands ----------------------------------------------------------------------


def test_first_message_makes_the_follower_a_member_and_answers_in_the_mode_it_came_in(wechat, mode):
    started = time.monotonic()
    response = wechat.post(fixture_xml("wechat/text.xml", Content="积分"))
    assert time.monotonic() - started < 1.0  # WeChat gives up after 5 s
    reply = wechat.reply(response)  # in safe mode: decrypted and its MsgSignature checked
    assert reply["ToUserName"] == OPENID and reply["FromUserName"] == "gh_7f083739789a"
    assert "您的积分：0 分" in reply["Content"]
    assert (b"<Encrypt>" in response.content) is (mode == "safe")
    member = member_of()
    assert member.join_channel == Member.Channel.WECHAT
    identity = Identity.objects.get(external_id=OPENID)
    assert identity.is_following and identity.last_inbound_at is not None
    [logged] = InboundMessage.objects.all()
    assert (logged.channel, logged.dedup_key, logged.from_user) == ("wechat", "msg:24361876493016172", OPENID)
    assert logged.msg_type == "text"
    assert logged.content == "积分" and logged.reply == reply["Content"] and logged.member == member


@pytest.mark.parametrize(("text", "expected"), [
    ("积分", "您的积分：0 分"),
    ("Points", "Your points: 0"),
    ("签到", "扫描广场入口或服务台的签到二维码"),
    ("check in", "scan the check-in QR code"),
    ("优惠券", "您目前还没有优惠券"),
    ("coupons", "you have none yet"),
    ("会员码", "您的会员号："),
    ("Member Code", "Your member number:"),
    ("帮助", "您可以发送"),
    ("help", "You can send"),
    ("今天天气怎么样", "抱歉，我没有看懂"),
    ("what's up", "Sorry, I did not get that"),
])
def test_text_commands_in_chinese_and_english(wechat, text, expected):
    assert expected in wechat.say(fixture_xml("wechat/text.xml", Content=text))


def test_points_shows_the_balance_tier_and_what_expires_soon(wechat, plaza):
    wechat.say(fixture_xml("wechat/text.xml", Content="积分", MsgId=1))
    member = member_of()
    ledger.points_grant(member=member, points=120, reason="gift", idempotency_key="t:gift",
                        expires_at=timezone.now() + timezone.timedelta(days=10))
    reply = wechat.say(fixture_xml("wechat/text.xml", Content="积分", MsgId=2))
    assert "您的积分：120 分" in reply and "120 分将在 30 天内到期" in reply


def test_member_code_links_to_the_member_card_on_the_public_host(wechat, settings):
    reply = wechat.say(fixture_xml("wechat/text.xml", Content="会员码", MsgId=1))
    assert member_of().member_no in reply and "http://testserver/m/" in reply
    settings.O2O_PUBLIC_BASE_URL = "https://mall.example.com/"
    assert "https://mall.example.com/m/" in wechat.say(fixture_xml("wechat/text.xml", Content="会员码", MsgId=2))


def test_check_in_by_text_explains_and_shows_todays_check_in_but_checks_nobody_in(wechat, plaza):
    reply = wechat.say(fixture_xml("wechat/text.xml", Content="签到", MsgId=1))
    assert "签到二维码" in reply
    assert not Checkin.objects.exists()
    checkin(member=member_of(), plaza=plaza)
    reply = wechat.say(fixture_xml("wechat/text.xml", Content="签到", MsgId=2))
    assert "您今天已在上海五角场万达广场签到（连续 1 天），当前积分 10 分" in reply
    assert Checkin.objects.count() == 1


# --- events -----------------------------------------------------------------------------


def test_subscribe_without_a_scene_welcomes_a_new_member(wechat):
    reply = wechat.say(fixture_xml("wechat/subscribe.xml"))
    assert "欢迎加入大会员" in reply and "您可以发送" in reply
    assert Identity.objects.get(external_id=OPENID).is_following
    assert not Checkin.objects.exists()


def test_subscribe_with_a_checkin_scene_makes_a_member_with_10_points_and_a_visit(wechat, plaza):
    reply = wechat.say(fixture_xml("wechat/subscribe_scene.xml"))
    member = member_of()
    assert member.join_plaza == plaza
    assert ledger.member_points_balance(member=member) == 10
    assert Visit.objects.filter(member=member, plaza=plaza, kind=Visit.Kind.CHECKIN).count() == 1
    assert "签到成功！上海五角场万达广场 +10 积分，已连续签到 1 天。当前积分 10 分。" in reply
    assert "今日活动：星巴克买一送一" in reply and "欢迎加入大会员" in reply
    assert_ledger_invariants()


def test_scan_checks_in_and_a_second_scan_the_same_day_says_already(wechat, plaza):
    wechat.say(fixture_xml("wechat/subscribe.xml"))
    first = wechat.say(fixture_xml("wechat/scan.xml", CreateTime=1700000100))
    assert "签到成功！" in first and "当前积分 10 分" in first and "今日活动：星巴克买一送一" in first
    again = wechat.say(fixture_xml("wechat/scan.xml", CreateTime=1700000200))
    assert "您今天已在上海五角场万达广场签到过了（连续 1 天），当前积分 10 分。" in again
    assert Checkin.objects.count() == 1 and ledger.member_points_balance(member=member_of()) == 10


def test_a_scan_of_an_unknown_or_closed_plaza_says_the_code_is_invalid(wechat, plaza):
    plaza.is_active = False
    plaza.save(update_fields=["is_active"])
    assert "签到码已失效" in wechat.say(fixture_xml("wechat/scan.xml"))
    unknown = fixture_xml("wechat/scan.xml", EventKey="checkin:nowhere", CreateTime=1700000300)
    assert "签到码已失效" in wechat.say(unknown)
    assert not Checkin.objects.exists()


def test_a_scan_of_another_scene_is_recorded_without_a_reply(wechat, plaza):
    assert wechat.say(fixture_xml("wechat/scan.xml", EventKey="poster:2026-spring")) == ""
    assert InboundMessage.objects.get().content == "poster:2026-spring"


def test_unsubscribe_marks_the_follower_gone_and_answers_nothing(wechat):
    wechat.say(fixture_xml("wechat/subscribe.xml"))
    assert wechat.say(fixture_xml("wechat/unsubscribe.xml")) == ""
    assert not Identity.objects.get(external_id=OPENID).is_following
    assert InboundMessage.objects.get(event="unsubscribe").member == member_of()


def test_unsubscribe_of_a_stranger_creates_no_member(wechat):
    assert wechat.say(fixture_xml("wechat/unsubscribe.xml")) == ""
    assert not Member.objects.exists()


@pytest.mark.parametrize(("key", "expected"), [
    ("points", "您的积分：0 分"),
    ("checkin", "签到二维码"),
    ("coupons", "您目前还没有优惠券"),
    ("member_code", "您的会员号："),
    ("help", "您可以发送"),
    ("no-such-key", "抱歉，我没有看懂"),
])
def test_menu_clicks_run_the_same_commands(wechat, key, expected):
    assert expected in wechat.say(fixture_xml("wechat/click.xml", EventKey=key))


@pytest.mark.parametrize(("fixture", "content"), [
    ("wechat/view.xml", "https://mall.example.com/m/"),
    ("wechat/location.xml", "31.301228,121.514412"),
])
def test_view_and_location_are_recorded_without_a_reply(wechat, fixture, content):
    assert wechat.say(fixture_xml(fixture)) == ""
    logged = InboundMessage.objects.get()
    assert logged.content == content and logged.reply == "" and logged.member == member_of()


def test_an_image_gets_the_default_reply(wechat):
    assert "抱歉，我没有看懂" in wechat.say(fixture_xml("wechat/image.xml"))


def test_a_banned_member_is_told_so_and_earns_nothing(wechat, plaza):
    wechat.say(fixture_xml("wechat/subscribe.xml"))
    Member.objects.filter(pk=member_of().pk).update(status=Member.Status.BANNED)
    assert "会员资格已暂停" in wechat.say(fixture_xml("wechat/scan.xml"))
    assert "会员资格已暂停" in wechat.say(fixture_xml("wechat/text.xml"))
    assert not Checkin.objects.exists()


# --- duplicates -------------------------------------------------------------------------


def test_a_retried_scan_has_one_effect_and_gets_the_same_reply(wechat, plaza):
    xml = fixture_xml("wechat/subscribe_scene.xml")
    replies = [wechat.say(xml) for _ in range(4)]  # WeChat's first try and its three retries
    assert len(set(replies)) == 1 and "签到成功！" in replies[0]
    assert Checkin.objects.count() == 1 and Visit.objects.count() == 1
    assert InboundMessage.objects.count() == 1 and Member.objects.count() == 1
    assert ledger.member_points_balance(member=member_of()) == 10


def test_a_retried_text_is_answered_from_the_log(wechat):
    xml = fixture_xml("wechat/text.xml", Content="积分")
    first = wechat.say(xml)
    InboundMessage.objects.update(reply="the stored reply")  # a retry must not run the command again
    assert wechat.say(xml) == "the stored reply"
    assert first != "the stored reply" and InboundMessage.objects.count() == 1


def test_events_are_told_apart_by_sender_time_and_event(wechat, plaza):
    wechat.say(fixture_xml("wechat/click.xml", CreateTime=1700000500))
    wechat.say(fixture_xml("wechat/click.xml", CreateTime=1700000501))
    wechat.say(fixture_xml("wechat/view.xml", CreateTime=1700000501))
    wechat.say(fixture_xml("wechat/click.xml", CreateTime=1700000501, FromUserName="oAnotherFollower000000000000"))
    assert set(InboundMessage.objects.values_list("dedup_key", flat=True)) == {
        f"event:{OPENID}:1700000500:CLICK",
        f"event:{OPENID}:1700000501:CLICK",
        f"event:{OPENID}:1700000501:VIEW",
        "event:oAnotherFollower000000000000:1700000501:CLICK",
    }


# --- signatures -------------------------------------------------------------------------


def test_a_bad_signature_is_refused_and_changes_nothing(wechat, plaza):
    body, query = wechat.body_and_query(fixture_xml("wechat/subscribe_scene.xml"))
    for bad in (
        {"signature": "0" * 40},
        {"signature": wechat_signature("not-our-token", query["timestamp"], query["nonce"])},
        {"timestamp": str(int(query["timestamp"]) + 1)},
    ):
        response = wechat.post_raw(body, {**query, **bad})
        assert response.status_code == 403
    assert not Member.objects.exists() and not InboundMessage.objects.exists() and not Checkin.objects.exists()


def test_safe_mode_refuses_a_bad_msg_signature_and_a_message_for_another_app(client, safe_wechat, plaza):
    body, query = safe_wechat.body_and_query(fixture_xml("wechat/subscribe_scene.xml"))
    assert safe_wechat.post_raw(body, {**query, "msg_signature": "0" * 40}).status_code == 403
    assert safe_wechat.post_raw(body, {k: v for k, v in query.items() if k != "msg_signature"}).status_code == 403
    other_app = WeChat(client, safe=True, app_id="wx0000000000000000")
    assert other_app.post(fixture_xml("wechat/subscribe_scene.xml")).status_code == 400
    other_key = WeChat(client, safe=True, aes_key="A" * 43)
    assert other_key.post(fixture_xml("wechat/subscribe_scene.xml")).status_code == 400
    assert not Member.objects.exists() and not InboundMessage.objects.exists()


def test_safe_mode_without_an_aes_key_configured_is_refused(client, settings):
    configure_wechat(settings, aes_key="")
    response = WeChat(client, safe=True).post(fixture_xml("wechat/text.xml"))
    assert response.status_code == 400 and not Member.objects.exists()


def test_with_an_aes_key_only_safe_mode_is_accepted(client, safe_wechat):
    # WeChat's compatible mode, while an account switches, sends Encrypt too: a
    # plaintext message is then signed by nothing but the query string.
    plain = WeChat(client, safe=False)
    assert plain.post(fixture_xml("wechat/text.xml", MsgId=1)).status_code == 400
    assert not Member.objects.exists() and not InboundMessage.objects.exists()
    assert "您的积分" in safe_wechat.say(fixture_xml("wechat/text.xml", MsgId=2))
