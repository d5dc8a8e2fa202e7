import pytest
from django.contrib.auth.models import User

from bots.models import InboundMessage
from members.models import Identity
from tests.bots.platforms import OPENID, fixture_xml

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client):
    client.force_login(User.objects.create_superuser("boss", password="pw"))
    return client


def test_conversations_are_listed_searched_and_read_only(admin_client, wechat):
    wechat.say(fixture_xml("wechat/text.xml", Content="积分"))
    member = Identity.objects.get(external_id=OPENID).member
    url = "/admin/bots/inboundmessage/"
    page = admin_client.get(url).content.decode()
    assert OPENID in page and "您的积分" in page and member.member_no in page
    assert OPENID in admin_client.get(url, {"q": member.member_no}).content.decode()
    assert OPENID in admin_client.get(url, {"q": OPENID}).content.decode()
    assert OPENID not in admin_client.get(url, {"q": "oSomebodyElse"}).content.decode()
    message = InboundMessage.objects.get()
    detail = admin_client.get(f"{url}{message.pk}/change/")
    assert detail.status_code == 200 and "您的积分" in detail.content.decode()
    assert admin_client.get(f"{url}add/").status_code == 403
    admin_client.post(f"{url}{message.pk}/change/", {"reply": "edited"})
    message.refresh_from_db()
    assert message.reply != "edited"
    assert admin_client.post(f"{url}{message.pk}/delete/", {"post": "yes"}).status_code == 403


@pytest.mark.django_db
def test_the_plaza_list_offers_the_wechat_check_in_qr_action(admin_client):
    from django.urls import reverse

    from members.services import plaza_create

    plaza_create(code="sh-1", name="上海一号广场")  # the actions menu shows only over rows
    page = admin_client.get(reverse("admin:members_plaza_changelist"))
    assert page.status_code == 200
    assert "create_wechat_checkin_qr" in page.content.decode()
