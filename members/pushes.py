"""The outbox: every message to a member goes through ``push_send``.

A push is a row with a unique event key (so it is never sent twice), copied to the
member's inbox in the same transaction, and delivered by a task after commit on the
member's best channel (DESIGN.md "Channels"):

1. a WeChat template message to an official-account follower, when staff configured
   an active PushTemplate for the event;
2. else a WeChat customer-service text, if the follower wrote to or followed the
   account within WeChat's 48-hour window (Identity.last_inbound_at);
3. a mini-program subscribe message, where the member has a subscription left for
   the event's mini-program template (MiniappSubscription);
4. an Alipay service-window message to a follower of the service window;
5. otherwise the inbox alone (SKIPPED, channel INBOX).

A channel that refuses this person for good (unfollowed, no subscription left, out
of the 48-hour window …) hands over to the next one at once; any other failure is
retried with exponential backoff, up to PUSH_MAX_ATTEMPTS. Without credentials for a
platform and with O2O_SANDBOX on, the sandbox stands in for it: the push is marked
sent on channel SANDBOX with what would have gone where, for staff to read in the admin.

At most once. Delivery claims the row first (PENDING → SENDING, in a short
transaction that locks it), calls the platform outside any transaction, and then
records the outcome only if the claim is still its own. So two workers never send
one push, and no database lock is held across a platform call (on SQLite a write
transaction locks the whole database). A worker that dies between the platform's
answer and the save leaves the push SENDING: the outcome is unknown, and the sweep
marks it FAILED when the claim's deadline passes, never sends it again by itself;
staff may resend it from the admin. A lost message costs little (it is in the
inbox); a repeated "you earned 38 points" reads like double points. A platform that
does not answer in time is the one case retried without knowing: WeChat and Alipay
offer no idempotency key for these sends, and dropping every message that met a
slow platform would lose far more than the rare duplicate.
"""

import functools
import logging
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, transaction
from django.db.models import F, Q, Sum
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import override
from django_q.brokers import get_broker
from django_q.tasks import async_task

from core import metrics, platforms
from core.bulk_sql import rows_insert
from core.errors import ApplicationError, PlatformError
from core.money import fen_to_yuan
from core.platforms import PlatformRejected
from members import ledger
from members.identity import member_active
from members.models import (
    Checkin,
    Identity,
    InboxMessage,
    Lot,
    Member,
    MiniappSubscription,
    Plaza,
    PointsTransaction,
    Push,
    PushTemplate,
    Store,
)

logger = logging.getLogger(__name__)

EVENT_POINTS_EARNED = "points_earned"
EVENT_POINTS_REDEEMED = "points_redeemed"
EVENT_CHECKIN = "checkin"
# Events a push may carry, for staff choosing what to configure; others may be added.
EVENTS = {
    EVENT_POINTS_EARNED: "Points earned",
    EVENT_POINTS_REDEEMED: "Points redeemed",
    EVENT_CHECKIN: "Check-in",
    "expiry_reminder": "Points expiry reminder",
    "wake_up": "Wake-up",
    "tier_upgraded": "Tier upgrade",
}

# WeChat allows customer-service messages for 48 hours after the follower's last message or event.
CUSTOMER_SERVICE_WINDOW = timedelta(hours=48)
# The task enqueued after commit makes the first attempt; the sweep picks a push up
# only if that task was lost, once this has passed.
FIRST_ATTEMPT_GRACE = timedelta(minutes=2)
# Platforms cut long texts; WeChat's customer-service limit is 2048 bytes.
TEXT_MAX_CHARS = 600

# WeChat errcodes that refuse this message to this person on this channel: retrying
# cannot help, the next channel may.
WECHAT_REFUSALS = {
    "40003": "not an openid of this app",
    "40037": "the template id is not one of this app's",
    "43004": "the person does not follow the official account",
    "43101": "the person has no subscription left for this template",
    "45015": "more than 48 hours since the person last wrote",
    "45047": "too many customer-service messages since the person last wrote",
    "47003": "the template data do not fit the template",
}
WECHAT_UNFOLLOWED = "43004"
WECHAT_NO_SUBSCRIPTION = "43101"

