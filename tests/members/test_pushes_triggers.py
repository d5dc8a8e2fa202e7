"""What pushes a member: points earned at a POS, points redeemed, a check-in. Each
trigger pushes once per event, whatever the replays, in the mall's language."""

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from members import checkin, ledger
from members.models import InboxMessage, Push
from payments.models import Purchase
from tests.factories import make_member, make_plaza
from tests.members.test_pushes_delivery import (  # noqa: F401 (fixtures)
    OPENID,
    TEMPLATE_SEND,
    WECHAT_OK,
    fake,
    follower,
    wechat_template,
)
from tests.payments.conftest import build_shop, grant

pytestmark = pytest.mark.django_db


@pytest.fixture
def shop():
    return build_shop(name="星巴克")


def test_pos_purchase_pushes_you_earned_n_points_once_even_when_replayed(fake, shop, django_capture_on_commit_callbacks):
    fake.script(TEMPLATE_SEND, WECHAT_OK)
    member = make_member()
    grant(member, 100)
    follower(member)
    wechat_template()

    with django_capture_on_commit_callbacks(execute=True):
        first = shop.api.purchase(store_code=shop.store.code, amount_fen=38_00, member=member, key="pos-1")
    with django_capture_on_commit_callbacks(execute=True):
        replay = shop.api.purchase(store_code=shop.store.code, amount_fen=38_00, member=member, key="pos-1")

    assert first.status_code == replay.status_code == 201
    assert replay.json() == first.json()
    [push] = Push.objects.filter(member=member, event="points_earned")
    purchase = Purchase.objects.get(pk=first.json()["id"])
    assert push.event_key == f"points_earned:{purchase.earn_id}"
    assert push.title == "你获得了 38 积分"
    assert push.body == "在星巴克消费 ¥38.00，获得 38 积分，当前积分 138。"
    assert (push.data["points"], push.data["balance"], push.data["plaza"]) == (38, 138, shop.plaza.name)
    assert (push.status, push.channel) == (Push.Status.SENT, Push.Channel.WECHAT_TEMPLATE)
    [request] = fake.requests_to(TEMPLATE_SEND)
    assert request.json()["touser"] == OPENID
    assert request.json()["data"]["keyword1"] == {"value": "38"}
    assert InboxMessage.objects.filter(member=member).count() == 1


def test_push_text_is_in_the_mall_language_whatever_the_pos_speaks(shop):
    member = make_member()

    response = shop.api.post(
        "/api/v1/purchases/", {"store_code": shop.store.code, "amount_fen": 10_000, "member_no": member.member_no},
        headers={"Accept-Language": "en"},
    )

    assert response.status_code == 201
    assert Push.objects.get(member=member).title == "你获得了 100 积分"


def test_purchase_earning_no_points_pushes_nothing(shop):
    member = make_member()

    response = shop.api.purchase(store_code=shop.store.code, amount_fen=50, member=member)  # 1 % of ¥0.50 rounds to 0

    assert response.status_code == 201 and response.json()["points_earned"] == 0
    assert not Push.objects.filter(member=member).exists()


def test_failed_purchase_pushes_nothing(shop):
    member = make_member()
    shop.store.is_active = False
    shop.store.save(update_fields=["is_active"])

    response = shop.api.purchase(store_code=shop.store.code, amount_fen=10_000, member=member)

    assert (response.status_code, response.json()["code"]) == (403, "merchant_not_active")
    assert not Push.objects.exists() and not InboxMessage.objects.exists()


def test_pos_redemption_pushes_the_points_used_once(shop):
    member = make_member()
    grant(member, 1000)

    first = shop.api.redeem(store_code=shop.store.code, points=300, member=member, key="r-1")
    replay = shop.api.redeem(store_code=shop.store.code, points=300, member=member, key="r-1")

    assert first.status_code == replay.status_code == 201
    [push] = Push.objects.filter(member=member)
    assert push.event == "points_redeemed"
    assert push.title == "你使用了 300 积分"
    assert push.body == "在星巴克使用 300 积分，抵扣 ¥3.00，当前积分 700。"


def test_redemption_refused_for_lack_of_points_pushes_nothing(shop):
    member = make_member()

    response = shop.api.redeem(store_code=shop.store.code, points=300, member=member)

    assert response.status_code == 409
    assert not Push.objects.exists()


def test_checkin_pushes_once_per_plaza_and_day():
    member, plaza = make_member(), make_plaza()

    checkin.checkin(member=member, plaza=plaza)
    checkin.checkin(member=member, plaza=plaza)

    [push] = Push.objects.filter(member=member)
    assert push.event == "checkin"
    assert push.title == "签到成功，获得 10 积分"
    assert push.body == f"{plaza.name}签到成功：获得 10 积分，已连续签到 1 天，当前积分 10。"
    assert push.event_key.startswith(f"checkin:{member.pk}:{plaza.code}:")


def test_checkin_streak_bonus_is_in_the_push(settings):
    settings.CHECKIN_STREAK_DAYS = 2
    member, plaza = make_member(), make_plaza()
    real = timezone.now()
    checkin.checkin(member=member, plaza=plaza)
    with time_machine.travel(real + timedelta(days=1)):
        checkin.checkin(member=member, plaza=plaza)

    latest = Push.objects.filter(member=member).latest("id")
    assert latest.title == "签到成功，获得 60 积分"
    assert "连续签到 2 天奖励 50 积分" in latest.body
    assert ledger.member_points_balance(member=member) == 70
