"""The official account's endpoint, ``/wechat/``: WeChat's own protocol.

- GET is URL verification: ``signature`` = SHA-1 of the sorted token, timestamp and
  nonce; a good one is answered with ``echostr``.
- POST is a message or an event. With no WECHAT_ENCODING_AES_KEY it comes in
  plaintext. With one, only safe-mode messages are accepted: the XML carries
  ``Encrypt``, signed by ``msg_signature``, AES-encrypted under the key (WeChat's
  compatible mode sends the same, with plaintext fields beside it: only the
  decrypted message is read), and the reply is encrypted. A plaintext body is
  refused (400): its fields are signed by nothing.
- Every request's ``signature`` is checked first, and its ``timestamp`` must be
  within TIMESTAMP_WINDOW_SECONDS of our clock, either way: the signature covers
  the query string, never the body, so one seen anywhere (an access log, a proxy)
  would otherwise authorise any body forever. Within the window a signed query
  string (timestamp and nonce) carries one body: the first to arrive takes it
  (``bots.models.SignedQuery``), WeChat's retries of it pass, any other body is
  refused. Then, in safe mode, ``msg_signature`` over the ``Encrypt`` read from the
  body. A refusal is 403 with nothing changed and a warning in the log. A body over
  64 KiB is 413; anything that is not plain XML (a DTD, entities, garbage, a charset
  that is not text, in the Content-Type or the XML declaration) is 400, in
  microseconds. Messages are parsed once, by defusedxml; wechatpy's parse_message
  (xmltodict, which takes DTDs) is not used. wechatpy does the signatures, the AES
  and the reply XML.
- WeChat retries an unanswered message three times: each is answered once and its
  retries get the stored reply (``bots.inbound.inbound_answer``).
- The answer comes well inside WeChat's 5 seconds: the one call to WeChat on this
  path is a new follower's unionid, asked for after the message commits and given up
  after WECHAT_UNIONID_INLINE_TIMEOUT_SECONDS (1.5), when a task takes it over.

In plaintext mode whoever saw a signed URL can still post a body of their own with
it within the window, if they beat WeChat to it; the access log must not keep query
strings (the Makefile's gunicorn logs the path alone). Production should run in safe
mode.

With no WECHAT_TOKEN the endpoint does not exist (404), except in the sandbox, where
it uses a token derived from SECRET_KEY (``wechat_token()``), so that the chat
simulator can sign real messages: a token as secret as SECRET_KEY (in the DEBUG demo,
not at all; the sandbox is refused outside DEBUG).
"""

import functools
import hashlib
import hmac
import logging
import re
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, transaction
from django.http import Http404, HttpResponse, HttpResponseForbidden, HttpResponseNotAllowed
from django.utils.crypto import salted_hmac
from django.views.decorators.csrf import csrf_exempt
from django_q.tasks import async_task
from wechatpy.crypto import WeChatCrypto
from wechatpy.replies import TextReply
from wechatpy.utils import WeChatSigner

from bots.dialogue import Kind, Said, dialogue_answer, dialogue_quick_answer
from bots.inbound import (
    Answer,
    BadInbound,
    BodyTooLarge,
    Inbound,
    body_read,
    dedup_key,
    inbound_answer,
    request_charset,
    xml_fields,
    xml_root,
)
from bots.models import InboundMessage, SignedQuery
from bots.tasks import wechat_unionid_fetch_now
from core.platforms import wechat_configured
from members.models import Identity

logger = logging.getLogger(__name__)

# The sandbox has no official account: its messages name this app id.
SANDBOX_APP_ID = "wxsandbox00000000"
# openids, unionids and original ids (gh_…) are URL-safe base64-like; nothing else is
# let into a reply's XML.
_USER_NAME = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
# How far a signed query string's timestamp may be from our clock, either way.
TIMESTAMP_WINDOW_SECONDS = 300
# Seconds since the epoch, as WeChat writes them (no sign, no leading zero: one
# instant, one spelling), and nonces as WeChat makes them.
_TIMESTAMP = re.compile(r"^[1-9][0-9]{0,11}$")
_NONCE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# One claim in this many also deletes the signed queries whose timestamps left the window.
SIGNED_QUERY_PURGE_EVERY = 64


