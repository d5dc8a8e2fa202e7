"""What both channel endpoints share: a capped body, charsets that are text, XML parsed
safely, and each delivered message answered once (the conversations log is the dedup
table).
"""

import codecs
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as defused_fromstring
from django.db import IntegrityError, transaction

from bots.models import InboundMessage
from members.models import Member

# Either platform's messages are a few hundred bytes; a body past this is not one.
MAX_BODY_BYTES = 64 * 1024
# What the log keeps of a message's text (WeChat allows 2048 bytes of text).
MAX_CONTENT_CHARS = 2000
# The member card page (members' H5 pages); the member-code command links to it.
MEMBER_CARD_PATH = "/m/"


# The charsets a message may be written in, as ``codecs.lookup`` names them: UTF-8,
# ASCII and the Chinese national charsets (Alipay offers GBK), each of which writes
# ASCII as ASCII. Being known to ``codecs.lookup`` is not enough: Python's registry
# also holds rot13, base64, hex and zlib, which turn bytes into bytes and raise on
# decoding, and UTF-16 and UTF-32, which break every ASCII delimiter.
TEXT_CHARSETS = frozenset({"utf-8", "ascii", "gb2312", "gbk", "gb18030"})
# The encoding an XML declaration names: in the first bytes, in ASCII in each of the
# charsets above (a UTF-8 byte order mark may come first).
_XML_ENCODING = re.compile(rb"""\A(?:\xef\xbb\xbf)?\s*<\?xml\s[^>]*?\bencoding\s*=\s*(["'])(.*?)\1""", re.S)


class BadInbound(Exception):
    """Not a message we accept: malformed, with a DTD, or missing what it must carry (400)."""


class BodyTooLarge(Exception):
    """The body is over MAX_BODY_BYTES (413)."""


def body_read(request, *, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request body, refused unread when it says it is larger than ``limit`` and
    cut off at ``limit + 1`` bytes when it lies."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise BadInbound("Content-Length is not a number") from None
    if declared > limit:
        raise BodyTooLarge()
    body = request.read(limit + 1)
    if len(body) > limit:
        raise BodyTooLarge()
    return body


def text_charset(name: str) -> str:
    """The codec ``name`` names, when it is one of TEXT_CHARSETS; anything else is BadInbound."""
    try:
        codec = codecs.lookup(name).name
    except (LookupError, ValueError, TypeError):  # ValueError: a NUL in the name
        codec = ""
    if codec not in TEXT_CHARSETS:
        raise BadInbound(f"charset {name[:40]!r} is not a text charset we read")
    return codec


def request_charset(request) -> str | None:
    """The Content-Type's charset as a codec name (None when it names none).

    Call it before ``request.GET`` or ``request.POST``: Django decodes them in the
    Content-Type's charset when ``codecs.lookup`` knows it (UTF-16 included). A byte
    transform there (rot13, base64) never gets this far: Django decodes the query
    string in it while building the request, and raises before any view runs.
    """
    name = request.content_params.get("charset")
    return None if name is None else text_charset(name)


def xml_root(text: bytes | str, *, charset: str | None = None) -> Element:
    """The root of a document without DTD, entities or external references.

    defusedxml refuses a DOCTYPE as soon as the parser meets it, so billion laughs
    and external entities cost microseconds, and wechatpy's own parser (xmltodict,
    which accepts DTDs) only ever sees documents that passed here.

    Bytes are decoded here, in ``charset`` (the transport's, which wins) or else the
    one the XML declaration names, else UTF-8; a declared encoding must be a text
    charset either way. Expat is handed text, on which it ignores the declaration:
    handed bytes, it would look the declared name up itself and raise LookupError on
    rot13, ValueError on GBK (expat reads no multi-byte charset but its own).
    """
    head = text[:200] if isinstance(text, bytes) else text[:200].encode("utf-8", "replace")
    match = _XML_ENCODING.match(head)
    declared = text_charset(match.group(2).decode("ascii", "replace")) if match else None
    if isinstance(text, bytes):
        codec = charset or declared or "utf-8"
        try:
            text = text.decode(codec)
        except UnicodeDecodeError:
            raise BadInbound(f"not {codec} text") from None
    try:
        return defused_fromstring(text, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except (DefusedXmlException, ParseError):
        raise BadInbound("not plain XML") from None


def xml_fields(root: Element) -> dict[str, str]:
    """The root's children as ``{tag: text}``; a repeated tag is refused."""
    fields = {child.tag: child.text or "" for child in root}
    if len(fields) != len(root):
        raise BadInbound("a field appears twice")
    return fields


def dedup_key(raw: str) -> str:
    """``raw`` when it fits the column, else its digest (the same message, the same key)."""
    return raw if len(raw) <= 200 else "sha256:" + hashlib.sha256(raw.encode()).hexdigest()


@dataclass(frozen=True)
class Inbound:
    """A delivered message or event, as the log records it."""

    channel: str
    dedup_key: str
    from_user: str
    msg_type: str
    event: str = ""
    content: str = ""


@dataclass(frozen=True)
class Answer:
    reply: str
    member: Member | None
    created: bool = False  # the member was created by this message


def _logged(lookup: dict) -> InboundMessage | None:
    return next(iter(InboundMessage.objects.filter(**lookup)[:1]), None)


def inbound_answer(
    inbound: Inbound, respond: Callable[[], Answer], *, quick: Callable[[], Answer | None] | None = None
) -> tuple[InboundMessage, bool]:
    """The logged message and whether it is a replay.

    The first delivery runs ``respond()`` (the effects: a member, a check-in …) and
    logs the message with its reply in one transaction; every later delivery of the
    same message finds it and gets the stored reply, with no effect. Two deliveries
    at once both run ``respond()`` but only one commits: the other's insert hits the
    unique key, its effects roll back, and it answers what the first stored.

    ``quick()``, when given, is tried first, outside any transaction: it answers a
    message that changes nothing (a command from a known follower) or returns None.
    Its answer is logged by an insert alone, which matters on SQLite, where a
    transaction holds the one write lock from its first statement; a retry of such a
    message reads again, finds the unique key taken and answers the stored reply.
    """
    lookup = {"channel": inbound.channel, "dedup_key": inbound.dedup_key}
    answer = quick() if quick is not None else None
    if answer is None:
        existing = _logged(lookup)
        if existing is not None:
            return existing, True
    try:
        with transaction.atomic():
            if answer is None:
                answer = respond()
            message = InboundMessage.objects.create(
                **lookup,
                from_user=inbound.from_user,
                member=answer.member,
                msg_type=inbound.msg_type[:32],
                event=inbound.event[:64],
                content=inbound.content[:MAX_CONTENT_CHARS],
                reply=answer.reply,
            )
    except IntegrityError:
        existing = _logged(lookup)
        if existing is None:
            raise
        return existing, True
    return message, False
