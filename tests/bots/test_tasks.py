from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.models import Schedule

from bots import tasks
from bots.models import InboundMessage

pytestmark = pytest.mark.django_db


def log(key, days_ago):
    message = InboundMessage.objects.create(channel="wechat", dedup_key=key, from_user="o", msg_type="text")
    InboundMessage.objects.filter(pk=message.pk).update(created_at=timezone.now() - timedelta(days=days_ago))


def test_old_conversations_are_purged_daily_and_recent_ones_kept(settings, monkeypatch):
    assert Schedule.objects.get(name="bots: purge old conversations").func == "bots.tasks.conversations_purge"
    settings.BOT_CONVERSATION_DAYS = 30
    monkeypatch.setattr(tasks, "PURGE_BATCH", 2)
    for i in range(5):
        log(f"old-{i}", 31)
    log("recent", 29)
    assert tasks.conversations_purge() == 5
    assert list(InboundMessage.objects.values_list("dedup_key", flat=True)) == ["recent"]
    assert tasks.conversations_purge() == 0


def test_alipay_reply_is_sent_once_however_often_the_task_runs(monkeypatch, settings):
    sent = []
    monkeypatch.setattr(tasks, "alipay_configured", lambda: True)
    monkeypatch.setattr(tasks, "alipay_call", lambda method, biz: sent.append((method, biz)))
    message = InboundMessage.objects.create(
        channel="alipay", dedup_key="msg:1", from_user="2088", msg_type="text", reply="hi"
    )
    tasks.alipay_reply_send(message.pk)
    tasks.alipay_reply_send(message.pk)
    assert sent == [("alipay.open.public.message.custom.send",
                     {"to_user_id": "2088", "msg_type": "text", "text": {"content": "hi"}, "chat": "1"})]
