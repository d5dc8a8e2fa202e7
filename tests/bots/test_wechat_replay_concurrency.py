"""One signed query string posted several times at once, on separate workers: with
several bodies, one gets in and the others are refused and change nothing; with one
body (WeChat's retries), all get the one reply."""

import threading
import time
from urllib.parse import urlencode

import pytest
from django.db import connection
from django.test import Client

from bots.models import InboundMessage, SignedQuery
from members import ledger, services
from members.models import Checkin, Identity, Member
from tests.bots.conftest import configure_wechat
from tests.bots.platforms import OPENID, WECHAT_TOKEN, fixture_xml, wechat_signature, xml_dict

pytestmark = pytest.mark.django_db(transaction=True)


def race(path: str, bodies: list[bytes]) -> list:
    """The responses to ``bodies`` posted to ``path`` at once, one thread each."""
    start_line = threading.Barrier(len(bodies))
    responses, errors = [None] * len(bodies), []

    def deliver(i):
        try:
            start_line.wait(timeout=30)
            responses[i] = Client().post(path, data=bodies[i], content_type="text/xml")
        except BaseException as exc:  # noqa: BLE001 — reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver, args=(i,)) for i in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    return responses


def signed_path(nonce: str) -> str:
    timestamp = str(int(time.time()))
    return "/wechat/?" + urlencode({"signature": wechat_signature(WECHAT_TOKEN, timestamp, nonce),
                                    "timestamp": timestamp, "nonce": nonce, "openid": OPENID})


@pytest.fixture
def plaintext_account(settings):
    configure_wechat(settings, aes_key="")  # plaintext: the signature covers nothing but the query string
    services.plaza_create(code="sh-wanda", name="上海五角场万达广场")


def test_bodies_racing_for_one_signed_query_let_exactly_one_in(plaintext_account):
    followers = [OPENID] + [f"oMadeUpFollower{i:013d}" for i in range(1, 4)]
    bodies = [fixture_xml("wechat/subscribe_scene.xml", FromUserName=follower).encode() for follower in followers]

    statuses = [response.status_code for response in race(signed_path("1398465799"), bodies)]

    assert sorted(statuses) == [200, 403, 403, 403]
    winner = followers[statuses.index(200)]
    [member] = Member.objects.all()
    assert Identity.objects.get().external_id == winner and Identity.objects.get().member == member
    assert InboundMessage.objects.count() == 1 and Checkin.objects.count() == 1
    assert ledger.member_points_balance(member=member) == 10
    assert SignedQuery.objects.count() == 1


def test_wechats_retries_of_one_signed_query_at_once_all_get_the_one_reply(plaintext_account):
    body = fixture_xml("wechat/subscribe_scene.xml").encode()

    responses = race(signed_path("1398465798"), [body] * 4)

    assert [response.status_code for response in responses] == [200] * 4
    replies = {xml_dict(response.content)["Content"] for response in responses}  # CreateTime may differ
    assert len(replies) == 1 and "签到成功！" in replies.pop()
    assert Member.objects.count() == 1 and Checkin.objects.count() == 1 and InboundMessage.objects.count() == 1