# --- configuration ------------------------------------------------------------------


def wechat_token() -> str:
    """WECHAT_TOKEN; in the sandbox without one, a token only this site can know."""
    if settings.WECHAT_TOKEN:
        return settings.WECHAT_TOKEN
    if settings.O2O_SANDBOX:
        return salted_hmac("bots.wechat.sandbox_token", "token").hexdigest()[:32]
    return ""


def wechat_app_id() -> str:
    return settings.WECHAT_APP_ID or (SANDBOX_APP_ID if settings.O2O_SANDBOX else "")


@functools.lru_cache(maxsize=4)
def _crypto(token: str, aes_key: str, app_id: str) -> WeChatCrypto:
    try:
        return WeChatCrypto(token, aes_key, app_id)
    except (AssertionError, ValueError, TypeError):
        raise ImproperlyConfigured(
            "WECHAT_ENCODING_AES_KEY must be the 43-character key from the WeChat console"
        ) from None


def wechat_crypto() -> WeChatCrypto | None:
    """Safe mode's crypto, or None when no WECHAT_ENCODING_AES_KEY is set."""
    if not settings.WECHAT_ENCODING_AES_KEY:
        return None
    return _crypto(wechat_token(), settings.WECHAT_ENCODING_AES_KEY, wechat_app_id())


def signature_of(*parts: str) -> str:
    """WeChat's signature: SHA-1 of the parts sorted and joined."""
    signer = WeChatSigner()
    signer.add_data(*parts)
    return signer.signature


def _signed(signature: str, *parts: str) -> bool:
    return hmac.compare_digest(signature.encode(), signature_of(*parts).encode())


# --- the endpoint -------------------------------------------------------------------


@csrf_exempt
def wechat_endpoint(request):
    token = wechat_token()
    if not token:
        raise Http404("The official account is not configured")
    if request.method not in ("GET", "POST"):
        return HttpResponseNotAllowed(["GET", "POST"])
    try:
        charset = request_charset(request)  # before request.GET, which Django decodes in it
    except BadInbound as exc:
        return _bad_request(exc)
    query = request.GET
    timestamp, nonce = query.get("timestamp", ""), query.get("nonce", "")
    if not (_TIMESTAMP.match(timestamp) and _NONCE.match(nonce)
            and _signed(query.get("signature", ""), token, timestamp, nonce)):
        logger.warning("WeChat: refused a %s with a bad or missing signature", request.method)
        return _forbidden("bad signature")
    skew = int(timestamp) - int(time.time())
    if abs(skew) > TIMESTAMP_WINDOW_SECONDS:
        logger.warning(
            "WeChat: refused a signed %s whose timestamp is %+d s from our clock (the window is %d s)",
            request.method, skew, TIMESTAMP_WINDOW_SECONDS,
        )
        return _forbidden("timestamp outside the window")
    try:
        body = body_read(request) if request.method == "POST" else b""
    except BodyTooLarge:
        return HttpResponse("body too large", status=413, content_type="text/plain")
    except BadInbound as exc:
        return _bad_request(exc)
    if not signed_query_claim(timestamp=int(timestamp), nonce=nonce, method=request.method, body=body):
        logger.warning(
            "WeChat: refused a signed %s: its timestamp and nonce came before with another body", request.method
        )
        return _forbidden("signature already used")
    if request.method == "GET":
        return HttpResponse(query.get("echostr", ""), content_type="text/plain; charset=utf-8")

    crypto = wechat_crypto()
    try:
        fields = xml_fields(xml_root(body, charset=charset))
        if crypto is not None:
            plain = _decrypted(fields, crypto, token, query)
            if plain is None:
                logger.warning("WeChat: refused a message with a bad or missing msg_signature")
                return _forbidden("bad msg_signature")
            fields = xml_fields(xml_root(plain))
        elif query.get("encrypt_type", "raw") == "aes":
            raise BadInbound("safe mode is not configured (WECHAT_ENCODING_AES_KEY)")
        message = _message(fields)
    except BadInbound as exc:
        return _bad_request(exc)

    said = _said(message)
    logged, _replayed = inbound_answer(
        _inbound(message), lambda: _respond(request, message, said), quick=lambda: _quick(request, message, said)
    )
    return _render(logged.reply, message, crypto, nonce)


