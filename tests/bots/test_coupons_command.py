"""The 优惠券 / coupons command: the member's usable coupons, where to see them, and the points mall."""

from datetime import timedelta

import pytest
from django.http import HttpResponse
from django.urls import include, path
from django.utils import timezone

from bots import commands
from bots.commands import Context
from coupons.models import Coupon, CouponTemplate
from coupons.services import coupon_void
from tests.coupons.conftest import issue, make_template
from tests.factories import make_member

pytestmark = pytest.mark.django_db

CARD_URL = "https://mall.test/m/"


def ctx(member, **kwargs):
    return Context(member=member, channel="wechat", member_card_url=CARD_URL, **kwargs)


def until(coupon: Coupon) -> str:
    return timezone.localtime(coupon.valid_until).strftime("%Y-%m-%d")


def test_without_coupons_it_says_so_and_where_they_will_be():
    member = make_member()

    zh, en = commands.coupons(ctx(member)), commands.coupons(ctx(member, lang="en"))

    assert zh == "您目前还没有优惠券。\n在小程序“我的优惠券”中查看，到店结账时出示券码即可使用。"
    assert en == 'Coupons: you have none yet.\nSee them under "My coupons" in our mini-program, and show a coupon\'s code at the till to use it.'


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


# An H5 coupons page, when there is one, is linked on the member card's host.
def _page(request):
    return HttpResponse("")


urlpatterns = [
    path("m/", include(([path("", _page, name="card"), path("coupons/", _page, name="coupons")], "h5"))),
]


@pytest.mark.urls(__name__)
def test_it_links_the_h5_coupons_page_when_there_is_one():
    member = make_member()

    zh, en = commands.coupons(ctx(member)), commands.coupons(ctx(member, lang="en"))

    assert zh.splitlines()[-1] == "查看和使用优惠券：https://mall.test/m/coupons/"
    assert en.splitlines()[-1] == "See and use your coupons: https://mall.test/m/coupons/"


def test_the_command_answers_the_typed_words_and_the_menu_key():
    member = make_member()
    issue(make_template(kind=CouponTemplate.Kind.VOUCHER, name="代金券"), member)

    assert commands.reply_to_text(ctx(member, lang="zh"), "优惠券").startswith("您有 1 张可用优惠券：")
    assert commands.reply_to_text(ctx(member, lang="en"), "coupons").startswith("You have 1 usable coupon:")
    assert commands.reply_to_key(ctx(member), "coupons").startswith("您有 1 张可用优惠券：")
