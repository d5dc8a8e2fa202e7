"""Shopper tokens (members/auth.py): signed, expiring, for one purpose, refused for
banned and merged members."""

import json
from datetime import timedelta

import pytest
from django.core import signing
from django.test import Client, override_settings
from django.utils import timezone

from members import auth, checkin, identity
from members.auth import (
    ShopperBanned,
    ShopperTokenExpired,
    ShopperTokenInvalid,
    shopper_token_issue,
    shopper_token_read,
)
from members.models import Member
from tests.factories import make_member, make_plaza, make_store

pytestmark = pytest.mark.django_db

ME = "/api/mp/v1/me/"


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, (response.status_code, response.content[:500])
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["code"] == code, body
    assert isinstance(body["message"], str) and body["message"]
    return body


def get_me(authorization: str | None):
    headers = {"Authorization": authorization} if authorization is not None else {}
    return Client().get(ME, headers=headers)


@pytest.fixture
def member() -> Member:
    return make_member(nickname="Alice")


def flip(text: str, index: int) -> str:
    return text[:index] + ("A" if text[index] != "A" else "B") + text[index + 1:]


# --- the token itself ---------------------------------------------------------------------


def test_a_token_names_its_member_until_it_expires(member):
    now = timezone.now()

    issued = shopper_token_issue(member=member, now=now)

    assert shopper_token_read(token=issued.token, now=now).pk == member.pk
    assert issued.expires_at == (now + timedelta(days=7)).replace(microsecond=0)
    assert shopper_token_read(token=issued.token, now=issued.expires_at - timedelta(seconds=1)).pk == member.pk
    with pytest.raises(ShopperTokenExpired):
        shopper_token_read(token=issued.token, now=issued.expires_at)


@override_settings(SHOPPER_TOKEN_TTL_SECONDS=600)
def test_the_token_lifetime_is_a_setting(member):
    now = timezone.now()

    issued = shopper_token_issue(member=member, now=now)

    assert issued.expires_at == (now + timedelta(seconds=600)).replace(microsecond=0)


def test_a_token_survives_a_secret_key_rotation_while_the_old_key_is_a_fallback(member, settings):
    token = shopper_token_issue(member=member).token
    old_key = settings.SECRET_KEY

    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = "a-new-secret-key-" + "y" * 40, [old_key]
    assert shopper_token_read(token=token).pk == member.pk

    settings.SECRET_KEY_FALLBACKS = []
    with pytest.raises(ShopperTokenInvalid):
        shopper_token_read(token=token)


def test_a_token_of_another_format_version_is_refused(member):
    signer = signing.Signer(salt=auth.SHOPPER_TOKEN_SALT, algorithm="sha256")
    exp = int((timezone.now() + timedelta(days=1)).timestamp())

    for payload in ({"m": member.pk, "v": 2, "exp": exp}, {"m": member.pk, "exp": exp}, {"m": str(member.pk), "v": 1, "exp": exp}, [member.pk]):
        with pytest.raises(ShopperTokenInvalid):
            shopper_token_read(token=signer.sign_object(payload))


def test_a_token_of_a_merged_member_speaks_for_the_survivor_and_of_a_banned_member_refused(member):
    token = shopper_token_issue(member=member).token
    survivor = make_member()

    Member.objects.filter(pk=member.pk).update(status=Member.Status.BANNED)
    with pytest.raises(ShopperBanned):
        shopper_token_read(token=token)

    Member.objects.filter(pk=member.pk).update(status=Member.Status.ACTIVE)
    identity.member_merge(source=member, target=survivor, reason="test")
    assert shopper_token_read(token=token).pk == survivor.pk


# --- through the API ----------------------------------------------------------------------


def test_me_without_a_token_is_401_with_a_bearer_challenge():
    response = get_me(None)

    assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_an_expired_token_is_401_token_expired(member, monkeypatch):
    token = shopper_token_issue(member=member).token
    assert get_me(f"Bearer {token}").status_code == 200

    eight_days_later = timezone.now() + timedelta(days=8)
    monkeypatch.setattr(auth.timezone, "now", lambda: eight_days_later)

    assert_error(get_me(f"Bearer {token}"), 401, "token_expired")


def test_a_token_issued_too_long_ago_is_401_token_expired(member):
    token = shopper_token_issue(member=member, now=timezone.now() - timedelta(days=7, seconds=1)).token

    assert_error(get_me(f"Bearer {token}"), 401, "token_expired")


@pytest.mark.parametrize("where", ["payload", "signature", "separator"])
def test_a_forged_token_is_401_token_invalid(member, where):
    token = shopper_token_issue(member=member).token
    payload, _, signature = token.rpartition(":")
    forged = {
        "payload": flip(payload, 3) + ":" + signature,
        "signature": payload + ":" + flip(signature, 5),
        "separator": payload + signature,
    }[where]

    assert_error(get_me(f"Bearer {forged}"), 401, "token_invalid")


def test_a_token_for_another_member_cannot_be_made_by_editing_the_payload(member):
    other = make_member()
    token = shopper_token_issue(member=member).token
    _, _, signature = token.rpartition(":")
    exp = int((timezone.now() + timedelta(days=1)).timestamp())
    payload = signing.b64_encode(json.dumps({"m": other.pk, "v": 1, "exp": exp}, separators=(",", ":")).encode()).decode()

    assert_error(get_me(f"Bearer {payload}:{signature}"), 401, "token_invalid")


def test_tokens_signed_for_other_purposes_are_401_token_invalid(member):
    exp = int((timezone.now() + timedelta(days=1)).timestamp())
    payload = {"m": member.pk, "v": 1, "exp": exp}
    others = [
        checkin.checkin_token_make(plaza=make_plaza()),  # a printed check-in QR
        signing.dumps(payload, salt="some.other.purpose"),
        signing.Signer(salt="some.other.purpose", algorithm="sha256").sign_object(payload),
        signing.dumps(payload),  # no salt at all
        signing.get_cookie_signer(salt="sessionid").sign(str(member.pk)),  # a signed cookie
    ]

    for token in others:
        assert_error(get_me(f"Bearer {token}"), 401, "token_invalid")


def test_a_merchant_api_key_is_not_a_shopper_token_nor_a_shopper_token_a_merchant_key(member):
    store = make_store()
    _, raw_key = auth.merchant_api_key_create(merchant=store.merchant)
    token = shopper_token_issue(member=member).token

    assert_error(get_me(f"Bearer {raw_key}"), 401, "token_invalid")
    response = Client().get("/api/v1/members/lookup/", {"code": "1"}, headers={"Authorization": f"Bearer {token}"})
    assert_error(response, 401, "invalid_api_key")


@pytest.mark.parametrize("header", ["Bearer", "Bearer ", "Token abc", "Basic dXNlcjpwYXNz", "abc"])
def test_a_malformed_authorization_header_is_401_token_invalid(header):
    assert_error(get_me(header), 401, "token_invalid")


def test_a_banned_members_existing_token_is_403_member_banned(member):
    token = shopper_token_issue(member=member).token
    Member.objects.filter(pk=member.pk).update(status=Member.Status.BANNED)

    assert_error(get_me(f"Bearer {token}"), 403, "member_banned")


def test_a_merged_members_token_keeps_working_as_the_survivor(member):
    token = shopper_token_issue(member=member).token
    survivor = make_member()
    identity.member_merge(source=member, target=survivor, reason="test")

    response = get_me(f"Bearer {token}")
    assert response.status_code == 200 and response.json()["member_no"] == survivor.member_no
