"""The bots' work in the task cluster: what is too slow for the platforms' reply deadlines,
and the daily purge of old conversations. Each is safe to run twice.

One exception runs in the request: a new WeChat follower's unionid is asked for right
after their first message commits, briefly, so that the mini-program they open next
finds the same member; only when WeChat is slow or says nothing is it left to the task.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone
from django_q.tasks import async_task

from bots.models import InboundMessage
from core.errors import PlatformError
from core.platforms import PlatformRejected, alipay_call, alipay_configured, wechat_configured, wechat_user_info
from members.identity import alipay_channel_of, identity_link_unionid, member_active
from members.models import Identity

logger = logging.getLogger(__name__)

# How long a new follower's first message waits for their unionid (setting
# WECHAT_UNIONID_INLINE_TIMEOUT_SECONDS), access token included: the whole reply must
# reach WeChat within its 5 seconds.
DEFAULT_UNIONID_INLINE_TIMEOUT_SECONDS = 1.5


def wechat_unionid_fetch(openid: str) -> None:
    """Ask WeChat for a follower's unionid (user info API) and link it: a shopper who
    already uses the mini-program is then one member, their two merged if need be."""
    if not wechat_configured():
        return
    try:
        _unionid_link(openid, timeout=None)
    except PlatformRejected as exc:
        # e.g. 40003, not a follower any more: retrying cannot help. Unavailability
        # raises on, so that the task counts as failed and can be run again.
        logger.info("WeChat refused user info for a follower: %s", exc.platform_code)


def wechat_unionid_fetch_now(openid: str) -> None:
    """``wechat_unionid_fetch`` for a new follower, in the request of their first message,
    after its transaction commits and before the reply: within
    WECHAT_UNIONID_INLINE_TIMEOUT_SECONDS, else (slow, refused, no unionid) the task.

    Never inside the message's transaction: on SQLite that transaction holds the one
    write lock, and every other writer would wait for WeChat with it.
    """
    if not wechat_configured():
        return
    timeout = getattr(settings, "WECHAT_UNIONID_INLINE_TIMEOUT_SECONDS", DEFAULT_UNIONID_INLINE_TIMEOUT_SECONDS)
    try:
        linked = _unionid_link(openid, timeout=timeout)
    except (PlatformError, DatabaseError) as exc:
        logger.info("A new follower's unionid is left to the task: %s", getattr(exc, "code", type(exc).__name__))
        linked = False
    if not linked:
        async_task("bots.tasks.wechat_unionid_fetch", openid)


def _unionid_link(openid: str, *, timeout: float | None) -> bool:
    """Link the follower's unionid; False when WeChat's user info names none.

    True also when there is nothing to learn: no such follower, or one whose member
    already has a unionid."""
    identity = Identity.objects.select_related("member").filter(
        channel=Identity.Channel.WECHAT_OPENID, external_id=openid
    ).first()
    if identity is None:
        return True
    member = member_active(identity.member)
    if Identity.objects.filter(member=member, channel=Identity.Channel.WECHAT_UNIONID).exists():
        return True
    info = wechat_user_info(openid, timeout=timeout)
    unionid = info.get("unionid") if isinstance(info, dict) else None
    if not (isinstance(unionid, str) and unionid):
        return False
    identity_link_unionid(member=member, unionid=unionid)
    return True


def alipay_reply_send(inbound_message_id: int) -> None:
    """Send the reply to a service-window message: Alipay's gateway takes only an
    acknowledgement, replies go through the open API (customer-service message)."""
    message = InboundMessage.objects.filter(pk=inbound_message_id, reply_sent_at__isnull=True).first()
    if message is None or not message.reply or not alipay_configured():
        return
    # The sender as the service window named them: a user_id, or an open_id for apps on
    # Alipay's open_id standard, which the open API takes as ``open_id``.
    if alipay_channel_of(message.from_user) == Identity.Channel.ALIPAY_OPEN_ID:
        recipient = {"open_id": message.from_user}
    else:
        recipient = {"to_user_id": message.from_user}
    alipay_call(
        "alipay.open.public.message.custom.send",
        {**recipient, "msg_type": "text", "text": {"content": message.reply}, "chat": "1"},
    )
    InboundMessage.objects.filter(pk=message.pk, reply_sent_at__isnull=True).update(reply_sent_at=timezone.now())


# Conversations older than this are deleted (setting BOT_CONVERSATION_DAYS). The log
# is the dedup table only for the platforms' retry windows (seconds for WeChat, a day
# for Alipay); past that it is for staff reading back, and grows with every message.
DEFAULT_CONVERSATION_DAYS = 180
PURGE_BATCH = 5000


def conversations_purge() -> int:
    """Delete conversations past their retention, in batches. Returns how many."""
    days = settings.BOT_CONVERSATION_DAYS
    before = timezone.now() - timedelta(days=max(days, 2))
    deleted = 0
    while True:
        old = InboundMessage.objects.filter(created_at__lt=before).order_by("pk")
        ids = list(old.values_list("pk", flat=True)[:PURGE_BATCH])
        if not ids:
            return deleted
        deleted += InboundMessage.objects.filter(pk__in=ids).delete()[0]
