"""The chat simulator drives the real /wechat/ endpoint, signature check and all."""

import pytest
from django.contrib.auth.models import User

from bots import simulator
from bots.models import InboundMessage
from members import ledger, services
from members.models import Checkin, Identity, Member
from tests.bots.platforms import WECHAT_AES_KEY, WECHAT_APP_ID, WECHAT_TOKEN

pytestmark = pytest.mark.django_db

URL = "/wechat/simulator/"


@pytest.fixture
def staff(client):
    user = User.objects.create_user("staff", password="pw", is_staff=True)
    client.force_login(user)
    return user


@pytest.fixture
def sandbox(settings):
    settings.O2O_SANDBOX = True
    settings.WECHAT_TOKEN = settings.WECHAT_ENCODING_AES_KEY = settings.WECHAT_APP_ID = settings.WECHAT_APP_SECRET = ""
    return settings


def test_outside_the_sandbox_there_is_no_simulator(client, staff, settings):
    settings.O2O_SANDBOX = False
    assert client.get(URL).status_code == 404


def test_staff_only(client, sandbox):
    assert client.get(URL).status_code == 302  # to the admin login
    client.force_login(User.objects.create_user("shopper", password="pw"))
    assert client.get(URL).status_code == 302


def test_a_new_shopper_follows_through_a_checkin_code(
    client, staff, sandbox, plaza, django_capture_on_commit_callbacks
):
    page = client.get(URL)
    assert page.status_code == 200 and "checkin:sh-wanda" in page.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        form = {"openid": simulator.NEW_SHOPPER, "action": "subscribe", "plaza": "sh-wanda", "key": "points"}
        response = client.post(URL, form)
    assert response.status_code == 200
    result = response.context["result"]
    assert result["status"] == 200 and not result["safe_mode"]
    assert "签到成功！上海五角场万达广场 +10 积分" in result["reply"]
    identity = Identity.objects.get(channel=Identity.Channel.WECHAT_OPENID)
    assert identity.external_id.startswith("sim-") and ledger.member_points_balance(member=identity.member) == 10
    assert "签到成功！" in response.content.decode()


def test_a_demo_shopper_texts_and_a_retry_has_no_second_effect(client, staff, sandbox, plaza):
    member = services.member_create(join_channel=Member.Channel.WECHAT, nickname="Demo shopper 0")
    Identity.objects.create(member=member, channel=Identity.Channel.WECHAT_OPENID, external_id="demo-openid-000")
    response = client.post(URL, {"openid": "demo-openid-000", "action": "scan", "plaza": "sh-wanda", "key": "points"})
    assert "签到成功！" in response.context["result"]["reply"]
    again = client.post(URL, {"again": "1"})
    assert again.context["result"]["reply"] == response.context["result"]["reply"]
    assert Checkin.objects.count() == 1 and InboundMessage.objects.count() == 1
    text = client.post(URL, {"openid": "demo-openid-000", "action": "text", "text": "积分", "key": "points"})
    assert "您的积分：10 分" in text.context["result"]["reply"]
    assert [m.event or m.content for m in text.context["conversation"]] == ["SCAN", "积分"]


def test_with_an_aes_key_the_simulator_speaks_safe_mode(client, staff, sandbox):
    sandbox.WECHAT_TOKEN, sandbox.WECHAT_APP_ID = WECHAT_TOKEN, WECHAT_APP_ID
    sandbox.WECHAT_ENCODING_AES_KEY = WECHAT_AES_KEY
    response = client.post(URL, {"openid": simulator.NEW_SHOPPER, "action": "click", "key": "help"})
    result = response.context["result"]
    assert result["safe_mode"] and "<Encrypt>" in result["sent_body"] and "<Encrypt>" in result["response_body"]
    assert "您可以发送" in result["reply"]


def test_the_simulated_messages_pass_the_real_signature_check(client, staff, sandbox, settings, monkeypatch):
    # Were the simulator to sign with anything but the endpoint's token, it would be refused.
    monkeypatch.setattr(simulator, "wechat_token", lambda: "not-the-endpoint-token")
    response = client.post(URL, {"openid": simulator.NEW_SHOPPER, "action": "text", "text": "积分", "key": "points"})
    assert response.context["result"]["status"] == 403
    assert not Member.objects.exists()


def test_the_form_asks_for_what_an_action_needs(client, staff, sandbox):
    response = client.post(URL, {"openid": simulator.NEW_SHOPPER, "action": "scan", "plaza": "", "key": "points"})
    assert response.context["result"] is None and "plaza" in response.context["form"].errors