PLACEHOLDER = re.compile(r"\{(\w+)\}")


class SubscriptionInvalid(ApplicationError):
    """A subscription needs a mini-program template id (1 to 128 characters) and a count from 1 to 100."""

    code = "subscription_invalid"


def push_daily_cap() -> int:
    """Platform messages a member may get per local day; past it, pushes stay in the inbox."""
    return settings.PUSH_DAILY_CAP


def push_max_attempts() -> int:
    return settings.PUSH_MAX_ATTEMPTS


def push_claim_timeout() -> timedelta:
    """How long a worker may take over one delivery before its outcome counts as unknown.

    Longer than the slowest delivery: a few routes, each a token fetch, a send and a
    token refresh, every call capped at PLATFORM_TIMEOUT_SECONDS.
    """
    return timedelta(seconds=settings.PUSH_CLAIM_SECONDS)


def push_retry_delay(*, attempt: int) -> timedelta:
    """Exponential backoff after the ``attempt``-th failure: base × 2^(attempt-1), capped,
    plus up to 10 % jitter so that pushes failed together by an outage do not return together."""
    base = settings.PUSH_RETRY_BASE_SECONDS
    cap = settings.PUSH_RETRY_MAX_SECONDS
    seconds = min(base * 2 ** max(attempt - 1, 0), cap)
    return timedelta(seconds=seconds * (1 + random.uniform(0, 0.1)))


# --- the outbox -----------------------------------------------------------------------


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
                data=data or {}, next_attempt_at=timezone.now() + FIRST_ATTEMPT_GRACE,
            )
            InboxMessage.objects.create(member=member, push=push, title=push.title, body=body, link=link)
    except IntegrityError:
        return Push.objects.get(event_key=event_key)
    _enqueue_on_commit(push.pk)
    return push


def pushes_write(*, pushes: list[dict], deliver: bool = False) -> list[int]:
    """Write many new pushes (dicts of Push fields: ``member_id``, ``event``, ``event_key``,
    ``title``, ``body``, optionally ``link``, ``data``, ``next_attempt_at``) and their inbox
    copies: two INSERTs (``core.bulk_sql``), in the caller's transaction. Pushes whose
    event key exists already are left out (a rerun writes only what is missing); returns
    the ids of those written.

    ``deliver``: one task after the commit sends them all (a campaign's batch); without,
    the every-minute sweep sends them once due (``next_attempt_at``).
    """
    existing = set(Push.objects.filter(event_key__in=[p["event_key"] for p in pushes]).values_list("event_key", flat=True))
    new = [dict(p) for p in pushes if p["event_key"] not in existing]
    if not new:
        return []
    first_attempt = timezone.now() + (FIRST_ATTEMPT_GRACE if deliver else timedelta(0))
    for push in new:
        push["title"] = push["title"][:100]
        push.setdefault("link", "")
        push.setdefault("next_attempt_at", first_attempt)
    with transaction.atomic():
        ids = dict((key, pk) for pk, key in rows_insert(Push, new, returning=("id", "event_key")))
        rows_insert(InboxMessage, [
            {"member_id": p["member_id"], "push_id": ids[p["event_key"]], "title": p["title"], "body": p["body"],
             "link": p["link"]}
            for p in new
        ])
        written = [ids[p["event_key"]] for p in new]
        if deliver:
            transaction.on_commit(lambda: async_task("members.tasks.pushes_deliver", written, broker=_broker()))
    return written


@functools.cache
def _broker():
    """One task-queue broker per process: django-q2 would otherwise open a new Redis
    connection for every enqueue (about 3 ms a push). A connection pool, not state."""
    return get_broker()


def _enqueue_on_commit(push_id: int) -> None:
    transaction.on_commit(lambda: async_task("members.tasks.push_deliver", push_id, broker=_broker()))


