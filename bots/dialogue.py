"""One bot for every channel: what a shopper did, in channel-neutral terms, and the reply.

Each endpoint translates its platform's message into a ``Said`` (a text, a follow with
or without a QR scene, a scan, a menu click …) and calls ``dialogue_answer``, which
finds or creates the member, records the contact and runs the commands, inside the
transaction that logs the message. Most messages are commands that only read, from a
follower who is chatting: ``dialogue_quick_answer`` answers those from plain reads,
so the only write is the log's.
"""

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from django.utils import timezone

from bots import commands
from bots.inbound import MEMBER_CARD_PATH, Answer
from bots.models import InboundMessage
from core.errors import NotFound
from core.links import public_url
from members import checkin
from members.identity import identity_touch, member_active, member_by_identity, member_for_identity
from members.models import Identity, Member, Plaza


class Kind(StrEnum):
    TEXT = "text"  # typed a message
    FOLLOW = "follow"  # followed the account; with a scene when through a parametric QR code
    UNFOLLOW = "unfollow"
    SCAN = "scan"  # scanned a parametric QR code while following (or entered with a scene)
    CLICK = "click"  # pressed a menu button; ``key`` is a command's name
    SILENT = "silent"  # an event to record with no reply: a link opened, a location, entering the chat
    OTHER = "other"  # a message we cannot read: an image, a voice message, a sticker


@dataclass(frozen=True)
class Said:
    kind: Kind
    text: str = ""
    key: str = ""
    scene: str = ""


def scene_checkin(scene: str) -> tuple[bool, checkin.CheckinCode | None]:
    """(whether ``scene`` is a check-in scene, its code or None: a closed or unknown
    plaza, a forged screen token)."""
    try:
        code = checkin.checkin_scene_read(scene)
    except (checkin.CheckinTokenInvalid, NotFound):
        return True, None
    return code is not None, code


def reported_location(*, identity_channel: str, external_id: str) -> checkin.Location | None:
    """Where the official account's LOCATION report put the follower in the last
    CHECKIN_LOCATION_MAX_AGE_SECONDS, or None.

    WeChat sends the report as a follower enters the chat, when the account asks for
    locations and the follower agreed; the log of messages keeps it (``lat,lng``, as
    WeChat sent it: WGS-84). A location *message* (one the shopper picks on a map) is
    no proof of anything and is not read. The phone says where it is: a weaker proof
    than the screen's code.
    """
    if identity_channel != Identity.Channel.WECHAT_OPENID:
        return None
    content = (
        InboundMessage.objects.filter(
            channel=InboundMessage.Channel.WECHAT, from_user=external_id, msg_type__iexact="event",
            event__iexact="location", created_at__gte=timezone.now() - checkin.location_max_age(),
        )
        .order_by("-created_at")
        .values_list("content", flat=True)
        .first()
    )
    if not content:
        return None
    latitude, _, longitude = content.partition(",")
    return checkin.checkin_location(latitude=latitude, longitude=longitude, datum="wgs84")


# A follower who wrote this recently is not written to again on a message that
# changes nothing: "following" and the 48-hour window are as true as a minute ago.
TOUCH_INTERVAL = timedelta(minutes=1)


def dialogue_quick_answer(
    *, request, channel: str, identity_channel: str, external_id: str, said: Said
) -> Answer | None:
    """The answer to a message that changes nothing, or None.

    A command that only reads, a link opened, a sticker, from a follower who wrote
    within TOUCH_INTERVAL: answered from a plain read, no transaction, no write but
    the log's. Anything else (a new shopper, a follow, a scan, a writing command) is
    None, for ``dialogue_answer`` to run in the log's transaction.
    """
    match said.kind:
        case Kind.TEXT:
            command = commands.command_for_text(said.text)
        case Kind.CLICK:
            command = commands.command_for_key(said.key)
        case Kind.SILENT | Kind.OTHER:
            command = None
        case _:
            return None
    if command is not None and command.writes:
        return None
    identity = next(iter(
        Identity.objects.select_related("member__tier").filter(channel=identity_channel, external_id=external_id)[:1]
    ), None)
    if identity is None or not identity.is_following or identity.last_inbound_at is None:
        return None
    if identity.last_inbound_at < timezone.now() - TOUCH_INTERVAL:
        return None
    member = member_active(identity.member)
    ctx = _context(request, channel, member, said, plaza=None, is_new=False)
    return Answer(_guarded(ctx, _reply(ctx, said, is_checkin=False)), member)


def dialogue_answer(*, request, channel: str, identity_channel: str, external_id: str, said: Said) -> Answer:
    """The reply to ``said`` from the shopper known to ``identity_channel`` as ``external_id``.

    Any contact but an unfollow makes the shopper a member (no form to fill) and marks
    them following with the 48-hour customer-service window open from now.
    """
    if said.kind == Kind.UNFOLLOW:
        identity_touch(channel=identity_channel, external_id=external_id, following=False)
        return Answer("", member_by_identity(channel=identity_channel, external_id=external_id))

    is_checkin, code = scene_checkin(said.scene)
    plaza = code.plaza if code is not None else None
    found = member_for_identity(
        channel=identity_channel, external_id=external_id, join_channel=_JOIN_CHANNEL[identity_channel],
        plaza=plaza, refuse_banned=False,
    )
    identity_touch(channel=identity_channel, external_id=external_id, following=True)
    location = None
    if code is not None and code.proof not in checkin.plaza_proofs_accepted(plaza=plaza):
        # The code alone does not prove presence here: the last location report may.
        location = reported_location(identity_channel=identity_channel, external_id=external_id)
    ctx = _context(
        request, channel, found.member, said, plaza=plaza, is_new=found.created, checkin_code=code, location=location
    )
    return Answer(_guarded(ctx, _reply(ctx, said, is_checkin)), found.member, created=found.created)


def _context(
    request, channel: str, member: Member, said: Said, *, plaza: Plaza | None, is_new: bool,
    checkin_code: checkin.CheckinCode | None = None, location: checkin.Location | None = None,
) -> commands.Context:
    return commands.Context(
        member=member, channel=channel, lang=commands.lang_of(said.text) if said.kind == Kind.TEXT else "zh",
        plaza=plaza, is_new=is_new, member_card_url=public_url(request, MEMBER_CARD_PATH),
        checkin_code=checkin_code, location=location,
    )


def _guarded(ctx: commands.Context, reply: str) -> str:
    """A banned member is told so instead of any reply (and a check-in refused them)."""
    if reply and ctx.member.status != Member.Status.ACTIVE:
        return commands.member_not_active(ctx)
    return reply


_JOIN_CHANNEL = {
    Identity.Channel.WECHAT_OPENID: Member.Channel.WECHAT,
    Identity.Channel.MINIAPP_OPENID: Member.Channel.MINIAPP,
    Identity.Channel.ALIPAY_USER_ID: Member.Channel.ALIPAY,
    Identity.Channel.ALIPAY_OPEN_ID: Member.Channel.ALIPAY,
}


def _reply(ctx: commands.Context, said: Said, is_checkin: bool) -> str:
    match said.kind:
        case Kind.TEXT:
            return commands.reply_to_text(ctx, said.text)
        case Kind.FOLLOW:
            welcome = commands.welcome(ctx)
            return commands.checkin_scan(ctx) + "\n\n" + welcome if is_checkin else welcome
        case Kind.SCAN:
            return commands.checkin_scan(ctx) if is_checkin else ""
        case Kind.CLICK:
            return commands.reply_to_key(ctx, said.key)
        case Kind.OTHER:
            return commands.not_understood(ctx)
    return ""