def _forbidden(reason: str) -> HttpResponse:
    return HttpResponseForbidden(reason, content_type="text/plain")


def _bad_request(exc: BadInbound) -> HttpResponse:
    return HttpResponse(f"bad request: {exc}", status=400, content_type="text/plain")


def signed_query_claim(*, timestamp: int, nonce: str, method: str, body: bytes) -> bool:
    """Whether a signed query string may carry this body: the first body takes it, the
    same again (WeChat's retry) passes, any other is refused.

    The claim is committed at once, outside any transaction of the message's, so that
    a concurrent request sees it; of two at once, the unique constraint lets one in.
    """
    digest = hashlib.sha256(method.encode() + b"\n" + body).hexdigest()
    try:
        with transaction.atomic():
            claim = SignedQuery.objects.create(timestamp=timestamp, nonce=nonce, body_sha256=digest)
    except IntegrityError:
        taken = SignedQuery.objects.filter(timestamp=timestamp, nonce=nonce).values_list("body_sha256", flat=True)
        return digest in taken
    if claim.pk % SIGNED_QUERY_PURGE_EVERY == 0:
        # Past the window a pair is refused before it is looked up: its row is dead weight.
        SignedQuery.objects.filter(timestamp__lt=int(time.time()) - TIMESTAMP_WINDOW_SECONDS).delete()
    return True


def _decrypted(outer: dict[str, str], crypto: WeChatCrypto, token: str, query) -> str | None:
    """The plaintext XML of a safe-mode message; None when msg_signature is wrong.

    Compatible mode's plaintext fields beside ``Encrypt`` are signed by nothing and
    are not read."""
    encrypt = outer.get("Encrypt", "")
    if not encrypt:
        logger.warning("WeChat: refused a message without Encrypt (an EncodingAESKey is configured)")
        raise BadInbound("no Encrypt: with an EncodingAESKey configured, only safe-mode messages are accepted")
    timestamp, nonce, msg_signature = query["timestamp"], query["nonce"], query.get("msg_signature", "")
    if not _signed(msg_signature, token, timestamp, nonce, encrypt):
        return None
    try:
        return crypto.decrypt_message({"Encrypt": encrypt}, msg_signature, timestamp, nonce)
    # Whatever fails to decrypt, unpad or name our app id under our key (bad base64,
    # bad padding, InvalidAppIdException …) was not encrypted by WeChat for us.
    except Exception:  # noqa: BLE001
        raise BadInbound("cannot be decrypted with our key") from None


@dataclass(frozen=True)
class WeChatMessage:
    """A message or event as WeChat sent it; ``event`` lower-cased, and ``scene`` the
    QR scene of a subscribe (``qrscene_`` removed) or SCAN."""

    source: str  # FromUserName: the follower's openid
    target: str  # ToUserName: our account's original id
    msg_type: str
    event: str
    key: str  # EventKey: menu key, scene, URL
    scene: str
    content: str
    fields: dict[str, str]


