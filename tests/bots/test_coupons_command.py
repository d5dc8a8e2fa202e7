"""The 优惠券 / coupons command (the member's usable coupons, the free ones to claim, where
to see them, the points mall) and 领券 <n> / claim <n> (claim the n-th free coupon listed),
called directly and through /wechat/, where WeChat's retries of a message claim once."""

import threading
import time
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from bots import commands
from bots.commands import COMMANDS, Context, command_for_text
from bots.models import InboundMessage
from coupons.models import Coupon, CouponTemplate
from coupons.services import coupon_void
from members.models import Identity, Member
from tests.bots.conftest import configure_wechat
from tests.bots.platforms import OPENID, WECHAT_TOKEN, fixture_xml, wechat_signature, xml_dict
from tests.coupons.conftest import issue, make_template, window
from tests.factories import make_member

pytestmark = pytest.mark.django_db

CARD_URL = "https://mall.test/m/"


def ctx(member, **kwargs):
    return Context(member=member, channel="wechat", member_card_url=CARD_URL, **kwargs)


def until(coupon: Coupon) -> str:
    return timezone.localtime(coupon.valid_until).strftime("%Y-%m-%d")


def test_without_coupons_it_says_so_and_links_the_h5_coupons_page():
    member = make_member()

    zh, en = commands.coupons(ctx(member)), commands.coupons(ctx(member, lang="en"))

    assert zh == "您目前还没有优惠券。\n查看和使用优惠券：https://mall.test/m/coupons/"
    assert en == "Coupons: you have none yet.\nSee and use your coupons: https://mall.test/m/coupons/"


def test_without_a_member_card_link_it_points_to_the_mini_program():
    member = make_member()
    bare = Context(member=member, channel="miniapp")

    assert commands.coupons(bare) == "您目前还没有优惠券。\n在小程序“我的优惠券”中查看，到店结账时出示券码即可使用。"
    assert commands.coupons(Context(member=member, channel="miniapp", lang="en")) == (
        'Coupons: you have none yet.\nSee them under "My coupons" in our mini-program, and show a coupon\'s code at the till to use it.'
    )


def test_it_lists_usable_coupons_with_value_and_end_soonest_first():
    member = make_member()
    cash = issue(make_template(kind=CouponTemplate.Kind.CASH_OFF, name="满减券", valid_days=10), member)
    percent = issue(make_template(kind=CouponTemplate.Kind.PERCENT_OFF, name="折扣券", valid_days=3), member)
    voucher = issue(make_template(kind=CouponTemplate.Kind.VOUCHER, name="代金券", valid_days=20), member)
    gift = issue(make_template(kind=CouponTemplate.Kind.GIFT, name="礼品券", valid_days=30), member)
    coupon_void(coupon=issue(make_template(name="作废的", valid_days=1), member), reason="test")
    issue(make_template(name="别人的"), make_member())

    zh, en = commands.coupons(ctx(member)), commands.coupons(ctx(member, lang="en"))

    assert zh.splitlines()[:5] == [
        "您有 4 张可用优惠券：",
        f"· 折扣券（8.5折），{until(percent)} 前有效",
        f"· 满减券（满100减20元），{until(cash)} 前有效",
        f"· 代金券（50元代金券），{until(voucher)} 前有效",
        f"· 礼品券（礼品：一杯拿铁），{until(gift)} 前有效",
    ]
    assert en.splitlines()[:5] == [
        "You have 4 usable coupons:",
        f"· 折扣券 (15% off), valid until {until(percent)}",
        f"· 满减券 (¥20 off ¥100), valid until {until(cash)}",
        f"· 代金券 (¥50 voucher), valid until {until(voucher)}",
        f"· 礼品券 (gift: 一杯拿铁), valid until {until(gift)}",
    ]


def test_coupons_past_their_end_are_not_listed():
    member = make_member()
    coupon = issue(make_template(name="过期了"), member)
    now = timezone.now()
    Coupon.objects.filter(pk=coupon.pk).update(valid_from=now - timedelta(days=2), valid_until=now - timedelta(minutes=1))

    assert commands.coupons(ctx(member)).startswith("您目前还没有优惠券。")