def push_resend(*, push_ids: Iterable[int]) -> int:
    """Send failed and inbox-only pushes again, with a fresh count of attempts.

    Sent pushes are left alone (never twice), and so are pending ones (already on
    their way). Returns how many were queued.
    """
    resendable = [Push.Status.FAILED, Push.Status.SKIPPED]
    with transaction.atomic():
        ids = list(
            Push.objects.select_for_update().filter(pk__in=list(push_ids), status__in=resendable).values_list("pk", flat=True)
        )
        Push.objects.filter(pk__in=ids, status__in=resendable).update(
            status=Push.Status.PENDING, attempts=0, channel="", next_attempt_at=timezone.now() + FIRST_ATTEMPT_GRACE
        )
        for push_id in ids:
            _enqueue_on_commit(push_id)
    return len(ids)


def pushes_due(*, now: datetime | None = None, limit: int = 500) -> list[int]:
    """Ids of pending pushes whose next attempt is due, the longest waiting first."""
    now = now or timezone.now()
    due = Push.objects.filter(status=Push.Status.PENDING, next_attempt_at__lte=now).order_by("next_attempt_at")
    return list(due.values_list("pk", flat=True)[:limit])


def push_claims_expire(*, now: datetime | None = None) -> int:
    """Give up on claims whose worker stopped mid-delivery: FAILED, not retried (see the module doc)."""
    now = now or timezone.now()
    expired = Push.objects.filter(status=Push.Status.SENDING, next_attempt_at__lt=now).update(
        status=Push.Status.FAILED, next_attempt_at=None,
        last_error="outcome unknown: the worker stopped during delivery; not sent again automatically",
    )
    metrics.push_finished(status=Push.Status.FAILED, count=expired)
    return expired


def push_deliver(*, push_id: int) -> Push | None:
    """Deliver one pending push on the member's best channel. Safe to run twice, and
    from any number of workers at once: only the one that claims it sends it."""
    push = _claim(push_id)
    if push is not None:
        try:
            _deliver_claimed(push)
        except Exception:
            # Not a platform's answer: a bug, or a failure after a call went out.
            # Whether a message left is unknown, so it is not tried again.
            logger.exception("push %s: delivery failed unexpectedly", push_id)
            _finish(push, status=Push.Status.FAILED, error="outcome unknown: unexpected error during delivery")
    return Push.objects.filter(pk=push_id).first()


def _claim(push_id: int) -> Push | None:
    """PENDING → SENDING for this worker, or None if the push is not ours to send now."""
    now = timezone.now()
    with transaction.atomic():
        push = Push.objects.select_for_update(of=("self",)).select_related("member").filter(pk=push_id).first()
        if push is None or push.status != Push.Status.PENDING:
            return None
        if push.attempts and push.next_attempt_at and push.next_attempt_at > now:
            return None  # backing off after a failure
        # One claim per member at a time, so that the daily cap counts exactly. No key
        # lock: rows that merely refer to the member (new pushes, visits) are not held up.
        list(Member.objects.select_for_update(no_key=True).filter(pk=push.member_id).values_list("pk", flat=True))
        push.attempts += 1
        if _daily_cap_reached(push.member_id, now):
            push.status, push.channel, push.next_attempt_at = Push.Status.SKIPPED, Push.Channel.INBOX, None
            push.last_error = f"daily cap of {push_daily_cap()} platform messages reached"
            push.save(update_fields=["attempts", "status", "channel", "next_attempt_at", "last_error"])
            metrics.push_finished(status=push.status, channel=push.channel)
            return None
        push.status, push.next_attempt_at = Push.Status.SENDING, now + push_claim_timeout()
        push.save(update_fields=["attempts", "status", "next_attempt_at"])
        return push


def _daily_cap_reached(member_id: int, now: datetime) -> bool:
    day_start = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    delivered = Push.objects.filter(
        Q(status=Push.Status.SENT, sent_at__gte=day_start) | Q(status=Push.Status.SENDING), member_id=member_id
    ).exclude(channel=Push.Channel.INBOX)
    return delivered.count() >= push_daily_cap()