def _message(fields: dict[str, str]) -> WeChatMessage:
    for name in ("FromUserName", "ToUserName"):
        if not _USER_NAME.match(fields.get(name, "")):
            raise BadInbound(f"{name} is missing or malformed")
    msg_type = fields.get("MsgType", "").lower()
    if not msg_type or not fields.get("CreateTime", "").isdigit():
        raise BadInbound("MsgType or CreateTime is missing or malformed")
    event = fields.get("Event", "").lower()
    if msg_type == "event" and not event:
        raise BadInbound("an event without Event")
    key = fields.get("EventKey", "")
    scene = ""
    if event == "subscribe" and key.startswith("qrscene_"):
        scene = key[len("qrscene_"):]
    elif event == "scan":
        scene = key
    return WeChatMessage(
        source=fields["FromUserName"], target=fields["ToUserName"], msg_type=msg_type, event=event, key=key,
        scene=scene, content=fields.get("Content", ""), fields=fields,
    )


def _inbound(message: WeChatMessage) -> Inbound:
    fields = message.fields
    msg_type, event = fields["MsgType"], fields.get("Event", "")
    if fields.get("MsgId"):
        key = f"msg:{fields['MsgId']}"
    else:
        key = f"event:{message.source}:{fields['CreateTime']}:{event or msg_type}"
    if message.msg_type == "location" or message.event == "location":
        # A LOCATION event reports Latitude/Longitude; a location message, Location_X/_Y.
        lat = fields.get("Latitude") or fields.get("Location_X", "")
        lng = fields.get("Longitude") or fields.get("Location_Y", "")
        content = f"{lat},{lng}"
    else:
        content = next(
            (fields[name] for name in ("Content", "EventKey", "PicUrl", "Recognition") if fields.get(name)), ""
        )
    return Inbound(
        channel=InboundMessage.Channel.WECHAT, dedup_key=dedup_key(key), from_user=message.source,
        msg_type=msg_type, event=event, content=content,
    )


def _render(reply: str, message: WeChatMessage, crypto: WeChatCrypto | None, nonce: str) -> HttpResponse:
    if not reply:
        return HttpResponse("success", content_type="text/plain")
    # CDATA cannot hold "]]>": split it across two sections.
    content = reply.replace("]]>", "]]]]><![CDATA[>")
    xml = TextReply(source=message.target, target=message.source, content=content, time=int(time.time())).render()
    if crypto is not None:
        xml = crypto.encrypt_message(xml, nonce, str(int(time.time())))
    return HttpResponse(xml, content_type="application/xml; charset=utf-8")


# --- what a message does ---------------------------------------------------------------


def _said(message: WeChatMessage) -> Said:
    if message.msg_type == "text":
        return Said(Kind.TEXT, text=message.content)
    match message.event:
        case "subscribe":
            return Said(Kind.FOLLOW, scene=message.scene)
        case "unsubscribe":
            return Said(Kind.UNFOLLOW)
        case "scan":
            return Said(Kind.SCAN, scene=message.scene)
        case "click":
            return Said(Kind.CLICK, key=message.key)
    return Said(Kind.SILENT) if message.msg_type == "event" else Said(Kind.OTHER)


def _quick(request, message: WeChatMessage, said: Said) -> Answer | None:
    return dialogue_quick_answer(
        request=request, channel="wechat", identity_channel=Identity.Channel.WECHAT_OPENID,
        external_id=message.source, said=said,
    )


def _respond(request, message: WeChatMessage, said: Said) -> Answer:
    answer = dialogue_answer(
        request=request, channel="wechat", identity_channel=Identity.Channel.WECHAT_OPENID,
        external_id=message.source, said=said,
    )
    # A new follower's unionid links them to their mini-program self. It is asked for
    # right after this message's transaction commits (an on_commit callback runs then,
    # in this request, before the reply is rendered), briefly, so that the mini-program
    # opened a second later finds this member and its check-in; never inside the
    # transaction, whose write lock (SQLite has one) would wait on WeChat. Slow or silent,
    # it is left to the task. A follow is a good moment to try again, in the task, for
    # one we could not learn before.
    openid = message.source
    if answer.created and wechat_configured():
        transaction.on_commit(lambda: wechat_unionid_fetch_now(openid), robust=True)
    elif said.kind == Kind.FOLLOW and wechat_configured():
        transaction.on_commit(lambda: async_task("bots.tasks.wechat_unionid_fetch", openid))
    return answer
