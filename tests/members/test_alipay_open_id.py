"""Alipay apps on the open_id standard (every app created since 2023) are told an open_id
where older apps are told a user_id: the mini-program and H5 logins accept either, and
file an open_id as an identity of its own (one per person and app, unlike a user_id)."""

import json

import pytest
from django.test import Client
from django.urls import reverse

from members import web_auth
from members.identity import alipay_channel_of, alipay_identity, member_for_identity
from members.models import Identity, Member
from tests.fakes.platform_server import (
    Reply,
    alipay_request_signature_valid,
    alipay_signed_response,
)

pytestmark = pytest.mark.django_db

OPEN_ID = "074a1CcTG1LelxKe4xQC0zgNdId0nxi95b5lsNpazWYoCo5"
USER_ID = "2088102150477652"
TOKEN_RESPONSE = "alipay_system_oauth_token_response"
Channel = Identity.Channel




@pytest.fixture
def alipay(settings, platform_server, app_keys, alipay_keys):
    """Alipay configured with keys made for the test, its gateway faked."""
    values = {
        **platform_server.settings(), "ALIPAY_APP_ID": "2021000000000001", "ALIPAY_APP_PRIVATE_KEY": app_keys.private_pem,
        "ALIPAY_PUBLIC_KEY": alipay_keys.public_pem, "PLATFORM_TIMEOUT_SECONDS": 2,
    }
    for name, value in values.items():
        setattr(settings, name, value)
    return platform_server


def oauth_token(app_keys, alipay_keys, answer: dict):
    """alipay.system.oauth.token answering ``answer`` to requests signed with our app key."""

    def script(request):
        form = request.form
        assert alipay_request_signature_valid(form, app_keys.public_pem)
        assert (form["method"], form["grant_type"]) == ("alipay.system.oauth.token", "authorization_code")
        return Reply(body=alipay_signed_response(TOKEN_RESPONSE, answer, alipay_keys.private_pem))

    return script


def miniapp_login():
    return Client().post("/api/mp/v1/auth/alipay/", data=json.dumps({"auth_code": "AUTH-1"}),
                         content_type="application/json")


def h5_login(client):
    """Start the H5 login and come back from Alipay's page with an auth code."""
    response = client.get(reverse("h5:login-alipay"), {"next": "/m/history/"})
    assert response.status_code == 302
    state = response["Location"].split("state=")[1].split("&")[0]
    return client.get(reverse("h5:login-alipay-callback"), {"auth_code": "AUTH-1", "state": state})


def identities(member: Member) -> list[tuple[str, str]]:
    return list(member.identities.values_list("channel", "external_id"))


# --- the identity -------------------------------------------------------------------------


@pytest.mark.parametrize(("answer", "expected"), [
    ({"user_id": USER_ID, "access_token": "AT"}, (Channel.ALIPAY_USER_ID, USER_ID)),
    ({"open_id": OPEN_ID, "access_token": "AT"}, (Channel.ALIPAY_OPEN_ID, OPEN_ID)),
    ({"user_id": USER_ID, "open_id": OPEN_ID}, (Channel.ALIPAY_USER_ID, USER_ID)),  # the one every app shares
    ({"user_id": "", "open_id": f" {OPEN_ID} "}, (Channel.ALIPAY_OPEN_ID, OPEN_ID)),
    ({"user_id": 2088102150477652}, None),
    ({"open_id": "x" * 129}, None),
    ({"access_token": "AT"}, None),
])
def test_an_alipay_answer_names_a_user_id_or_else_an_open_id(answer, expected):
    assert alipay_identity(answer) == expected


@pytest.mark.parametrize(("external_id", "channel"), [
    (USER_ID, Channel.ALIPAY_USER_ID),
    (OPEN_ID, Channel.ALIPAY_OPEN_ID),
    ("0" + "1" * 20 + "a", Channel.ALIPAY_OPEN_ID),
    ("２０８８", Channel.ALIPAY_OPEN_ID),  # full-width digits are not Alipay's
])
def test_an_alipay_id_said_without_its_kind_is_a_user_id_when_it_is_digits(external_id, channel):
    assert alipay_channel_of(external_id) == channel


