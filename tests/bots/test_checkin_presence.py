"""Check-in farming through the official account, as the attack: WeChat XML through
/wechat/, signed with the current time and a fresh nonce (tests.bots.platforms).

A scan of the permanent scene is a photo away from anyone; the screen's scene
``checkin:<plaza>:<token>`` lives a minute; a LOCATION report from the last ten
minutes stands for the shopper's presence where the plaza accepts a geofence.
"""

import time
from datetime import timedelta
from itertools import count

import pytest
from django.db.models import F
from django.utils import timezone

from bots.models import InboundMessage
from members import checkin, ledger
from members.models import Checkin, Identity, Member
from tests.bots.platforms import OPENID, fixture_xml

pytestmark = pytest.mark.django_db

# The plaza's centre in GCJ-02 (as maps show it); WeChat reports GPS (WGS-84).
PLAZA_GCJ02 = (31.301228, 121.514412)
_create_times = count(int(time.time()))


def member_of() -> Member:
    return Identity.objects.get(channel=Identity.Channel.WECHAT_OPENID, external_id=OPENID).member


def scan(wechat, scene: str) -> str:
    return wechat.say(fixture_xml("wechat/scan.xml", EventKey=scene, CreateTime=next(_create_times)))


def subscribe(wechat, scene: str) -> str:
    return wechat.say(fixture_xml("wechat/subscribe_scene.xml", EventKey=f"qrscene_{scene}", CreateTime=next(_create_times)))


def report_location(wechat, latitude: float, longitude: float) -> str:
    return wechat.say(
        fixture_xml("wechat/location.xml", Latitude=latitude, Longitude=longitude, CreateTime=next(_create_times))
    )


def gps_at(latitude: float, longitude: float) -> tuple[float, float]:
    """The WGS-84 point a phone reports where a map (GCJ-02) shows (latitude, longitude)."""
    shifted = checkin.checkin_location(latitude=latitude, longitude=longitude, datum="wgs84")
    return 2 * latitude - shifted.latitude, 2 * longitude - shifted.longitude


def configure(plaza, **fields):
    for name, value in fields.items():
        setattr(plaza, name, value)
    plaza.save()
    return plaza


def assert_nothing_earned():
    assert not Checkin.objects.exists()
    assert ledger.member_points_balance(member=member_of()) == 0


@pytest.fixture
def screen_only(plaza):
    return configure(plaza, checkin_accepts_permanent=False, checkin_accepts_printed=False)


@pytest.fixture
def fenced(plaza):
    return configure(
        plaza, checkin_accepts_permanent=False, checkin_accepts_printed=False, checkin_accepts_location=True,
        latitude=PLAZA_GCJ02[0], longitude=PLAZA_GCJ02[1], geofence_radius_m=300,
    )


# --- the permanent scene ---------------------------------------------------------------------


def test_a_plaza_requiring_the_rotating_code_refuses_the_permanent_scene(wechat, screen_only):
    reply = scan(wechat, "checkin:sh-wanda")

    assert "上海五角场万达广场需要到场签到" in reply and "请扫描服务台屏幕上的签到码。" in reply
    assert "签到成功" not in reply
    assert_nothing_earned()


def test_a_follow_through_the_refused_permanent_scene_welcomes_but_does_not_check_in(wechat, screen_only):
    reply = subscribe(wechat, "checkin:sh-wanda")

    assert "需要到场签到" in reply and "欢迎加入大会员" in reply
    assert member_of().join_plaza == screen_only
    assert_nothing_earned()


def test_a_plaza_accepting_the_permanent_scene_still_checks_in_with_it(wechat, plaza):
    assert "签到成功！" in scan(wechat, "checkin:sh-wanda")
    assert ledger.member_points_balance(member=member_of()) == 10


# --- the rotating code on the screen -----------------------------------------------------------


def test_a_valid_rotating_code_checks_in_once(wechat, screen_only):
    scene = checkin.checkin_screen_code(plaza=screen_only).scene

    first, again = scan(wechat, scene), scan(wechat, scene)

    assert "签到成功！上海五角场万达广场 +10 积分" in first
    assert "今天已在上海五角场万达广场签到过了" in again
    assert Checkin.objects.count() == 1 and ledger.member_points_balance(member=member_of()) == 10


def test_a_new_follower_through_the_rotating_code_becomes_a_member_and_checks_in(wechat, screen_only):
    reply = subscribe(wechat, checkin.checkin_screen_code(plaza=screen_only).scene)

    assert "签到成功！" in reply and "欢迎加入大会员" in reply
    assert ledger.member_points_balance(member=member_of()) == 10


