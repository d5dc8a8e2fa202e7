"""The channel-neutral commands, called directly as every channel calls them."""

from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone

from bots import commands
from bots.commands import COMMANDS, Context, command_for_text, lang_of, normalise
from members import ledger
from members.checkin import CheckinCode, Proof, checkin
from members.models import Member
from tests.factories import make_member, make_plaza

pytestmark = pytest.mark.django_db


def ctx(member, **kwargs):
    return Context(member=member, channel="miniapp", **kwargs)


@pytest.mark.parametrize(("typed", "name"), [
    ("积分", "points"), (" 积分！", "points"), ("POINTS", "points"), ("my  points.", "points"),
    ("签到", "checkin"), ("Check In", "checkin"), ("check-in", "checkin"),
    ("优惠券", "coupons"), ("coupon", "coupons"),
    ("会员码", "member_code"), ("member code", "member_code"), ("ＭＥＭＢＥＲ　ＣＯＤＥ", "member_code"),
    ("帮助", "help"), ("？", "help"), ("Help!", "help"),
])
def test_keywords_in_chinese_and_english_find_their_command(typed, name):
    assert command_for_text(typed) is COMMANDS[name]


@pytest.mark.parametrize("typed", ["", "   ", "积分多少钱", "pointsss", "我要签到吗"])
def test_anything_else_is_not_a_command(typed):
    assert command_for_text(typed) is None


def test_every_keyword_belongs_to_one_command_only():
    keywords = [normalise(k) for command in COMMANDS.values() for k in command.keywords]
    assert len(keywords) == len(set(keywords))


def test_language_follows_what_the_shopper_wrote():
    assert lang_of("积分") == "zh" and lang_of("points") == "en" and lang_of("") == "en"


def test_every_command_answers_in_both_languages():
    member = make_member()
    for command in COMMANDS.values():
        zh, en = command.run(ctx(member)), command.run(ctx(member, lang="en"))
        # Data (a tier named 普卡, a plaza) stays as staff wrote it; the words around it change.
        assert zh and en and zh != en and lang_of(zh) == "zh" and en[0].isascii()


def test_points_shows_the_tier():
    member = Member.objects.select_related("tier").get(pk=make_member().pk)
    assert member.tier_id  # the entry tier, from the data migration
    assert commands.points(ctx(member)).startswith(f"您的积分：0 分（{member.tier.name}）")


def test_checkin_scan_then_again_the_same_day():
    member, plaza = make_member(), make_plaza()
    code = CheckinCode(plaza=plaza, proof=Proof.PERMANENT)
    first = commands.checkin_scan(ctx(member, plaza=plaza, checkin_code=code))
    assert "+10 积分" in first and "已连续签到 1 天" in first
    assert f"您今天已在{plaza.name}签到过了" in commands.checkin_scan(ctx(member, plaza=plaza, checkin_code=code))
    assert ledger.member_points_balance(member=member) == 10


def test_checkin_scan_with_no_plaza_says_the_code_is_invalid():
    assert "签到码已失效" in commands.checkin_scan(ctx(make_member()))


def test_checkin_howto_mentions_the_last_plaza():
    member, plaza = make_member(), make_plaza()
    real_now = timezone.now()
    with mock.patch("django.utils.timezone.now", lambda: real_now - timedelta(days=3)):
        checkin(member=member, plaza=plaza)
    member.refresh_from_db()
    reply = commands.checkin_howto(ctx(member, lang="en"))
    assert "scan the check-in QR code" in reply and f"Your last visit was to {plaza.name}." in reply


def test_member_code_without_a_url_still_gives_the_member_number():
    member = make_member()
    assert commands.member_code(ctx(member)) == f"您的会员号：{member.member_no}"


def test_welcome_greets_new_members_and_returning_ones():
    member = make_member()
    assert "欢迎加入大会员" in commands.welcome(ctx(member, is_new=True))
    assert commands.welcome(ctx(member)).startswith("欢迎回来")