@dataclass(frozen=True)
class _Route:
    channel: str  # Push.Channel
    platform: str  # "wechat", "miniapp" or "alipay": whose credentials it needs
    identity: Identity
    template: PushTemplate | None = None
    subscription_id: int | None = None


def _routes(push: Push, now: datetime) -> list[_Route]:
    """The member's channels for this push, best first (DESIGN.md "Channels")."""
    member = member_active(push.member)
    identities: dict[str, Identity] = {}
    wanted = [
        Identity.Channel.WECHAT_OPENID, Identity.Channel.MINIAPP_OPENID, Identity.Channel.ALIPAY_USER_ID,
        Identity.Channel.ALIPAY_OPEN_ID,
    ]
    # The most recently heard-from identity of each channel, should a member have two.
    for identity in Identity.objects.filter(member=member, channel__in=wanted).order_by(
        F("last_inbound_at").desc(nulls_last=True), "-pk"
    ):
        identities.setdefault(identity.channel, identity)
    templates = {t.channel: t for t in PushTemplate.objects.filter(event=push.event, is_active=True)}
    routes = []
    follower = identities.get(Identity.Channel.WECHAT_OPENID)
    if follower is not None and follower.is_following:
        template = templates.get(PushTemplate.Channel.WECHAT_TEMPLATE)
        if template is not None:
            routes.append(_Route(Push.Channel.WECHAT_TEMPLATE, "wechat", follower, template))
        if follower.last_inbound_at is not None and now - follower.last_inbound_at < CUSTOMER_SERVICE_WINDOW:
            routes.append(_Route(Push.Channel.WECHAT_CUSTOMER_SERVICE, "wechat", follower))
    miniapp_user = identities.get(Identity.Channel.MINIAPP_OPENID)
    template = templates.get(PushTemplate.Channel.MINIAPP_SUBSCRIBE)
    if miniapp_user is not None and template is not None:
        subscription_id = (
            MiniappSubscription.objects.filter(member=member, template_id=template.template_id, remaining__gt=0)
            .values_list("pk", flat=True)
            .first()
        )
        if subscription_id is not None:
            routes.append(_Route(Push.Channel.MINIAPP_SUBSCRIBE, "miniapp", miniapp_user, template, subscription_id))
    # An Alipay app gives a user_id, or (apps created since 2023) an open_id.
    alipay_follower = identities.get(Identity.Channel.ALIPAY_USER_ID) or identities.get(Identity.Channel.ALIPAY_OPEN_ID)
    if alipay_follower is not None and alipay_follower.is_following:
        routes.append(_Route(Push.Channel.ALIPAY, "alipay", alipay_follower))
    return routes


def _platform_configured(platform: str) -> bool:
    return {
        "wechat": platforms.wechat_configured,
        "miniapp": platforms.miniapp_configured,
        "alipay": platforms.alipay_configured,
    }[platform]()


def _deliver_claimed(push: Push) -> None:
    refusals: list[str] = []
    refused_identities: set[int] = set()
    for route in _routes(push, timezone.now()):
        if route.identity.pk in refused_identities:
            continue
        message = _message(route, push)
        recipient = f"{route.identity.channel}:{route.identity.external_id}"
        if not _platform_configured(route.platform):
            if settings.O2O_SANDBOX:
                _finish_sent(push, route, channel=Push.Channel.SANDBOX, recipient=f"{route.channel} → {recipient}",
                             payload=message, refusals=refusals)
                return
            continue
        try:
            _call(route, message)
        except PlatformRejected as exc:
            reason = _refusal(exc)
            if reason is None:
                _finish_failed_attempt(push, [*refusals, f"{route.channel}: {exc.message}"])
                return
            refusals.append(f"{route.channel}: {reason} ({exc.platform_code})")
            _refusal_learned(route, exc.platform_code, refused_identities)
            continue
        except (PlatformError, ImproperlyConfigured) as exc:
            _finish_failed_attempt(push, [*refusals, f"{route.channel}: {exc}"])
            return
        _finish_sent(push, route, channel=route.channel, recipient=recipient, payload=message, refusals=refusals)
        return
    if settings.O2O_SANDBOX and not any(_platform_configured(p) for p in ("wechat", "miniapp", "alipay")):
        # No credentials at all: the sandbox stands in for every channel, so the demo
        # shows every push in the outbox, even a member's who has no channel yet.
        _finish(push, status=Push.Status.SENT, channel=Push.Channel.SANDBOX, payload={"text": _text(push)})
        return
    _finish(push, status=Push.Status.SKIPPED, channel=Push.Channel.INBOX, error="; ".join(refusals))


