"""The service window of an app on Alipay's open_id standard: its FromAlipayUserId is an
open_id, filed as one (not as a user_id), and replies go to it as ``open_id``; a
user_id follower works as before, and one open_id is one member across the service
window and the logins."""

import json

import pytest
from django.urls import reverse

from members import ledger
from members.models import Identity, Member
from tests.bots.platforms import alipay_answer, alipay_form, alipay_post, fixture_xml, xml_dict
from tests.fakes.platform_server import Reply, alipay_request_signature_valid, alipay_signed_response

pytestmark = pytest.mark.django_db

OPEN_ID = "074a1CcTG1LelxKe4xQC0zgNdId0nxi95b5lsNpazWYoCo5"
USER_ID = "2088402125991030"
APP_ID = "2021000000000001"
SEND = "alipay.open.public.message.custom.send"
Channel = Identity.Channel




@pytest.fixture
def alipay(settings, platform_server, app_keys, alipay_keys):
    """The service window configured; Alipay's open API (custom.send, and oauth.token
    answering an open_id) is the local fake."""

    def gateway(request):
        form = request.form
        assert alipay_request_signature_valid(form, app_keys.public_pem)
        if form["method"] == "alipay.system.oauth.token":
            return Reply(body=alipay_signed_response(
                "alipay_system_oauth_token_response", {"open_id": OPEN_ID, "access_token": "AT"},
                alipay_keys.private_pem,
            ))
        return Reply(body=alipay_signed_response(
            "alipay_open_public_message_custom_send_response", {"code": "10000", "msg": "Success"},
            alipay_keys.private_pem,
        ))

    platform_server.script("/gateway.do", gateway)
    values = {**platform_server.settings(), "ALIPAY_APP_ID": APP_ID, "ALIPAY_APP_PRIVATE_KEY": app_keys.private_pem,
              "ALIPAY_PUBLIC_KEY": alipay_keys.public_pem, "PLATFORM_TIMEOUT_SECONDS": 2}
    for name, value in values.items():
        setattr(settings, name, value)
    return platform_server


@pytest.fixture
def post(client, alipay, alipay_keys, app_keys, django_capture_on_commit_callbacks):
    """Alipay posting a notification; returns the acknowledgement's fields."""

    def post(biz_content: str) -> dict[str, str]:
        form = alipay_form(biz_content, alipay_private_pem=alipay_keys.private_pem)
        response = alipay_post(client, form, on_commit=django_capture_on_commit_callbacks)
        assert response.status_code == 200, response.content
        return xml_dict(alipay_answer(response.content, app_public_pem=app_keys.public_pem))

    return post


def sent(server) -> list[dict]:
    """The replies sent through custom.send (chat messages)."""
    forms = [request.form for request in server.requests_to("/gateway.do")]
    return [json.loads(form["biz_content"]) for form in forms if form["method"] == SEND]


def test_a_follow_from_an_open_id_makes_a_member_filed_by_open_id_and_is_answered_to_it(alipay, post):
    ack = post(fixture_xml("alipay/follow.xml", FromAlipayUserId=OPEN_ID))

    assert ack["ToUserId"] == OPEN_ID and ack["MsgType"] == "ack"
    identity = Identity.objects.get()
    assert (identity.channel, identity.external_id, identity.is_following) == (Channel.ALIPAY_OPEN_ID, OPEN_ID, True)
    assert identity.member.join_channel == Member.Channel.ALIPAY
    [reply] = sent(alipay)
    assert reply["open_id"] == OPEN_ID and "to_user_id" not in reply
    assert "欢迎加入大会员" in reply["text"]["content"]


def test_an_open_id_followers_messages_find_the_same_member(alipay, post, plaza):
    post(fixture_xml("alipay/follow_scene.xml", FromAlipayUserId=OPEN_ID))
    post(fixture_xml("alipay/text.xml", FromAlipayUserId=OPEN_ID, Content="积分"))

    member = Member.objects.get()
    assert ledger.member_points_balance(member=member) == 10
    assert "您的积分：10 分" in sent(alipay)[-1]["text"]["content"]

    post(fixture_xml("alipay/unfollow.xml", FromAlipayUserId=OPEN_ID))
    assert not Identity.objects.get(channel=Channel.ALIPAY_OPEN_ID, external_id=OPEN_ID).is_following


def test_user_id_and_open_id_followers_both_work_side_by_side(alipay, post):
    post(fixture_xml("alipay/follow.xml"))
    post(fixture_xml("alipay/follow.xml", FromAlipayUserId=OPEN_ID))

    assert set(Identity.objects.values_list("channel", "external_id")) == {
        (Channel.ALIPAY_USER_ID, USER_ID), (Channel.ALIPAY_OPEN_ID, OPEN_ID),
    }
    assert Member.objects.count() == 2
    by_user_id, by_open_id = sent(alipay)
    assert by_user_id["to_user_id"] == USER_ID and "open_id" not in by_user_id
    assert by_open_id["open_id"] == OPEN_ID and "to_user_id" not in by_open_id


def test_one_open_id_is_one_member_in_the_h5_pages_and_the_service_window(alipay, post, client):
    start = client.get(reverse("h5:login-alipay"), {"next": "/m/"})
    state = start["Location"].split("state=")[1].split("&")[0]
    assert client.get(reverse("h5:login-alipay-callback"), {"auth_code": "AUTH-1", "state": state}).status_code == 302

    post(fixture_xml("alipay/follow.xml", FromAlipayUserId=OPEN_ID))

    assert Member.objects.count() == 1
    assert Identity.objects.get().channel == Channel.ALIPAY_OPEN_ID
