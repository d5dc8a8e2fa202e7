"""/alipay/gateway/: the gateway check, follow / unfollow / enter / click, text commands,
signatures both ways, and replies sent through the (fake) open API after the ack."""

import base64
import json
import time

import pytest
from cryptography.hazmat.primitives import serialization

from bots.models import InboundMessage
from members import ledger
from members.models import Checkin, Identity, Member, Visit
from tests.bots.platforms import alipay_answer, alipay_form, alipay_post, fixture_xml, xml_dict
from tests.factories import assert_ledger_invariants
from tests.fakes.platform_server import Reply, alipay_request_signature_valid, alipay_signed_response, rsa_key_pair

pytestmark = pytest.mark.django_db

USER_ID = "2088402125991030"
SEND = "alipay.open.public.message.custom.send"




@pytest.fixture
def alipay(db, client, settings, platform_server, app_keys, alipay_keys, django_capture_on_commit_callbacks):
    """The service window configured, Alipay's open API the local fake.

    Through pytest-django's ``settings`` (not an override_settings block of its own), so
    that a test which changes settings too gets every change undone in order."""
    platform_server.script("/gateway.do", Reply(body=alipay_signed_response(
        "alipay_open_public_message_custom_send_response", {"code": "10000", "msg": "Success"}, alipay_keys.private_pem,
    )))
    values = {
        **platform_server.settings(), "ALIPAY_APP_ID": "2021000000000001", "ALIPAY_APP_PRIVATE_KEY": app_keys.private_pem,
        "ALIPAY_PUBLIC_KEY": alipay_keys.public_pem, "PLATFORM_TIMEOUT_SECONDS": 2,
    }
    for name, value in values.items():
        setattr(settings, name, value)
    return Gateway(client, platform_server, app_keys, alipay_keys, django_capture_on_commit_callbacks)


class Gateway:
    def __init__(self, client, server, app_keys, alipay_keys, on_commit):
        self.client, self.server, self.on_commit = client, server, on_commit
        self.app_keys, self.alipay_keys = app_keys, alipay_keys

    def post(self, biz_content: str, **kwargs):
        form = alipay_form(biz_content, alipay_private_pem=self.alipay_keys.private_pem, **kwargs)
        return alipay_post(self.client, form, on_commit=self.on_commit)

    def answer(self, response) -> str:
        return alipay_answer(response.content, app_public_pem=self.app_keys.public_pem)

    def sent(self) -> list[dict]:
        """The bot's replies sent through the open API (chat messages; pushes from the
        outbox, such as a check-in's, go to the service window's home page instead),
        their requests' signatures checked."""
        messages = []
        for request in self.server.requests_to("/gateway.do"):
            form = request.form
            assert form["method"] == SEND and form["app_id"] == "2021000000000001"
            assert alipay_request_signature_valid(form, self.app_keys.public_pem)
            messages.append(json.loads(form["biz_content"]))
        return [message for message in messages if message.get("chat") == "1"]


def member_of(user_id: str = USER_ID) -> Member:
    return Identity.objects.get(channel=Identity.Channel.ALIPAY_USER_ID, external_id=user_id).member


def test_the_gateway_check_answers_our_public_key_signed(alipay, app_keys):
    response = alipay.post(fixture_xml("alipay/check.xml"), service="alipay.service.check")
    assert response.status_code == 200
    answer = alipay.answer(response)
    public_der = serialization.load_pem_public_key(app_keys.public_pem.encode()).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert answer == f"<success>true</success><biz_content>{base64.b64encode(public_der).decode()}</biz_content>"
    assert not InboundMessage.objects.exists() and not Member.objects.exists()


def test_follow_makes_a_member_acknowledges_and_sends_the_welcome(alipay):
    response = alipay.post(fixture_xml("alipay/follow.xml"))
    assert response.status_code == 200
    ack = xml_dict(alipay.answer(response))
    assert ack["ToUserId"] == USER_ID and ack["AppId"] == "2021000000000001" and ack["MsgType"] == "ack"
    member = member_of()
    assert member.join_channel == Member.Channel.ALIPAY
    assert Identity.objects.get(external_id=USER_ID).is_following
    [sent] = alipay.sent()
    assert sent["to_user_id"] == USER_ID and sent["msg_type"] == "text"
    assert "欢迎加入大会员" in sent["text"]["content"]
    assert InboundMessage.objects.get().reply_sent_at is not None


def test_follow_through_a_checkin_code_checks_in(alipay, plaza):
    alipay.post(fixture_xml("alipay/follow_scene.xml"))
    member = member_of()
    assert ledger.member_points_balance(member=member) == 10
    assert Visit.objects.filter(member=member, plaza=plaza).count() == 1
    [sent] = alipay.sent()
    assert "签到成功！上海五角场万达广场 +10 积分" in sent["text"]["content"]
    assert_ledger_invariants()


