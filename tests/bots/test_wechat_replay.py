"""/wechat/ under attack: a signature is good for five minutes and one body, and with an
EncodingAESKey only safe-mode messages get in. Each refusal changes nothing."""

import logging
import secrets
import time
from urllib.parse import urlencode

import pytest

from bots import wechat as wechat_module
from bots.models import InboundMessage, SignedQuery
from bots.wechat import TIMESTAMP_WINDOW_SECONDS
from members import ledger
from members.models import Checkin, Identity, Member
from tests.bots.conftest import configure_wechat
from tests.bots.effects import effects
from tests.bots.platforms import (
    ACCOUNT,
    OPENID,
    WECHAT_AES_KEY,
    WECHAT_TOKEN,
    WeChat,
    fixture_xml,
    wechat_encrypt,
    wechat_signature,
)

pytestmark = pytest.mark.django_db

# A follower nobody has seen: what the attacker makes up.
MADE_UP = "oMadeUpFollower0000000000000"


def signed(wechat: WeChat, xml: str, *, timestamp: str, nonce: str) -> tuple[str, dict[str, str]]:
    """``xml`` as WeChat would have posted it at ``timestamp`` with ``nonce``: a body and a
    query string, both signed (in safe mode the body is encrypted and msg_signature right)."""
    query = {"signature": wechat_signature(WECHAT_TOKEN, timestamp, nonce), "timestamp": timestamp, "nonce": nonce,
             "openid": OPENID}
    if not wechat.safe:
        return xml, query
    encrypt = wechat_encrypt(xml)
    body = f"<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
    query.update(encrypt_type="aes", msg_signature=wechat_signature(WECHAT_TOKEN, timestamp, nonce, encrypt))
    return body, query


def seconds_from_now(offset: int) -> str:
    return str(int(time.time()) + offset)


def made_up_check_in() -> str:
    return fixture_xml("wechat/subscribe_scene.xml", FromUserName=MADE_UP)


def test_the_window_is_five_minutes():
    assert TIMESTAMP_WINDOW_SECONDS == 300


# --- the timestamp window -------------------------------------------------------------


@pytest.mark.parametrize("offset", [-310, -86_400, 1_700_000_000 - int(time.time()), 310, 86_400])
def test_a_signature_outside_the_window_does_not_authorise_a_new_body(wechat, plaza, offset, caplog):
    before = effects()
    body, query = signed(wechat, made_up_check_in(), timestamp=seconds_from_now(offset), nonce="1234567890")
    with caplog.at_level(logging.WARNING, logger="bots.wechat"):
        response = wechat.post_raw(body, query)
    assert response.status_code == 403
    assert effects() == before and not SignedQuery.objects.exists()
    assert not Member.objects.exists() and not Checkin.objects.exists()
    assert "timestamp is" in caplog.text and "from our clock" in caplog.text


@pytest.mark.parametrize("offset", [-290, 290])
def test_a_signature_inside_the_window_is_accepted_either_side_of_our_clock(wechat, plaza, offset):
    body, query = signed(wechat, fixture_xml("wechat/subscribe_scene.xml"), timestamp=seconds_from_now(offset),
                         nonce="1234567890")
    assert "签到成功！" in wechat.reply(wechat.post_raw(body, query))["Content"]
    assert Checkin.objects.count() == 1


@pytest.mark.parametrize("offset", [-310, 310])
def test_url_verification_outside_the_window_is_refused(client, wechat_settings, offset):
    timestamp = seconds_from_now(offset)
    query = {"signature": wechat_signature(WECHAT_TOKEN, timestamp, "n0nce"), "timestamp": timestamp,
             "nonce": "n0nce", "echostr": "5837397520665436492"}
    response = client.get("/wechat/?" + urlencode(query))
    assert response.status_code == 403 and b"5837397520665436492" not in response.content


@pytest.mark.parametrize("timestamp", ["0" + seconds_from_now(0), "+" + seconds_from_now(0), "1e9", "", "١٢٣"])
def test_a_timestamp_that_is_not_plain_seconds_is_refused(wechat, timestamp):
    body, query = signed(wechat, made_up_check_in(), timestamp=timestamp, nonce="1234567890")
    assert wechat.post_raw(body, query).status_code == 403
    assert not Member.objects.exists()


# --- one signed query string, one body -----------------------------------------------------


def test_a_signed_query_used_again_with_another_body_is_refused(wechat, plaza, caplog):
    timestamp, nonce = seconds_from_now(0), "1398465701"
    genuine = fixture_xml("wechat/text.xml", Content="会员码")
    reply = wechat.reply(wechat.post_raw(*signed(wechat, genuine, timestamp=timestamp, nonce=nonce)))["Content"]
    assert "您的会员号：" in reply
    before = effects()

    with caplog.at_level(logging.WARNING, logger="bots.wechat"):
        for forged in (made_up_check_in(), fixture_xml("wechat/text.xml", Content="会员码", FromUserName=MADE_UP,
                                                         MsgId=2)):
            response = wechat.post_raw(*signed(wechat, forged, timestamp=timestamp, nonce=nonce))
            assert response.status_code == 403
    assert effects() == before
    assert not Identity.objects.filter(external_id=MADE_UP).exists() and not Checkin.objects.exists()
    assert "came before with another body" in caplog.text


def test_wechats_retry_with_the_same_query_and_body_gets_the_stored_reply(wechat, plaza):
    body, query = signed(wechat, fixture_xml("wechat/subscribe_scene.xml"), timestamp=seconds_from_now(0),
                         nonce="1398465702")
    replies = [wechat.reply(wechat.post_raw(body, query))["Content"] for _ in range(4)]
    assert len(set(replies)) == 1 and "签到成功！" in replies[0]
    assert Checkin.objects.count() == 1 and InboundMessage.objects.count() == 1
    assert ledger.member_points_balance(member=Identity.objects.get(external_id=OPENID).member) == 10
    assert SignedQuery.objects.count() == 1