def _refusal(exc: PlatformRejected) -> str | None:
    """Why the platform refused this person for good on this channel, or None if
    retrying later may help."""
    if exc.platform == "wechat":
        return WECHAT_REFUSALS.get(exc.platform_code)
    if exc.platform == "alipay":
        # isp.* are Alipay's own failures (busy, unknown error); anything else is a
        # refusal of this request (isv.*: not following, bad parameters …).
        return None if exc.platform_code.startswith("isp.") or exc.platform_code == "unknown" else "refused by Alipay"
    return None


def _refusal_learned(route: _Route, platform_code: str, refused_identities: set[int]) -> None:
    """What a refusal tells us, recorded so that the next push does not ask again."""
    if route.platform == "wechat" and platform_code in (WECHAT_UNFOLLOWED, "40003"):
        Identity.objects.filter(pk=route.identity.pk).update(is_following=False)
        refused_identities.add(route.identity.pk)
    elif route.channel == Push.Channel.MINIAPP_SUBSCRIBE and platform_code == WECHAT_NO_SUBSCRIPTION:
        MiniappSubscription.objects.filter(pk=route.subscription_id).update(remaining=0)


def _finish_sent(push: Push, route: _Route, *, channel: str, recipient: str, payload: dict, refusals: list[str]) -> None:
    with transaction.atomic():
        recorded = _finish(
            push, status=Push.Status.SENT, channel=channel, recipient=recipient, payload=payload, error="; ".join(refusals)
        )
        if recorded and route.subscription_id is not None:
            MiniappSubscription.objects.filter(pk=route.subscription_id, remaining__gt=0).update(
                remaining=F("remaining") - 1
            )


def _finish_failed_attempt(push: Push, errors: list[str]) -> None:
    error = "; ".join(errors)
    if push.attempts >= push_max_attempts():
        _finish(push, status=Push.Status.FAILED, error=f"gave up after {push.attempts} attempts: {error}")
    else:
        retry_at = timezone.now() + push_retry_delay(attempt=push.attempts)
        _finish(push, status=Push.Status.PENDING, error=error, next_attempt_at=retry_at)


def _finish(
    push: Push, *, status: str, channel: str = "", recipient: str = "", payload: dict | None = None, error: str = "",
    next_attempt_at: datetime | None = None,
) -> bool:
    """Record the outcome of this worker's claim; False if the claim is no longer its own."""
    fields = {"status": status, "last_error": error[:2000], "next_attempt_at": next_attempt_at}
    claimed = [Push.Status.SENDING]
    if status == Push.Status.SENT:
        fields |= {"channel": channel, "recipient": recipient[:160], "payload": payload or {}, "sent_at": timezone.now()}
        # The truth wins over a claim given up for lost meanwhile: this one was sent.
        claimed.append(Push.Status.FAILED)
    elif status == Push.Status.SKIPPED:
        fields |= {"channel": channel}
    recorded = Push.objects.filter(pk=push.pk, attempts=push.attempts, status__in=claimed).update(**fields)
    if recorded:
        metrics.push_finished(status=status, channel=fields.get("channel", push.channel))
    else:
        logger.warning("push %s: attempt %s finished as %s after its claim was taken away", push.pk, push.attempts, status)
    return bool(recorded)


# --- what is sent ---------------------------------------------------------------------


def _context(push: Push) -> dict[str, str]:
    """What a template's placeholders may name: the push, and everything in its data."""
    context = {
        "title": push.title,
        "body": push.body,
        "link": push.link,
        "event": push.event,
        "member_no": push.member.member_no,
        "time": timezone.localtime(push.created_at).strftime("%Y-%m-%d %H:%M"),
    }
    context.update({str(key): "" if value is None else str(value) for key, value in (push.data or {}).items()})
    return context