def test_enter_through_a_checkin_code_checks_in_and_a_plain_enter_says_nothing(alipay, plaza):
    alipay.post(fixture_xml("alipay/enter.xml"))
    assert alipay.sent() == [] and member_of()
    scene = json.dumps({"scene": {"sceneId": "checkin:sh-wanda"}})
    alipay.post(fixture_xml("alipay/enter.xml", ActionParam=scene, CreateTime="1700000009000"))
    [sent] = alipay.sent()
    assert "签到成功！" in sent["text"]["content"]
    assert Checkin.objects.count() == 1


@pytest.mark.parametrize(("text", "expected"), [
    ("积分", "您的积分：0 分"), ("points", "Your points: 0"), ("优惠券", "还没有优惠券"),
])
def test_a_text_command_is_acknowledged_and_answered_through_the_open_api(alipay, text, expected):
    started = time.monotonic()
    response = alipay.post(fixture_xml("alipay/text.xml", Content=text))
    assert time.monotonic() - started < 1.0
    assert xml_dict(alipay.answer(response))["MsgType"] == "ack"
    [sent] = alipay.sent()
    assert expected in sent["text"]["content"] and sent["chat"] == "1"
    logged = InboundMessage.objects.get()
    assert (logged.channel, logged.dedup_key, logged.content) == ("alipay", "msg:160308464406000001", text)


def test_a_click_runs_the_same_commands(alipay):
    alipay.post(fixture_xml("alipay/click.xml", ActionParam="member_code"))
    [sent] = alipay.sent()
    assert f"您的会员号：{member_of().member_no}" in sent["text"]["content"]


def test_a_retried_notification_has_one_effect_and_one_reply(alipay, plaza):
    biz = fixture_xml("alipay/follow_scene.xml")
    answers = [xml_dict(alipay.answer(alipay.post(biz))) for _ in range(3)]
    assert {a["MsgType"] for a in answers} == {"ack"}
    assert len(alipay.sent()) == 1
    assert InboundMessage.objects.count() == 1 and Checkin.objects.count() == 1
    assert ledger.member_points_balance(member=member_of()) == 10


def test_unfollow_marks_the_follower_gone(alipay):
    alipay.post(fixture_xml("alipay/follow.xml"))
    alipay.post(fixture_xml("alipay/unfollow.xml"))
    assert not Identity.objects.get(external_id=USER_ID).is_following
    assert len(alipay.sent()) == 1  # the welcome; nothing on leaving


@pytest.mark.parametrize("service", ["alipay.mobile.public.message.notify", "alipay.service.check"])
def test_a_bad_signature_is_refused_and_changes_nothing(alipay, plaza, service):
    other = rsa_key_pair()
    biz = fixture_xml("alipay/follow_scene.xml")
    good = alipay_form(biz, alipay_private_pem=alipay.alipay_keys.private_pem, service=service)
    for form in (
        alipay_form(biz, alipay_private_pem=other.private_pem, service=service),  # not Alipay's key
        {**good, "biz_content": biz.replace("2088402125991030", "2088000000000001")},  # tampered after signing
        {k: v for k, v in good.items() if k != "sign"},
        {**good, "sign": "bm90IGEgc2lnbmF0dXJl"},
    ):
        response = alipay_post(alipay.client, form)
        assert response.status_code == 403
        assert "<error_code>VERIFY_FAILED</error_code>" in alipay.answer(response)
    assert not Member.objects.exists() and not InboundMessage.objects.exists() and alipay.sent() == []


def test_hostile_or_foreign_biz_content_is_refused(alipay):
    hostile = '<?xml version="1.0"?><!DOCTYPE XML [<!ENTITY x SYSTEM "file:///etc/passwd">]><XML><FromAlipayUserId>&x;</FromAlipayUserId></XML>'
    for biz in (hostile, "<XML><MsgType>text", fixture_xml("alipay/text.xml", AppId="2021999999999999"),
                fixture_xml("alipay/text.xml", FromAlipayUserId="")):
        started = time.monotonic()
        response = alipay.post(biz)
        assert response.status_code == 400 and time.monotonic() - started < 1.0
    response = alipay.post(fixture_xml("alipay/text.xml"), service="alipay.some.other.service")
    assert response.status_code == 400
    assert not Member.objects.exists() and not InboundMessage.objects.exists()


def test_a_2_mb_body_is_refused(alipay):
    response = alipay.client.post("/alipay/gateway/", data=b"biz_content=" + b"x" * (2 * 1024 * 1024),
                                  content_type="application/x-www-form-urlencoded")
    assert response.status_code == 413


def test_without_keys_the_gateway_does_not_exist(client, settings):
    settings.ALIPAY_APP_ID = settings.ALIPAY_APP_PRIVATE_KEY = settings.ALIPAY_PUBLIC_KEY = ""
    assert client.post("/alipay/gateway/", data={"service": "alipay.service.check"}).status_code == 404


def test_a_gateway_check_sent_as_a_notification_is_refused(alipay):
    response = alipay.post(fixture_xml("alipay/check.xml"))  # service: the message notify
    assert response.status_code == 400 and not Member.objects.exists()
