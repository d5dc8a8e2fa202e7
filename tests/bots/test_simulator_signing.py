"""The simulator signs each message as WeChat does now: the current time, a new nonce,
and safe mode when an AES key is set; the endpoint's checks let every one in."""

import time

import pytest

from bots import simulator
from bots.models import SignedQuery
from members import services
from members.models import Identity, Member
from tests.bots.platforms import WECHAT_AES_KEY, WECHAT_APP_ID, WECHAT_TOKEN
from tests.bots.test_simulator import URL, sandbox, staff  # noqa: F401 — fixtures

pytestmark = pytest.mark.django_db


@pytest.fixture
def shopper(db):
    member = services.member_create(join_channel=Member.Channel.WECHAT, nickname="Demo shopper 0")
    return Identity.objects.create(member=member, channel=Identity.Channel.WECHAT_OPENID, external_id="demo-openid-0")


def send(client, text: str):
    return client.post(URL, {"openid": "demo-openid-0", "action": "text", "text": text, "key": "points"})


@pytest.mark.parametrize("aes_key", [pytest.param("", id="plaintext"), pytest.param(WECHAT_AES_KEY, id="safe")])
def test_each_message_is_signed_now_with_a_new_nonce(client, staff, sandbox, shopper, aes_key):
    sandbox.WECHAT_TOKEN, sandbox.WECHAT_APP_ID, sandbox.WECHAT_ENCODING_AES_KEY = WECHAT_TOKEN, WECHAT_APP_ID, aes_key
    results = [send(client, text).context["result"] for text in ("积分", "帮助", "积分")]
    again = client.post(URL, {"again": "1"}).context["result"]
    assert [r["status"] for r in results + [again]] == [200] * 4
    assert again["reply"] == results[-1]["reply"] and "您的积分" in again["reply"]
    assert all(r["safe_mode"] is bool(aes_key) for r in results)
    signed = list(SignedQuery.objects.values_list("timestamp", "nonce"))
    assert len(signed) == 4 and len({nonce for _, nonce in signed}) == 4
    assert all(abs(timestamp - time.time()) < 60 for timestamp, _ in signed)


def test_a_plaintext_simulator_would_be_refused_once_an_aes_key_is_set(client, staff, sandbox, shopper,
                                                                       monkeypatch):
    sandbox.WECHAT_TOKEN, sandbox.WECHAT_APP_ID = WECHAT_TOKEN, WECHAT_APP_ID
    sandbox.WECHAT_ENCODING_AES_KEY = WECHAT_AES_KEY
    monkeypatch.setattr(simulator, "wechat_crypto", lambda: None)  # a simulator that forgot to encrypt
    result = send(client, "积分").context["result"]
    assert result["status"] == 400 and not result["safe_mode"]