def _render(text: str, context: dict[str, str]) -> str:
    # Only {name}: str.format would let staff text reach attributes ({title.__class__}).
    return PLACEHOLDER.sub(lambda match: context.get(match.group(1), ""), text)


def _template_data(template: PushTemplate, push: Push) -> dict:
    context = _context(push)
    data = {}
    for key, spec in template.fields.items():
        if isinstance(spec, dict):
            data[key] = {**spec, "value": _render(spec.get("value", ""), context)}
        else:
            data[key] = {"value": _render(str(spec), context)}
    return data


def _text(push: Push) -> str:
    text = "\n".join(part for part in (push.title, push.body, push.link) if part)
    return text[:TEXT_MAX_CHARS]


def _is_web_link(link: str) -> bool:
    return link.startswith(("https://", "http://"))


def _message(route: _Route, push: Push) -> dict:
    """What the platform is asked to deliver (also what the sandbox outbox shows)."""
    if route.channel == Push.Channel.WECHAT_TEMPLATE:
        message = {"template_id": route.template.template_id, "data": _template_data(route.template, push)}
        if _is_web_link(push.link):
            message["url"] = push.link
        if route.template.page and settings.WECHAT_MINIAPP_ID:
            message["miniprogram"] = {"appid": settings.WECHAT_MINIAPP_ID, "pagepath": route.template.page}
        return message
    if route.channel == Push.Channel.MINIAPP_SUBSCRIBE:
        message = {"template_id": route.template.template_id, "data": _template_data(route.template, push)}
        page = route.template.page or ("" if _is_web_link(push.link) else push.link)
        if page:
            message["page"] = page
        return message
    return {"text": _text(push)}


def _call(route: _Route, message: dict) -> None:
    openid = route.identity.external_id
    if route.channel == Push.Channel.WECHAT_TEMPLATE:
        platforms.wechat_client().message.send_template(
            openid, message["template_id"], message["data"], url=message.get("url"), mini_program=message.get("miniprogram")
        )
    elif route.channel == Push.Channel.WECHAT_CUSTOMER_SERVICE:
        platforms.wechat_client().message.send_text(openid, message["text"])
    elif route.channel == Push.Channel.MINIAPP_SUBSCRIBE:
        platforms.miniapp_client().wxa.send_subscribe_message(
            openid, message["template_id"], message["data"], page=message.get("page")
        )
    elif route.channel == Push.Channel.ALIPAY:
        # 异步单发消息: chat "0" shows it on the service window's home, not as a chat reply.
        recipient = "open_id" if route.identity.channel == Identity.Channel.ALIPAY_OPEN_ID else "to_user_id"
        platforms.alipay_call(
            "alipay.open.public.message.custom.send",
            {recipient: openid, "msg_type": "text", "text": {"content": message["text"]}, "chat": "0"},
        )
    else:  # pragma: no cover - _routes makes only the channels above
        raise ValueError(route.channel)


# --- the member's side ------------------------------------------------------------------


def miniapp_subscription_grant(*, member: Member, template_id: str, count: int = 1) -> MiniappSubscription:
    """The member accepted ``template_id`` in the mini-program's wx.requestSubscribeMessage
    (``count`` times): that many more subscribe messages with it may be sent."""
    template_id = (template_id or "").strip() if isinstance(template_id, str) else ""
    if not template_id or len(template_id) > 128 or isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 100:
        raise SubscriptionInvalid()
    with transaction.atomic():
        subscription, _created = MiniappSubscription.objects.get_or_create(member=member, template_id=template_id)
        MiniappSubscription.objects.filter(pk=subscription.pk).update(remaining=F("remaining") + count)
    subscription.refresh_from_db()
    return subscription


