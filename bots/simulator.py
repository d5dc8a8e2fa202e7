"""The chat simulator: staff play a shopper talking to the official account (sandbox only).

A staff member picks a demo shopper (or a new openid) and sends a text, a follow
with or without a plaza's check-in scene, a scan, a menu click or an unfollow. The
page builds the XML WeChat would send, signs it as WeChat does (with the sandbox
token when there is no WECHAT_TOKEN, see ``bots.wechat.wechat_token``) and hands it
to the real /wechat/ view, every check included, then shows the reply it answered
and the conversation so far. Each delivery is signed afresh, with the current time
(the endpoint refuses a timestamp five minutes off) and a new nonce (a signed query
string carries one body), and encrypted in safe mode when WECHAT_ENCODING_AES_KEY is
set (the endpoint then takes nothing else). "Send again" re-delivers the last
message, its MsgId or CreateTime unchanged, to show that a retry has no second
effect.

Outside the sandbox the page does not exist (404); inside it, staff only.
"""

import secrets
import time
from urllib.parse import urlencode

from django import forms
from django.conf import settings
from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.http import Http404
from django.shortcuts import render

from bots.commands import COMMANDS
from bots.inbound import BadInbound, xml_fields, xml_root
from bots.models import InboundMessage
from bots.wechat import signature_of, wechat_crypto, wechat_endpoint, wechat_token
from members.checkin import SCENE_PREFIX
from members.models import Identity, Plaza

# The official account's original id in simulated messages.
SIMULATED_ACCOUNT = "gh_o2o_simulator"
NEW_SHOPPER = "__new__"
SESSION_LAST = "bots.simulator.last"
DEMO_SHOPPERS = 50


