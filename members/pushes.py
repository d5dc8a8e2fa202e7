"""The outbox: every message to a member goes through ``push_send``.

A push is a row with a unique event key (so it is never sent twice), copied to the
member's inbox in the same transaction, and delivered by a task after commit on the
member's best channel (DESIGN.md "Channels").
"""

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django_q.tasks import async_task

from members.models import InboxMessage, Member, Push


def push_send(
    *, member: Member, event: str, event_key: str, title: str, body: str, link: str = "", data: dict | None = None
) -> Push:
    """Queue a message for ``member``: once per ``event_key``, whatever the retries."""
    existing = Push.objects.filter(event_key=event_key).first()
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            push = Push.objects.create(
                member=member, event=event, event_key=event_key, title=title[:100], body=body, link=link,
                data=data or {}, next_attempt_at=timezone.now(),
            )
            InboxMessage.objects.create(member=member, push=push, title=push.title, body=body, link=link)
    except IntegrityError:
        return Push.objects.get(event_key=event_key)
    transaction.on_commit(lambda: async_task("members.tasks.push_deliver", push.pk))
    return push


def push_deliver(*, push_id: int) -> Push:
    """Deliver one pending push. Safe to run twice: a push leaves PENDING once."""
    with transaction.atomic():
        push = Push.objects.select_for_update().select_related("member").filter(pk=push_id).first()
        if push is None or push.status != Push.Status.PENDING:
            return push
        push.attempts += 1
        if settings.O2O_SANDBOX:
            push.channel, push.status, push.sent_at = Push.Channel.SANDBOX, Push.Status.SENT, timezone.now()
        else:
            push.channel, push.status = Push.Channel.INBOX, Push.Status.SKIPPED
        push.next_attempt_at = None
        push.save(update_fields=["attempts", "channel", "status", "sent_at", "next_attempt_at"])
        return push


def inbox_mark_read(*, member: Member, message_ids: list[int] | None = None) -> int:
    """Mark some (or all) of the member's unread messages read; returns how many."""
    unread = InboxMessage.objects.filter(member=member, read_at__isnull=True)
    if message_ids is not None:
        unread = unread.filter(pk__in=message_ids)
    return unread.update(read_at=timezone.now())
