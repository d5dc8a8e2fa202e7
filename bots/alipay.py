"""The Alipay service window's gateway, ``/alipay/gateway/``: Alipay's own protocol.

Alipay POSTs a form (``service``, ``biz_content``, ``charset``, ``sign_type``, ``sign``)
signed with RSA2 over every parameter but ``sign`` and ``sign_type``, sorted and joined
as ``k=v&…``; it is verified with ALIPAY_PUBLIC_KEY before anything else, and a bad
signature is refused (403) with nothing changed. ``biz_content`` is XML:

- ``alipay.service.check`` (EventType ``verifygw``): the gateway check when the
  service window is set up; answered with ``<success>true</success>`` and our app's
  public key in ``<biz_content>``;
- ``alipay.mobile.public.message.notify``: ``follow`` / ``unfollow`` / ``enter`` /
  ``click`` events and ``text`` messages from ``FromAlipayUserId``: the sender's
  user_id, or, from apps on Alipay's open_id standard (every app created since 2023),
  their open_id, filed under its own identity channel (``alipay_channel_of``: a user_id
  is digits, an open_id is not). FromAlipayUserId is the field Alipay documents for the
  sender; no other field is read for it.

Every answer is ``<alipay><response>…</response><sign>…</sign><sign_type>RSA2</sign_type>
</alipay>``, the signature (app private key) covering the text inside ``<response>``.
A notification is answered with an acknowledgement only: Alipay takes no reply in
the answer, so the reply text goes out after commit through the open API
(``bots.tasks.alipay_reply_send``, a customer-service message). Alipay retries a
notification it got no acknowledgement for: each has one effect and one reply.

A follow or an enter through a parametric QR code whose scene is ``checkin:<plaza>``
checks the shopper in, as a WeChat scan does.

The form is decoded in the charset the Content-Type names, else its ``charset``
parameter, else UTF-8; either must be a text charset (UTF-8, GBK and its kin: see
``bots.inbound.TEXT_CHARSETS``), else the request is refused (400) before anything
reads it, as ``rot13`` or ``base64`` would fail to decode it. Signatures are checked
over the parameters as UTF-8 (python-alipay-sdk's way): the service window must be
set to UTF-8 in Alipay's console. Without ALIPAY_APP_ID,
ALIPAY_APP_PRIVATE_KEY and ALIPAY_PUBLIC_KEY the gateway does not exist (404): there
is nothing to verify a request with.
"""

import base64
import json
import re
import time
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from django.conf import settings
from django.db import transaction
from django.http import Http404, HttpResponse, HttpResponseNotAllowed, QueryDict
from django.views.decorators.csrf import csrf_exempt
from django_q.tasks import async_task

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
    text_charset,
    xml_root,
)
from bots.models import InboundMessage
from core.platforms import AliPayClient, alipay_client, alipay_configured
from members.identity import alipay_channel_of

SERVICE_CHECK = "alipay.service.check"
SERVICE_NOTIFY = "alipay.mobile.public.message.notify"
_USER_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_CHARSET_PARAM = re.compile(rb"(?:^|&)charset=([^&]*)")


@dataclass(frozen=True)
class AlipayMessage:
    user_id: str  # FromAlipayUserId: a user_id, or an open_id
    msg_type: str  # text, event, image …
    event: str  # follow, unfollow, enter, click, verifygw (lower case)
    action_param: str
    text: str
    create_time: str
    msg_id: str
    identity_channel: str = ""  # Identity.Channel.ALIPAY_USER_ID or ALIPAY_OPEN_ID


@csrf_exempt
def alipay_gateway(request):
    if not alipay_configured():
        raise Http404("The Alipay service window is not configured")
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    client = alipay_client()
    try:
        params = _form(request, body_read(request))
    except BodyTooLarge:
        return HttpResponse("body too large", status=413, content_type="text/plain")
    except BadInbound as exc:
        return HttpResponse(f"bad request: {exc}", status=400, content_type="text/plain")
    sign = params.pop("sign", "")
    if not sign or not client.verify(params, sign):
        return _signed(client, "<success>false</success><error_code>VERIFY_FAILED</error_code>", status=403)
    service = params.get("service", "")
    try:
        message = _message(params.get("biz_content", ""))
    except BadInbound as exc:
        return HttpResponse(f"bad request: {exc}", status=400, content_type="text/plain")

    if service == SERVICE_CHECK:
        return _signed(client, f"<success>true</success><biz_content>{_app_public_key(client)}</biz_content>")
    if service != SERVICE_NOTIFY or not message.user_id:
        return HttpResponse("bad request: not a service-window notification", status=400, content_type="text/plain")

    said = _said(message)
    logged, replayed = inbound_answer(
        _inbound(message), lambda: _respond(request, message, said), quick=lambda: _quick(request, message, said)
    )
    if logged.reply and not replayed:
        transaction.on_commit(lambda: async_task("bots.tasks.alipay_reply_send", logged.pk))
    return _signed(client, _ack(message))