class SimulatorForm(forms.Form):
    ACTIONS = [
        ("text", "Send a text"),
        ("subscribe", "Follow the account (with the scene, if one is chosen)"),
        ("scan", "Scan a plaza's check-in QR code while following"),
        ("click", "Press a menu button"),
        ("unsubscribe", "Unfollow"),
    ]

    openid = forms.ChoiceField(label="Shopper")
    action = forms.ChoiceField(choices=ACTIONS, initial="text")
    text = forms.CharField(max_length=500, required=False, initial="积分")
    plaza = forms.ChoiceField(label="Check-in scene", required=False)
    key = forms.ChoiceField(label="Menu button", choices=[(name, name) for name in COMMANDS], required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        identities = (
            Identity.objects.filter(channel=Identity.Channel.WECHAT_OPENID)
            .select_related("member")
            .order_by("-pk")[:DEMO_SHOPPERS]
        )
        self.fields["openid"].choices = [(NEW_SHOPPER, "— a new shopper (new openid) —")] + [
            (i.external_id, f"{i.external_id} · {i.member.member_no} {i.member.nickname}") for i in identities
        ]
        self.fields["plaza"].choices = [("", "— none —")] + [
            (p.code, f"{SCENE_PREFIX}{p.code} ({p.name})") for p in Plaza.objects.filter(is_active=True)
        ]

    def clean(self):
        data = super().clean()
        if data.get("action") == "text" and not data.get("text"):
            self.add_error("text", "Type what the shopper says.")
        if data.get("action") == "scan" and not data.get("plaza"):
            self.add_error("plaza", "A scan needs a plaza's check-in scene.")
        return data


def simulated_xml(*, openid: str, action: str, text: str = "", plaza: str = "", key: str = "") -> str:
    """The plaintext XML WeChat would POST for ``action`` by ``openid``."""
    now = int(time.time())
    head = (
        f"<ToUserName><![CDATA[{SIMULATED_ACCOUNT}]]></ToUserName>"
        f"<FromUserName><![CDATA[{openid}]]></FromUserName><CreateTime>{now}</CreateTime>"
    )
    cdata = text.replace("]]>", "]]]]><![CDATA[>")
    scene = f"{SCENE_PREFIX}{plaza}" if plaza else ""
    body = {
        "text": f"<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[{cdata}]]></Content>"
        f"<MsgId>{secrets.randbelow(2**63)}</MsgId>",
        "subscribe": "<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe]]></Event>"
        + (f"<EventKey><![CDATA[qrscene_{scene}]]></EventKey><Ticket><![CDATA[simulated]]></Ticket>" if scene else ""),
        "scan": "<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[SCAN]]></Event>"
        f"<EventKey><![CDATA[{scene}]]></EventKey><Ticket><![CDATA[simulated]]></Ticket>",
        "click": "<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[CLICK]]></Event>"
        f"<EventKey><![CDATA[{key}]]></EventKey>",
        "unsubscribe": "<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[unsubscribe]]></Event>",
    }[action]
    return f"<xml>{head}{body}</xml>"


def deliver(request, xml: str, *, openid: str) -> dict:
    """POST ``xml`` to the /wechat/ view signed as WeChat signs, as the request's host.

    Returns the status, the reply text (decrypted in safe mode) and the raw bodies."""
    from django.test import RequestFactory  # builds a plain WSGIRequest; imported here, not in every worker

    token, crypto = wechat_token(), wechat_crypto()
    timestamp, nonce = str(int(time.time())), secrets.token_hex(8)
    query = {
        "signature": signature_of(token, timestamp, nonce), "timestamp": timestamp, "nonce": nonce, "openid": openid,
    }
    body = xml
    if crypto is not None:
        encrypted = xml_fields(xml_root(crypto.encrypt_message(xml, nonce, timestamp)))
        body = (
            f"<xml><ToUserName><![CDATA[{SIMULATED_ACCOUNT}]]></ToUserName>"
            f"<Encrypt><![CDATA[{encrypted['Encrypt']}]]></Encrypt></xml>"
        )
        query.update(encrypt_type="aes", msg_signature=encrypted["MsgSignature"])
    inner = RequestFactory().post(
        "/wechat/?" + urlencode(query), data=body.encode(), content_type="text/xml",
        HTTP_HOST=request.get_host(), secure=request.is_secure(),
    )
    response = wechat_endpoint(inner)
    raw = response.content.decode("utf-8", "replace")
    return {"status": response.status_code, "reply": _reply_text(raw, crypto), "request_xml": xml,
            "sent_body": body, "response_body": raw, "safe_mode": crypto is not None}


def _reply_text(raw: str, crypto) -> str:
    if raw == "success":
        return ""
    try:
        fields = xml_fields(xml_root(raw))
        if crypto is not None and "Encrypt" in fields:
            plain = crypto.decrypt_message(fields, fields["MsgSignature"], fields["TimeStamp"], fields["Nonce"])
            fields = xml_fields(xml_root(plain))
    except (BadInbound, KeyError):
        return raw
    return fields.get("Content", "")


@staff_member_required
def simulator(request):
    if not settings.O2O_SANDBOX:
        raise Http404("The chat simulator exists only in the sandbox")
    result = None
    openid = request.POST.get("openid") or request.GET.get("openid") or ""
    if request.method == "POST" and "again" in request.POST and request.session.get(SESSION_LAST):
        last = request.session[SESSION_LAST]
        openid = last["openid"]
        result = deliver(request, last["xml"], openid=openid)
        form = SimulatorForm(initial={"openid": openid})
    elif request.method == "POST":
        form = SimulatorForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            openid = data["openid"] if data["openid"] != NEW_SHOPPER else "sim-" + secrets.token_urlsafe(12)
            xml = simulated_xml(
                openid=openid, action=data["action"], text=data["text"], plaza=data["plaza"], key=data["key"]
            )
            result = deliver(request, xml, openid=openid)
            request.session[SESSION_LAST] = {"openid": openid, "xml": xml}
            form = SimulatorForm(initial={**data, "openid": openid})
    else:
        form = SimulatorForm(initial={"openid": openid} if openid else None)
    conversation = []
    if openid and openid != NEW_SHOPPER:
        conversation = list(
            InboundMessage.objects.filter(channel=InboundMessage.Channel.WECHAT, from_user=openid)
            .order_by("-created_at", "-pk")[:20]
        )
    context = {
        **admin.site.each_context(request),
        "title": "WeChat chat simulator",
        "form": form,
        "result": result,
        "openid": openid,
        "conversation": list(reversed(conversation)),
        "can_send_again": bool(request.session.get(SESSION_LAST)),
    }
    return render(request, "bots/simulator.html", context)