def test_a_user_id_and_an_open_id_are_different_identities():
    by_user_id = member_for_identity(channel=Channel.ALIPAY_USER_ID, external_id="1234", join_channel="alipay")
    by_open_id = member_for_identity(channel=Channel.ALIPAY_OPEN_ID, external_id="1234", join_channel="alipay")
    assert by_user_id.member.pk != by_open_id.member.pk


# --- the mini-program ------------------------------------------------------------------------


def test_miniapp_login_with_only_an_open_id_makes_a_member_and_finds_them_again(alipay, app_keys, alipay_keys):
    alipay.script("/gateway.do", oauth_token(app_keys, alipay_keys, {"open_id": OPEN_ID, "access_token": "AT"}))

    first = miniapp_login()
    second = miniapp_login()

    assert first.status_code == 200, first.content
    assert first.json()["created"] is True
    assert (second.json()["member_no"], second.json()["created"]) == (first.json()["member_no"], False)
    member = Member.objects.get(member_no=first.json()["member_no"])
    assert member.join_channel == Member.Channel.ALIPAY
    assert identities(member) == [(Channel.ALIPAY_OPEN_ID, OPEN_ID)]


def test_miniapp_login_with_a_user_id_still_files_a_user_id(alipay, app_keys, alipay_keys):
    alipay.script("/gateway.do", oauth_token(app_keys, alipay_keys, {"user_id": USER_ID, "access_token": "AT"}))

    body = miniapp_login().json()

    assert identities(Member.objects.get(member_no=body["member_no"])) == [(Channel.ALIPAY_USER_ID, USER_ID)]


def test_miniapp_login_with_neither_is_502_and_creates_nothing(alipay, app_keys, alipay_keys):
    alipay.script("/gateway.do", oauth_token(app_keys, alipay_keys, {"access_token": "AT"}))

    response = miniapp_login()

    assert response.status_code == 502 and response.json()["code"] == "platform_bad_response"
    assert not Member.objects.exists()


# --- H5 ---------------------------------------------------------------------------------------


def test_h5_login_with_only_an_open_id_makes_a_member_and_finds_them_again(client, alipay, app_keys, alipay_keys):
    alipay.script("/gateway.do", oauth_token(app_keys, alipay_keys, {"open_id": OPEN_ID, "access_token": "AT"}))

    first = h5_login(client)

    assert first.status_code == 302 and first["Location"] == "/m/history/"
    identity = Identity.objects.get(channel=Channel.ALIPAY_OPEN_ID, external_id=OPEN_ID)
    assert client.session[web_auth.SESSION_MEMBER] == identity.member_id
    assert identity.member.join_channel == Member.Channel.H5

    other_browser = Client()
    assert h5_login(other_browser).status_code == 302
    assert other_browser.session[web_auth.SESSION_MEMBER] == identity.member_id
    assert Member.objects.count() == 1


def test_h5_login_with_a_user_id_still_files_a_user_id(client, alipay, app_keys, alipay_keys):
    alipay.script("/gateway.do", oauth_token(app_keys, alipay_keys, {"user_id": USER_ID, "access_token": "AT"}))

    assert h5_login(client).status_code == 302

    identity = Identity.objects.get(channel=Channel.ALIPAY_USER_ID, external_id=USER_ID)
    assert client.session[web_auth.SESSION_MEMBER] == identity.member_id


def test_h5_login_with_neither_fails_and_creates_nothing(client, alipay, app_keys, alipay_keys):
    alipay.script("/gateway.do", oauth_token(app_keys, alipay_keys, {"access_token": "AT"}))

    response = h5_login(client)

    assert response.status_code == 503  # the "try again" page, as for any unusable answer
    assert not Member.objects.exists()
    assert web_auth.SESSION_MEMBER not in client.session


def test_one_open_id_is_one_member_in_the_miniprogram_and_the_h5_pages(client, alipay, app_keys, alipay_keys):
    alipay.script("/gateway.do", oauth_token(app_keys, alipay_keys, {"open_id": OPEN_ID, "access_token": "AT"}))

    member_no = miniapp_login().json()["member_no"]
    h5_login(client)

    assert Member.objects.get(pk=client.session[web_auth.SESSION_MEMBER]).member_no == member_no