def test_it_lists_five_then_says_how_many_more():
    member = make_member()
    template = make_template(kind=CouponTemplate.Kind.VOUCHER, per_member_limit=7)
    for _ in range(7):
        issue(template, member)

    zh, en = commands.coupons(ctx(member)), commands.coupons(ctx(member, lang="en"))

    assert zh.splitlines()[0] == "您有 7 张可用优惠券："
    assert sum(line.startswith("· ") for line in zh.splitlines()) == 5
    assert "……还有 2 张" in zh.splitlines()
    assert "… and 2 more" in en.splitlines()


def test_it_counts_the_points_mall():
    member = make_member()
    make_template(kind=CouponTemplate.Kind.VOUCHER, points_price=500)
    make_template(kind=CouponTemplate.Kind.VOUCHER, points_price=100)
    make_template(kind=CouponTemplate.Kind.VOUCHER, points_price=100, status=CouponTemplate.Status.PAUSED)
    make_template(kind=CouponTemplate.Kind.VOUCHER)  # not for points

    zh, en = commands.coupons(ctx(member)), commands.coupons(ctx(member, lang="en"))

    assert zh.splitlines()[-1] == "积分商城有 2 种优惠券可用积分兑换。"
    assert en.splitlines()[-1] == "The points mall has 2 coupons to exchange for points."


def test_the_h5_link_follows_the_member_cards_host():
    member = make_member()

    reply = commands.coupons(Context(member=member, channel="wechat", member_card_url="https://other.example/m/"))

    assert reply.splitlines()[-1] == "查看和使用优惠券：https://other.example/m/coupons/"


def test_the_command_answers_the_typed_words_and_the_menu_key():
    member = make_member()
    issue(make_template(kind=CouponTemplate.Kind.VOUCHER, name="代金券"), member)

    assert commands.reply_to_text(ctx(member, lang="zh"), "优惠券").startswith("您有 1 张可用优惠券：")
    assert commands.reply_to_text(ctx(member, lang="en"), "coupons").startswith("You have 1 usable coupon:")
    assert commands.reply_to_key(ctx(member), "coupons").startswith("您有 1 张可用优惠券：")


# --- free coupons: the list and 领券 <n> ------------------------------------------------------------


def free(name: str, **fields) -> CouponTemplate:
    return make_template(kind=fields.pop("kind", CouponTemplate.Kind.VOUCHER), name=name, claimable=True, **fields)


def test_coupons_lists_the_free_ones_numbered_with_how_to_claim():
    member = make_member()
    first = free("新人券", kind=CouponTemplate.Kind.CASH_OFF)
    free("咖啡券", kind=CouponTemplate.Kind.GIFT)
    free("暂停的", status=CouponTemplate.Status.PAUSED)
    make_template(name="不公开的", claimable=False)
    issue(first, member)

    zh, en = commands.coupons(ctx(member)), commands.coupons(ctx(member, lang="en"))

    lines = zh.splitlines()
    at = lines.index("可免费领取：")
    assert lines[at:at + 4] == ["可免费领取：", "1. 新人券（满100减20元）（已领取）", "2. 咖啡券（礼品：一杯拿铁）",
                                "发送“领券 1”领取第 1 张，以此类推。"]
    lines = en.splitlines()
    at = lines.index("Free to claim:")
    assert lines[at:at + 4] == ["Free to claim:", "1. 新人券 (¥20 off ¥100) (claimed)", "2. 咖啡券 (gift: 一杯拿铁)",
                                'Send "claim 1" to claim the first, and so on.']


@pytest.mark.parametrize("typed", ["领券 2", "领券2", "领取 2", "领券２", "claim 2", "Claim #2", "领券 2！"])
def test_claim_with_a_number_is_the_claim_command_and_it_writes(typed):
    command = command_for_text(typed)

    assert command is COMMANDS["claim"] and command.writes


@pytest.mark.parametrize("typed", ["领券 二", "claim two", "领券 -1", "领券 12345"])
def test_claim_with_something_else_than_a_number_is_not_understood(typed):
    assert command_for_text(typed) is None


def test_claim_n_claims_the_nth_free_coupon_listed():
    member = make_member()
    free("一号券")
    second = free("二号券", per_member_limit=2)

    zh = commands.reply_to_text(ctx(member), "领券 2")

    coupon = Coupon.objects.get(member=member)
    assert (coupon.template, coupon.issued_via) == (second, "claim")
    assert zh == f"领取成功！二号券（50元代金券），{until(coupon)} 前有效。\n到店结账时打开优惠券出示券码：https://mall.test/m/coupons/"
    en = commands.reply_to_text(ctx(member, lang="en"), "claim 2")
    assert en.startswith("Claimed: 二号券 (¥50 voucher), valid until")
    assert Coupon.objects.filter(member=member, template=second).count() == 2


