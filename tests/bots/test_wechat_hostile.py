"""Hostile bodies are refused fast, with a valid signature and all, and change nothing."""

import time

import pytest

from bots.models import InboundMessage
from members.models import Identity, Member
from tests.bots.platforms import ACCOUNT, fixture_xml, wechat_encrypt

pytestmark = pytest.mark.django_db


def nothing_changed():
    return not Member.objects.exists() and not Identity.objects.exists() and not InboundMessage.objects.exists()


def timed(send):
    started = time.monotonic()
    response = send()
    return response, time.monotonic() - started


@pytest.mark.parametrize(("fixture", "status"), [
    ("wechat/billion_laughs.xml", 400),
    ("wechat/external_entity.xml", 400),
    ("wechat/malformed.xml", 400),
])
def test_hostile_xml_is_refused_within_a_second(wechat, fixture, status):
    # In safe mode the outer envelope is the hostile document; the inner is tested below.
    body = fixture_xml(fixture)
    response, elapsed = timed(lambda: wechat.post_raw(body, wechat.query(encrypt="")))
    assert response.status_code == status and elapsed < 1.0
    assert nothing_changed()


@pytest.mark.parametrize("fixture", ["wechat/billion_laughs.xml", "wechat/external_entity.xml", "wechat/malformed.xml"])
def test_hostile_xml_inside_a_well_signed_safe_mode_envelope_is_refused(safe_wechat, fixture):
    response, elapsed = timed(lambda: safe_wechat.post(fixture_xml(fixture)))
    assert response.status_code == 400 and elapsed < 1.0
    assert nothing_changed()


def test_a_2_mb_body_is_refused_unread(wechat):
    body = b"<xml><Content><![CDATA[" + b"x" * (2 * 1024 * 1024) + b"]]></Content></xml>"
    response, elapsed = timed(lambda: wechat.post_raw(body, wechat.query(encrypt="")))
    assert response.status_code == 413 and elapsed < 1.0
    assert nothing_changed()


def test_a_body_longer_than_it_says_is_read_only_as_far_as_it_says(wechat, client):
    from urllib.parse import urlencode

    body = fixture_xml("wechat/text.xml").encode() + b"x" * (100 * 1024)
    response, elapsed = timed(lambda: client.generic(
        "POST", "/wechat/?" + urlencode(wechat.query(encrypt="")), body, content_type="text/xml", CONTENT_LENGTH="200",
    ))
    assert response.status_code == 400 and elapsed < 1.0  # the first 200 bytes are not a whole document
    assert nothing_changed()


@pytest.mark.parametrize("fields", [
    {"FromUserName": ""},
    {"FromUserName": "o]]><evil/>"},
    {"ToUserName": "gh_x<y"},
    {"CreateTime": "yesterday"},
    {"MsgType": ""},
])
def test_a_message_missing_what_it_must_carry_is_refused(wechat, fields):
    response = wechat.post(fixture_xml("wechat/text.xml", **fields))
    assert response.status_code == 400
    assert nothing_changed()


def test_a_field_given_twice_is_refused(wechat):
    xml = fixture_xml("wechat/text.xml").replace("</xml>", "<Content><![CDATA[签到]]></Content></xml>")
    assert wechat.post(xml).status_code == 400
    assert nothing_changed()


def test_safe_mode_without_a_decryptable_encrypt_is_refused(safe_wechat):
    def envelope(encrypt: str | None):
        inner = f"<Encrypt><![CDATA[{encrypt}]]></Encrypt>" if encrypt is not None else ""
        body = f"<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName>{inner}</xml>"
        return safe_wechat.post_raw(body, safe_wechat.query(encrypt=encrypt or ""))  # msg_signature is right

    assert envelope(None).status_code == 400
    assert envelope("not base64 at all!").status_code == 400
    assert envelope(wechat_encrypt(fixture_xml("wechat/text.xml"))[:-8]).status_code == 400  # truncated
    assert nothing_changed()