def test_a_rotating_code_older_than_60_seconds_is_refused_with_how_to_check_in(wechat, screen_only):
    old = checkin.checkin_screen_code(plaza=screen_only, at=timezone.now() - timedelta(seconds=61 + 30))
    assert old.expires_at < timezone.now()

    reply = scan(wechat, old.scene)

    assert "这个签到码已过期。" in reply and "请扫描服务台屏幕上的签到码。" in reply
    assert_nothing_earned()


def test_a_made_up_rotating_code_is_invalid(wechat, screen_only):
    token = checkin.checkin_screen_token(plaza=screen_only, at=timezone.now())
    forged = token[:-1] + ("0" if token[-1] != "0" else "1")

    assert "签到码已失效" in scan(wechat, f"checkin:sh-wanda:{forged}")
    assert "签到码已失效" in scan(wechat, "checkin:sh-wanda:")
    assert not Checkin.objects.exists()


def test_refusals_say_how_to_check_in_on_each_channel_in_both_languages(fenced):
    from bots.commands import Context, checkin_scan
    from tests.factories import make_member

    member, code = make_member(), checkin.CheckinCode(plaza=fenced, proof=checkin.Proof.PERMANENT)
    alipay_en = checkin_scan(Context(member=member, channel="alipay", lang="en", checkin_code=code))
    assert alipay_en == (
        "上海五角场万达广场 needs to know you are there, and we have no location from you yet.\n"
        "Please scan the code on the check-in screen at the service desk, or allow your location and scan again "
        "inside the plaza."
    )
    wechat_zh = checkin_scan(Context(member=member, channel="wechat", checkin_code=code))
    assert wechat_zh.endswith("请扫描服务台屏幕上的签到码，或在公众号资料页打开“提供位置信息”，进入本公众号对话后在广场内再扫一次签到码。")
    assert not Checkin.objects.exists()


# --- the geofence: the official account's LOCATION report ----------------------------------


def test_a_location_report_then_a_scan_within_10_minutes_checks_in(wechat, fenced):
    assert report_location(wechat, *gps_at(*PLAZA_GCJ02)) == ""  # WeChat allows no reply to it

    reply = scan(wechat, "checkin:sh-wanda")

    assert "签到成功！" in reply
    assert ledger.member_points_balance(member=member_of()) == 10


def test_a_location_report_older_than_10_minutes_is_no_proof(wechat, fenced):
    report_location(wechat, *gps_at(*PLAZA_GCJ02))
    InboundMessage.objects.filter(event="LOCATION").update(created_at=F("created_at") - timedelta(minutes=11))

    reply = scan(wechat, "checkin:sh-wanda")

    assert "需要确认您在广场内，但还没有收到您的位置" in reply and "提供位置信息" in reply
    assert_nothing_earned()


def test_no_location_report_is_refused_when_the_plaza_needs_one(wechat, fenced):
    reply = scan(wechat, "checkin:sh-wanda")

    assert "还没有收到您的位置" in reply
    assert_nothing_earned()


def test_a_location_report_outside_the_geofence_is_refused(wechat, fenced):
    report_location(wechat, *gps_at(PLAZA_GCJ02[0] + 0.02, PLAZA_GCJ02[1]))  # ~2.2 km north

    reply = scan(wechat, "checkin:sh-wanda")

    assert "不在签到范围内" in reply and "约 22" in reply
    assert_nothing_earned()


def test_a_gps_report_is_converted_to_the_maps_datum_before_it_is_measured(wechat, fenced):
    """Read as a map's coordinates, the GPS point of the plaza is ~500 m away: outside."""
    report_location(wechat, *PLAZA_GCJ02)  # the map's numbers, reported as GPS: ~500 m off

    assert "不在签到范围内" in scan(wechat, "checkin:sh-wanda")
    assert_nothing_earned()


def test_a_location_picked_on_a_map_and_sent_as_a_message_is_no_proof(wechat, fenced):
    message = (
        "<xml><ToUserName><![CDATA[gh_7f083739789a]]></ToUserName>"
        f"<FromUserName><![CDATA[{OPENID}]]></FromUserName><CreateTime>{next(_create_times)}</CreateTime>"
        f"<MsgType><![CDATA[location]]></MsgType><Location_X>{PLAZA_GCJ02[0]}</Location_X>"
        f"<Location_Y>{PLAZA_GCJ02[1]}</Location_Y><Scale>20</Scale><Label><![CDATA[万达广场]]></Label>"
        "<MsgId>7000000000000000001</MsgId></xml>"
    )
    wechat.say(message)

    assert "还没有收到您的位置" in scan(wechat, "checkin:sh-wanda")
    assert_nothing_earned()


def test_the_rotating_code_needs_no_location_at_a_fenced_plaza(wechat, fenced):
    assert "签到成功！" in scan(wechat, checkin.checkin_screen_code(plaza=fenced).scene)