def test_claim_past_the_limit_or_the_quota_says_so_and_takes_nothing():
    member = make_member()
    free("限一张")
    free("抢光了", total_quota=1)
    issue(CouponTemplate.objects.get(name="限一张"), member)
    issue(CouponTemplate.objects.get(name="抢光了"), make_member())

    assert commands.reply_to_text(ctx(member), "领券 1") == "限一张：您已经领取过这张券了。"
    # A sold-out coupon is no longer listed: its number is gone.
    assert commands.reply_to_text(ctx(member), "领券 2").startswith("没有第 2 张可领的券。\n可免费领取：")
    assert Coupon.objects.filter(member=member).count() == 1


def test_claim_without_a_number_lists_and_without_offers_says_so():
    member = make_member()

    assert commands.reply_to_text(ctx(member), "领券") == "暂时没有可免费领取的优惠券。"
    assert commands.reply_to_key(ctx(member, lang="en"), "claim") == "No free coupons to claim right now."
    free("新人券")
    assert commands.reply_to_text(ctx(member), "领券").startswith("可免费领取：\n1. 新人券")
    assert not Coupon.objects.exists()


def test_a_banned_member_claims_nothing():
    member = make_member()
    free("新人券")
    Member.objects.filter(pk=member.pk).update(status=Member.Status.BANNED)
    member.refresh_from_db()

    assert commands.reply_to_text(ctx(member), "领券 1") == commands.member_not_active(ctx(member))
    assert not Coupon.objects.exists()


def test_a_window_not_open_yet_is_not_listed():
    free("下周的", **window(-7, 14))

    assert commands.reply_to_text(ctx(make_member()), "领券") == "暂时没有可免费领取的优惠券。"


# --- through /wechat/: WeChat's retries claim once ----------------------------------------------------


def claims_of_the_follower() -> int:
    identity = Identity.objects.filter(channel=Identity.Channel.WECHAT_OPENID, external_id=OPENID).first()
    return Coupon.objects.filter(member=identity.member).count() if identity else 0


def test_a_retried_claim_message_answers_the_same_and_claims_once(wechat):
    free("新人券", per_member_limit=3)
    message = fixture_xml("wechat/text.xml", Content="领券 1", MsgId=7001)

    first = wechat.say(message)
    again = wechat.say(message)  # WeChat's retry: the same MsgId

    assert first.startswith("领取成功！新人券") and again == first
    assert claims_of_the_follower() == 1
    # Another message is another claim.
    assert wechat.say(fixture_xml("wechat/text.xml", Content="领券 1", MsgId=7002)).startswith("领取成功！")
    assert claims_of_the_follower() == 2


def test_the_menu_button_lists_the_free_coupons(wechat):
    free("新人券")

    reply = wechat.say(fixture_xml("wechat/click.xml", EventKey="claim"))

    assert reply.startswith("可免费领取：\n1. 新人券") and claims_of_the_follower() == 0


def _race(path: str, body: bytes, n: int) -> list:
    start_line = threading.Barrier(n)
    responses, errors = [None] * n, []

    def deliver(i):
        try:
            start_line.wait(timeout=30)
            responses[i] = Client().post(path, data=body, content_type="text/xml")
        except BaseException as exc:  # noqa: BLE001 — reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    return responses


@pytest.mark.postgres_only
@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL row locks")
@pytest.mark.django_db(transaction=True)
def test_retries_of_a_claim_message_at_once_claim_once(settings):
    configure_wechat(settings, aes_key="")
    free("新人券", per_member_limit=3)
    timestamp, nonce = str(int(time.time())), "1398465001"
    path = "/wechat/?" + urlencode({"signature": wechat_signature(WECHAT_TOKEN, timestamp, nonce),
                                    "timestamp": timestamp, "nonce": nonce, "openid": OPENID})
    body = fixture_xml("wechat/text.xml", Content="领券 1", MsgId=7101).encode()

    responses = _race(path, body, 5)

    assert [response.status_code for response in responses] == [200] * 5
    replies = {xml_dict(response.content)["Content"] for response in responses}
    assert len(replies) == 1 and replies.pop().startswith("领取成功！新人券")
    assert Coupon.objects.count() == 1 and InboundMessage.objects.count() == 1