def miniapp_subscribe_templates() -> dict[str, str]:
    """The active mini-program templates by event: the tmplIds for the mini-program's
    wx.requestSubscribeMessage, whose accepted ones it reports to ``miniapp_subscription_grant``."""
    active = PushTemplate.objects.filter(channel=PushTemplate.Channel.MINIAPP_SUBSCRIBE, is_active=True)
    return dict(active.order_by("event").values_list("event", "template_id"))


def inbox_mark_read(*, member: Member, message_ids: list[int] | None = None) -> int:
    """Mark some (or all) of the member's unread messages read; returns how many."""
    unread = InboxMessage.objects.filter(member=member, read_at__isnull=True)
    if message_ids is not None:
        unread = unread.filter(pk__in=message_ids)
    return unread.update(read_at=timezone.now())


# --- triggers ---------------------------------------------------------------------------
# Each is called inside the transaction that made the event, with a key derived from
# what it made, so a replayed request or a retried task never pushes twice. Texts are
# in the mall's language (LANGUAGE_CODE), not the language of the request that caused
# them (a POS may well speak English to the API).


def push_points_earned(*, member: Member, store: Store, earn: PointsTransaction, amount_fen: int) -> Push | None:
    if earn.points <= 0:
        return None
    balance = ledger.member_points_balance(member=member)
    pending = earn.lots.exclude(status=Lot.Status.AVAILABLE).aggregate(s=Sum("amount"))["s"] or 0
    values = {
        "points": earn.points, "balance": balance, "store": store.name, "amount": fen_to_yuan(amount_fen),
        "pending": pending, "days": settings.MALL_POINTS_HOLD_DAYS,
    }
    with override(settings.LANGUAGE_CODE):
        title = _("你获得了 %(points)s 积分") % values
        body = _("在%(store)s消费 ¥%(amount)s，获得 %(points)s 积分，当前积分 %(balance)s。") % values
        if pending:
            body += _("其中 %(pending)s 积分为商场奖励，%(days)s 天后可用。") % values
    return push_send(
        member=member, event=EVENT_POINTS_EARNED, event_key=f"{EVENT_POINTS_EARNED}:{earn.pk}", title=title, body=body,
        data={**values, "amount_fen": amount_fen, "plaza": store.plaza.name},
    )


def push_points_redeemed(*, member: Member, store: Store, redeem: PointsTransaction) -> Push:
    points = -redeem.points
    balance = ledger.member_points_balance(member=member)
    values = {
        "points": points, "balance": balance, "store": store.name,
        "amount": fen_to_yuan(points * settings.POINT_VALUE_FEN),
    }
    with override(settings.LANGUAGE_CODE):
        title = _("你使用了 %(points)s 积分") % values
        body = _("在%(store)s使用 %(points)s 积分，抵扣 ¥%(amount)s，当前积分 %(balance)s。") % values
    return push_send(
        member=member, event=EVENT_POINTS_REDEEMED, event_key=f"{EVENT_POINTS_REDEEMED}:{redeem.pk}", title=title,
        body=body, data={**values, "plaza": store.plaza.name},
    )


def push_checkin(*, member: Member, plaza: Plaza, checkin: Checkin) -> Push | None:
    points = checkin.points + checkin.bonus_points
    if points <= 0:
        return None
    balance = ledger.member_points_balance(member=member)
    values = {"points": points, "bonus": checkin.bonus_points, "streak": checkin.streak, "balance": balance, "plaza": plaza.name}
    with override(settings.LANGUAGE_CODE):
        title = _("签到成功，获得 %(points)s 积分") % values
        if checkin.bonus_points:
            body = _("%(plaza)s签到成功：获得 %(points)s 积分（含连续签到 %(streak)s 天奖励 %(bonus)s 积分），当前积分 %(balance)s。") % values
        else:
            body = _("%(plaza)s签到成功：获得 %(points)s 积分，已连续签到 %(streak)s 天，当前积分 %(balance)s。") % values
    return push_send(
        member=member, event=EVENT_CHECKIN, event_key=f"{EVENT_CHECKIN}:{member.pk}:{plaza.code}:{checkin.day.isoformat()}",
        title=title, body=body, data=values,
    )
