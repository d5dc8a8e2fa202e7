"""WeChat's retries arriving at once, on separate workers: still one effect, one reply."""

import threading

import pytest
from django.db import connection
from django.test import Client

from bots.models import InboundMessage
from members import ledger, services
from members.models import Checkin, Identity, Member, Visit
from tests.bots.conftest import configure_wechat
from tests.bots.platforms import OPENID, WECHAT_AES_KEY, WeChat, fixture_xml

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("safe", [False, True])
def test_simultaneous_deliveries_of_one_scan_have_one_effect_and_one_reply(settings, safe):
    configure_wechat(settings, aes_key=WECHAT_AES_KEY if safe else "")
    services.plaza_create(code="sh-wanda", name="上海五角场万达广场")
    xml = fixture_xml("wechat/subscribe_scene.xml")
    deliveries = 4
    start_line = threading.Barrier(deliveries)
    replies, errors = [None] * deliveries, []

    def deliver(i):
        wechat = WeChat(Client(), safe=safe)
        body, query = wechat.body_and_query(xml)  # each retry is signed afresh, as WeChat does
        try:
            start_line.wait(timeout=30)
            replies[i] = wechat.reply(wechat.post_raw(body, query)).get("Content")
        except BaseException as exc:  # noqa: BLE001 — reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver, args=(i,)) for i in range(deliveries)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert len(set(replies)) == 1 and "签到成功！" in replies[0]
    assert InboundMessage.objects.count() == 1 and Checkin.objects.count() == 1 and Visit.objects.count() == 1
    member = Identity.objects.get(external_id=OPENID).member
    assert Member.objects.count() == 1 and ledger.member_points_balance(member=member) == 10