def test_in_safe_mode_plaintext_beside_the_same_encrypt_is_another_body(safe_wechat, plaza):
    timestamp, nonce = seconds_from_now(0), "1398465703"
    body, query = signed(safe_wechat, fixture_xml("wechat/text.xml"), timestamp=timestamp, nonce=nonce)
    assert safe_wechat.post_raw(body, query).status_code == 200
    before = effects()
    tampered = body.replace("</xml>", f"<FromUserName><![CDATA[{MADE_UP}]]></FromUserName></xml>")
    assert safe_wechat.post_raw(tampered, query).status_code == 403
    assert effects() == before


def test_a_signature_seen_on_url_verification_does_not_authorise_a_message(client, wechat, plaza):
    timestamp, nonce = seconds_from_now(0), "1398465704"
    verification = {"signature": wechat_signature(WECHAT_TOKEN, timestamp, nonce), "timestamp": timestamp,
                    "nonce": nonce, "echostr": "42"}
    assert client.get("/wechat/?" + urlencode(verification)).content == b"42"
    assert client.get("/wechat/?" + urlencode(verification)).content == b"42"  # WeChat may ask twice
    body, query = signed(wechat, made_up_check_in(), timestamp=timestamp, nonce=nonce)
    assert wechat.post_raw(body, query).status_code == 403
    assert not Member.objects.exists() and not Checkin.objects.exists()


def test_signed_queries_past_the_window_are_purged(wechat, monkeypatch):
    now = int(time.time())
    SignedQuery.objects.create(timestamp=now - TIMESTAMP_WINDOW_SECONDS - 1, nonce="old", body_sha256="0" * 64)
    SignedQuery.objects.create(timestamp=now - TIMESTAMP_WINDOW_SECONDS + 60, nonce="recent", body_sha256="0" * 64)
    monkeypatch.setattr(wechat_module, "SIGNED_QUERY_PURGE_EVERY", 1)
    wechat.say(fixture_xml("wechat/text.xml"))
    nonces = set(SignedQuery.objects.values_list("nonce", flat=True))
    assert "old" not in nonces and "recent" in nonces and len(nonces) == 2  # and the message's own


# --- with an EncodingAESKey, safe mode only ---------------------------------------------


@pytest.mark.parametrize("xml", [
    pytest.param(made_up_check_in(), id="check-in"),
    pytest.param(fixture_xml("wechat/text.xml", Content="会员码", FromUserName=MADE_UP), id="member-code"),
    pytest.param(fixture_xml("wechat/scan.xml", FromUserName=MADE_UP), id="scan"),
])
@pytest.mark.parametrize("encrypt_type", [None, "raw", "aes"])
def test_with_an_aes_key_a_plaintext_message_is_refused(client, settings, plaza, xml, encrypt_type, caplog):
    configure_wechat(settings, aes_key=WECHAT_AES_KEY)
    plain = WeChat(client, safe=False)
    query = plain.query(**({"encrypt_type": encrypt_type} if encrypt_type else {}))
    before = effects()
    with caplog.at_level(logging.WARNING, logger="bots.wechat"):
        response = plain.post_raw(xml, query)
    assert response.status_code == 400
    assert "会员号".encode() not in response.content and b"<Content>" not in response.content
    assert effects() == before and not Member.objects.exists() and not Checkin.objects.exists()
    assert "without Encrypt" in caplog.text


def test_compatible_mode_reads_only_the_encrypted_message(client, safe_wechat, plaza):
    """Compatible mode sends the plaintext fields beside Encrypt; they are signed by nothing."""
    inner = fixture_xml("wechat/text.xml", Content="积分")
    body, query = safe_wechat.body_and_query(inner)
    outer_plaintext = fixture_xml("wechat/subscribe_scene.xml", FromUserName=MADE_UP).replace("<xml>", "").replace(
        "</xml>", ""
    ).replace(f"<ToUserName><![CDATA[{ACCOUNT}]]></ToUserName>", "")
    compatible = body.replace("</xml>", outer_plaintext + "</xml>")
    reply = safe_wechat.reply(safe_wechat.post_raw(compatible, query))
    assert reply["ToUserName"] == OPENID and "您的积分：0 分" in reply["Content"]
    assert not Identity.objects.filter(external_id=MADE_UP).exists() and not Checkin.objects.exists()
    assert list(InboundMessage.objects.values_list("from_user", "content")) == [(OPENID, "积分")]


def test_with_an_aes_key_every_reply_is_encrypted(safe_wechat, plaza):
    response = safe_wechat.post(fixture_xml("wechat/subscribe_scene.xml"))
    assert b"<Encrypt>" in response.content and "签到成功".encode() not in response.content
    assert "签到成功！" in safe_wechat.reply(response)["Content"]


def test_a_refused_nonce_is_still_free_for_wechat(wechat, plaza):
    """A request refused before its body was weighed (bad signature, stale) takes nothing."""
    timestamp, nonce = seconds_from_now(0), secrets.token_hex(5)
    body, query = signed(wechat, fixture_xml("wechat/subscribe_scene.xml"), timestamp=timestamp, nonce=nonce)
    assert wechat.post_raw(made_up_check_in(), {**query, "signature": "0" * 40}).status_code == 403
    assert "签到成功！" in wechat.reply(wechat.post_raw(body, query))["Content"]
