"""Binding the phone number from the mini-program's getPhoneNumber button (POST /api/mp/v1/phone/).

The shopper logs in through the fake WeChat (jscode2session hands out a session key
the test knows); the test encrypts the payload with that key the way WeChat does:
AES-128-CBC, PKCS#7, base64.
"""

import base64
import json
import os
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from django.core.cache import cache
from django.test import Client, override_settings

from members.auth import shopper_token_issue
from members.models import Member
from tests.factories import make_member
from tests.fakes.platform_server import json_reply

pytestmark = pytest.mark.django_db

APPID = "wx-mini"
SESSION_KEY = base64.b64encode(bytes(range(16))).decode()
SAMPLE = json.loads((Path(__file__).resolve().parent.parent / "fixtures" / "mp" / "wechat_open_data_sample.json").read_text())


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, (response.status_code, response.content[:500])
    body = response.json()
    assert body["code"] == code, body
    return body


def encrypt(data, *, key: str = SESSION_KEY, iv: bytes | None = None) -> dict:
    """A getPhoneNumber payload as the mini-program receives it from WeChat."""
    iv = iv or os.urandom(16)
    plaintext = data if isinstance(data, bytes) else json.dumps(data).encode()
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plaintext) + padder.finalize()
    encryptor = Cipher(algorithms.AES(base64.b64decode(key)), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    return {"encrypted_data": base64.b64encode(ciphertext).decode(), "iv": base64.b64encode(iv).decode()}


def phone_data(*, appid: str = APPID, number: str = "13800138000", country: str = "86") -> dict:
    return {
        "phoneNumber": number if country == "86" else f"+{country}{number}",
        "purePhoneNumber": number,
        "countryCode": country,
        "watermark": {"timestamp": int(time.time()), "appid": appid},
    }


@pytest.fixture
def wechat(platform_server):
    with override_settings(
        **platform_server.settings(), WECHAT_MINIAPP_ID=APPID, WECHAT_MINIAPP_SECRET="mini-secret", PLATFORM_TIMEOUT_SECONDS=2
    ):
        yield platform_server


def log_in(wechat, *, openid: str = "o-phone-1", session_key: str = SESSION_KEY) -> tuple[Client, Member]:
    """wx.login, then POST auth/wechat/: the session key stays on the server."""
    wechat.script("/sns/jscode2session", json_reply({"openid": openid, "session_key": session_key}))
    body = Client().post("/api/mp/v1/auth/wechat/", data={"code": "C"}, content_type="application/json").json()
    client = Client(headers={"Authorization": f"Bearer {body['token']}"})
    return client, Member.objects.get(member_no=body["member_no"])


def bind(client: Client, body) -> object:
    return client.post("/api/mp/v1/phone/", data=json.dumps(body), content_type="application/json")


def test_phone_from_getphonenumber_is_decrypted_with_the_login_session_and_bound(wechat):
    client, member = log_in(wechat)

    response = bind(client, encrypt(phone_data()))

    assert response.status_code == 200, response.content
    assert response.json() == {"phone_masked": "138****8000"}
    member.refresh_from_db()
    assert member.phone == "+8613800138000"
    assert client.get("/api/mp/v1/me/").json()["phone_masked"] == "138****8000"


def test_a_phone_outside_the_mainland_is_bound_with_its_country_code(wechat):
    client, member = log_in(wechat)

    assert bind(client, encrypt(phone_data(number="91234567", country="852"))).status_code == 200

    member.refresh_from_db()
    assert member.phone == "+85291234567"


def test_a_new_login_replaces_the_session_key(wechat):
    old_key = base64.b64encode(b"o" * 16).decode()
    log_in(wechat, session_key=old_key)
    client, _ = log_in(wechat)

    assert_error(bind(client, encrypt(phone_data(), key=old_key)), 400, "phone_data_invalid")
    assert bind(client, encrypt(phone_data())).status_code == 200


def test_phone_data_for_another_mini_program_is_refused(wechat):
    client, member = log_in(wechat)

    assert_error(bind(client, encrypt(phone_data(appid="wx-someone-else"))), 400, "phone_data_wrong_app")

    member.refresh_from_db()
    assert member.phone is None


@pytest.mark.parametrize("payload", [
    {"phoneNumber": "13800138000"},  # no watermark
    {"phoneNumber": "13800138000", "watermark": "wx-mini"},
])
def test_phone_data_without_our_watermark_is_refused(wechat, payload):
    client, _ = log_in(wechat)

    assert_error(bind(client, encrypt(payload)), 400, "phone_data_wrong_app")


@pytest.mark.parametrize("body", [
    encrypt(phone_data(), key=base64.b64encode(b"k" * 16).decode()),  # another session's key
    {**encrypt(phone_data()), "iv": base64.b64encode(b"\x00" * 16).decode()},  # another iv
    {**encrypt(phone_data()), "iv": base64.b64encode(b"short").decode()},
    {**encrypt(phone_data()), "iv": "not base64!"},
    {**encrypt(phone_data()), "encrypted_data": "not base64!"},
    {**encrypt(phone_data()), "encrypted_data": base64.b64encode(b"x" * 15).decode()},  # not whole blocks
    encrypt(b"not json at all"),
    encrypt(b"[1, 2, 3]"),
    encrypt(b"\xff\xfe invalid utf-8"),
], ids=["other-key", "other-iv", "short-iv", "iv-garbage", "data-garbage", "partial-block", "not-json",
        "not-an-object", "not-utf8"])
def test_phone_data_that_does_not_decrypt_to_our_payload_is_400(wechat, body):
    client, member = log_in(wechat)

    assert_error(bind(client, body), 400, "phone_data_invalid")

    member.refresh_from_db()
    assert member.phone is None


def test_phone_data_without_a_number_is_refused(wechat):
    client, member = log_in(wechat)
    payload = {"nickName": "Band", "watermark": {"timestamp": int(time.time()), "appid": APPID}}

    assert_error(bind(client, encrypt(payload)), 400, "phone_data_invalid")

    member.refresh_from_db()
    assert member.phone is None


def test_wechats_own_sample_decrypts_and_is_checked_against_our_appid(platform_server):
    """WeChat's documented example payload: user info (no phone) for its sample app."""
    member = make_member()
    cache.set(f"miniapp-session-key:{member.pk}", SAMPLE["session_key"])
    client = Client(headers={"Authorization": f"Bearer {shopper_token_issue(member=member).token}"})
    body = {"encrypted_data": SAMPLE["encrypted_data"], "iv": SAMPLE["iv"]}

    with override_settings(WECHAT_MINIAPP_ID=SAMPLE["appid"], WECHAT_MINIAPP_SECRET="s"):
        # Decrypted, the watermark is the sample app's: ours here, so only the missing number is wrong.
        assert_error(bind(client, body), 400, "phone_data_invalid")
    with override_settings(WECHAT_MINIAPP_ID=APPID, WECHAT_MINIAPP_SECRET="s"):
        assert_error(bind(client, body), 400, "phone_data_wrong_app")


def test_a_phone_another_member_has_is_409_phone_taken(wechat):
    make_member(phone="13800138000")
    client, member = log_in(wechat)

    assert_error(bind(client, encrypt(phone_data())), 409, "phone_taken")

    member.refresh_from_db()
    assert member.phone is None


def test_a_number_we_cannot_reach_is_400_invalid_phone(wechat):
    client, _ = log_in(wechat)

    assert_error(bind(client, encrypt(phone_data(number="12345"))), 400, "invalid_phone")


def test_without_a_wechat_login_session_the_shopper_must_log_in_again(wechat):
    member = make_member()  # e.g. logged in through Alipay, or the session key expired
    client = Client(headers={"Authorization": f"Bearer {shopper_token_issue(member=member).token}"})

    assert_error(bind(client, encrypt(phone_data())), 409, "wechat_session_expired")


def test_phone_binding_answers_503_when_the_mini_program_is_not_configured(wechat):
    client, _ = log_in(wechat)

    with override_settings(WECHAT_MINIAPP_ID="", WECHAT_MINIAPP_SECRET=""):
        assert_error(bind(client, encrypt(phone_data())), 503, "platform_not_configured")


@pytest.mark.parametrize("body", [{}, {"encrypted_data": "abc"}, {"iv": "abc"}, {"encrypted_data": 1, "iv": 2}, {"encrypted_data": "", "iv": "abc"}])
def test_phone_binding_refuses_malformed_input(wechat, body):
    client, _ = log_in(wechat)

    assert_error(bind(client, body), 400, "validation_error")