def _form(request, body: bytes) -> dict[str, str]:
    """The form in the charset it names (the Content-Type's, else its ``charset``
    parameter, else UTF-8); a parameter given twice, or a charset that is not text,
    is refused."""
    transport = request_charset(request)
    match = _CHARSET_PARAM.search(body)
    # Every text charset writes the form's delimiters in ASCII: the parameter can be
    # read before the form is decoded.
    named = text_charset(unquote_to_bytes(match.group(1).replace(b"+", b" ")).decode("latin-1")) if match else None
    form = QueryDict(body, encoding=transport or named or "utf-8")
    if any(len(values) > 1 for _, values in form.lists()):
        raise BadInbound("a parameter appears twice")
    return {name: value for name, value in form.items()}


def _message(biz_content: str) -> AlipayMessage:
    root = xml_root(biz_content)
    fields = {child.tag: (child.text or "").strip() for child in root}
    if len(fields) != len(root):
        raise BadInbound("a field appears twice")
    app_id = fields.get("AppId")
    if app_id and app_id != settings.ALIPAY_APP_ID:
        raise BadInbound("the message is for another app")
    event = fields.get("EventType", "").lower()
    if event == "verifygw":
        return AlipayMessage("", "event", event, "", "", "", "")
    user_id = fields.get("FromAlipayUserId", "")
    if not _USER_ID.match(user_id):
        raise BadInbound("FromAlipayUserId is missing or malformed")
    msg_type = fields.get("MsgType", "").lower()
    if not msg_type or (msg_type == "event" and not event):
        raise BadInbound("MsgType or EventType is missing")
    return AlipayMessage(
        user_id=user_id, msg_type=msg_type, event=event, action_param=fields.get("ActionParam", ""),
        text=root.findtext("Text/Content") or "", create_time=fields.get("CreateTime", ""),
        msg_id=fields.get("MsgId", ""), identity_channel=alipay_channel_of(user_id),
    )


def _inbound(message: AlipayMessage) -> Inbound:
    if message.msg_id:
        key = f"msg:{message.msg_id}"
    else:
        key = f"event:{message.user_id}:{message.create_time}:{message.event or message.msg_type}"
    return Inbound(
        channel=InboundMessage.Channel.ALIPAY, dedup_key=dedup_key(key), from_user=message.user_id,
        msg_type=message.msg_type, event=message.event, content=message.text or message.action_param,
    )


def _scene(action_param: str) -> str:
    """The scene of a parametric QR code: ActionParam ``{"scene": {"sceneId": …}}``."""
    try:
        scene = json.loads(action_param).get("scene", {}).get("sceneId", "")
    except (ValueError, AttributeError):
        return ""
    return scene if isinstance(scene, str) else ""


def _said(message: AlipayMessage) -> Said:
    if message.msg_type == "text":
        return Said(Kind.TEXT, text=message.text)
    match message.event:
        case "follow":
            return Said(Kind.FOLLOW, scene=_scene(message.action_param))
        case "unfollow":
            return Said(Kind.UNFOLLOW)
        case "enter":
            scene = _scene(message.action_param)
            return Said(Kind.SCAN, scene=scene) if scene else Said(Kind.SILENT)
        case "click":
            return Said(Kind.CLICK, key=message.action_param)
    return Said(Kind.SILENT) if message.msg_type == "event" else Said(Kind.OTHER)


def _quick(request, message: AlipayMessage, said: Said) -> Answer | None:
    return dialogue_quick_answer(
        request=request, channel="alipay", identity_channel=message.identity_channel,
        external_id=message.user_id, said=said,
    )


def _respond(request, message: AlipayMessage, said: Said) -> Answer:
    return dialogue_answer(
        request=request, channel="alipay", identity_channel=message.identity_channel,
        external_id=message.user_id, said=said,
    )


def _ack(message: AlipayMessage) -> str:
    return (
        f"<XML><ToUserId><![CDATA[{message.user_id}]]></ToUserId>"
        f"<AppId><![CDATA[{settings.ALIPAY_APP_ID}]]></AppId>"
        f"<CreateTime>{int(time.time() * 1000)}</CreateTime><MsgType><![CDATA[ack]]></MsgType></XML>"
    )


def _app_public_key(client: AliPayClient) -> str:
    """Our app's public key as Alipay's console shows it: base64 DER, no PEM armour."""
    return base64.b64encode(client.app_private_key.publickey().export_key(format="DER")).decode()


def _signed(client: AliPayClient, response: str, *, status: int = 200) -> HttpResponse:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f"<alipay><response>{response}</response><sign>{client.sign_content(response)}</sign>"
        "<sign_type>RSA2</sign_type></alipay>"
    )
    return HttpResponse(body, status=status, content_type="text/xml; charset=utf-8")
