"""The bots' work in the task cluster: what is too slow for the platforms' reply deadlines,
and the daily purge of old conversations. Each is safe to run twice."""

import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from bots.models import InboundMessage
from core.platforms import PlatformRejected, alipay_call, alipay_configured, wechat_client, wechat_configured
from members.identity import identity_link_unionid, member_active
from members.models import Identity

logger = logging.getLogger(__name__)


def wechat_unionid_fetch(openid: str) -> None:
    """Ask WeChat for a follower's unionid (user info API) and link it: a shopper who
    already uses the mini-program is then one member, their two merged if need be."""
    if not wechat_configured():
        return
    identity = Identity.objects.select_related("member").filter(
        channel=Identity.Channel.WECHAT_OPENID, external_id=openid
    ).first()
    if identity is None:
        return
    member = member_active(identity.member)
    if Identity.objects.filter(member=member, channel=Identity.Channel.WECHAT_UNIONID).exists():
        return
    try:
        info = wechat_client().user.get(openid)
    except PlatformRejected as exc:
        # e.g. 40003, not a follower any more: retrying cannot help. Unavailability
        # raises on, so that the task counts as failed and can be run again.
        logger.info("WeChat refused user info for a follower: %s", exc.platform_code)
        return
    unionid = info.get("unionid") if isinstance(info, dict) else None
    if isinstance(unionid, str) and unionid:
        identity_link_unionid(member=member, unionid=unionid)


def alipay_reply_send(inbound_message_id: int) -> None:
    """Send the reply to a service-window message: Alipay's gateway takes only an
    acknowledgement, replies go through the open API (customer-service message)."""
    message = InboundMessage.objects.filter(pk=inbound_message_id, reply_sent_at__isnull=True).first()
    if message is None or not message.reply or not alipay_configured():
        return
    alipay_call(
        "alipay.open.public.message.custom.send",
        {"to_user_id": message.from_user, "msg_type": "text", "text": {"content": message.reply}, "chat": "1"},
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
