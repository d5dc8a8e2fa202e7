"""Who talks to the deployment in tests/e2e, over real HTTP: a client behind nginx
(``Site``), WeChat's servers posting to /wechat/ in safe mode (``OfficialAccount``),
and the fake WeChat and Alipay the deployment's own processes call (``FakeWeChat``,
``FakeAlipay``)."""

import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import requests

from tests.bots.platforms import wechat_decrypt, wechat_encrypt, wechat_signature, xml_dict
from tests.fakes.platform_server import (
    FakePlatformServer,
    RecordedRequest,
    Reply,
    alipay_request_signature_valid,
    alipay_signed_response,
    json_reply,
    rsa2_sign,
)

# --- the site, through nginx -----------------------------------------------------------


def nginx_proxy_headers(conf: Path, *, host: str, client_ip: str) -> dict[str, str]:
    """The headers docs/deploy/nginx.conf sets on every request it passes to gunicorn,
    with nginx's variables filled in for a client at ``client_ip`` over HTTPS."""
    variables = {"$host": host, "$scheme": "https", "$proxy_add_x_forwarded_for": client_ip}
    headers = {}
    for name, value in re.findall(r"^\s*proxy_set_header\s+(\S+)\s+(\S+);", conf.read_text(), flags=re.MULTILINE):
        if name.lower() == "connection":
            continue  # between nginx and gunicorn only (keep-alive to the upstream)
        assert value in variables, f"{conf}: proxy_set_header {name} {value} is unknown to tests/e2e"
        headers[name] = variables[value]
    assert headers.get("X-Forwarded-Proto") == "https" and headers.get("Host") == host, headers
    return headers


class Site:
    """The deployment as a client sees it through nginx: every request carries the
    proxy's headers unless ``proxied=False`` (a request that reached gunicorn some
    other way). Redirects are not followed; each call is its own connection, so
    threads may share a Site."""

    def __init__(self, base_url: str, *, proxy_headers: dict[str, str]):
        self.base_url = base_url.rstrip("/")
        self.proxy_headers = proxy_headers
        self.host = proxy_headers["Host"]

    def request(self, method: str, path: str, *, proxied: bool = True, headers: dict | None = None, **kwargs):
        sent = dict(self.proxy_headers) if proxied else {"Host": self.host}
        sent.update(headers or {})
        kwargs.setdefault("timeout", 60)
        kwargs.setdefault("allow_redirects", False)
        return requests.request(method, self.base_url + path, headers=sent, **kwargs)

    def get(self, path: str, **kwargs):
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs):
        return self.request("POST", path, **kwargs)

    def post_json(self, path: str, body, *, token: str | None = None, idempotency_key: str | None = None,
                  headers: dict | None = None):
        sent = {"Content-Type": "application/json", **(headers or {})}
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        if idempotency_key is not None:
            sent["Idempotency-Key"] = idempotency_key
        return self.post(path, data=json.dumps(body), headers=sent)

    def get_json(self, path: str, *, token: str, params: dict | None = None):
        return self.get(path, params=params, headers={"Authorization": f"Bearer {token}"})


class Browser:
    """A browser on https://<host>/ (through nginx): it keeps the cookies, every one of
    which must be Secure (a cookie jar would not send those to gunicorn's http://
    address, so they are kept here), and sends what a browser sends on a form post."""

    def __init__(self, site: Site, *, user_agent: str = "Mozilla/5.0"):
        self.site = site
        self.origin = f"https://{site.host}"
        self.user_agent = user_agent
        self.cookies: dict[str, str] = {}

    def _send(self, method: str, path: str, **kwargs):
        headers = {"User-Agent": self.user_agent, **kwargs.pop("headers", {})}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        response = self.site.request(method, path, headers=headers, **kwargs)
        for cookie in response.cookies:
            assert cookie.secure, f"cookie {cookie.name} is not Secure"
            if cookie.is_expired():
                self.cookies.pop(cookie.name, None)
            else:
                self.cookies[cookie.name] = cookie.value
        return response

    def get(self, path: str):
        return self._send("GET", path)

    def post_form(self, path: str, data: dict, *, referer: str):
        return self._send("POST", path, data=data, headers={"Origin": self.origin, "Referer": self.origin + referer})


def new_key(label: str = "e2e") -> str:
    return f"{label}-{secrets.token_hex(8)}"


# --- WeChat's servers posting to /wechat/ ----------------------------------------------


def wechat_event_xml(*, openid: str, account: str, event: str, key: str = "") -> str:
    key_element = f"<EventKey><![CDATA[{key}]]></EventKey>" if key else ""
    return (
        f"<xml><ToUserName><![CDATA[{account}]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        f"<Event><![CDATA[{event}]]></Event>{key_element}</xml>"
    )


def wechat_text_xml(*, openid: str, account: str, content: str) -> str:
    msg_id = secrets.randbelow(10**17) + 10**17  # WeChat's MsgId: a 64-bit number, unique per message
    return (
        f"<xml><ToUserName><![CDATA[{account}]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
        f"<Content><![CDATA[{content}]]></Content><MsgId>{msg_id}</MsgId></xml>"
    )


class OfficialAccount:
    """WeChat delivering the official account's messages in safe mode: a fresh
    timestamp and nonce, the query signed, the message AES-encrypted and signed by
    msg_signature (tests/bots/platforms.py writes WeChat's algorithms)."""

    def __init__(self, site: Site, *, token: str, aes_key: str, app_id: str, account: str):
        self.site, self.token, self.aes_key, self.app_id, self.account = site, token, aes_key, app_id, account

    def delivery(self, xml: str) -> tuple[dict[str, str], bytes]:
        """The query string and body of one delivery of ``xml``; WeChat's retries resend both as they are."""
        timestamp, nonce = str(int(time.time())), secrets.token_hex(8)
        encrypt = wechat_encrypt(xml, aes_key=self.aes_key, app_id=self.app_id)
        openid = xml_dict(xml)["FromUserName"]
        query = {
            "signature": wechat_signature(self.token, timestamp, nonce), "timestamp": timestamp, "nonce": nonce,
            "openid": openid, "encrypt_type": "aes", "msg_signature": wechat_signature(self.token, timestamp, nonce, encrypt),
        }
        body = f"<xml><ToUserName><![CDATA[{self.account}]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
        return query, body.encode()

    def deliver(self, query: dict[str, str], body: bytes):
        return self.site.post("/wechat/?" + urlencode(query), data=body, headers={"Content-Type": "text/xml"})

    def reply(self, response) -> dict[str, str]:
        """The reply's fields ({} for "success"), its msg_signature checked and decrypted."""
        assert response.status_code == 200, (response.status_code, response.text[:500])
        if response.content == b"success":
            return {}
        fields = xml_dict(response.content)
        assert set(fields) == {"Encrypt", "MsgSignature", "TimeStamp", "Nonce"}, fields
        assert fields["MsgSignature"] == wechat_signature(self.token, fields["TimeStamp"], fields["Nonce"], fields["Encrypt"])
        message, app_id = wechat_decrypt(fields["Encrypt"], aes_key=self.aes_key)
        assert app_id == self.app_id
        return xml_dict(message)

    def say(self, xml: str) -> str:
        """Deliver ``xml``; the text of the reply ("" for none)."""
        fields = self.reply(self.deliver(*self.delivery(xml)))
        if fields:
            assert fields["MsgType"] == "text" and fields["ToUserName"] == xml_dict(xml)["FromUserName"], fields
        return fields.get("Content", "")

    def subscribe(self, openid: str, *, scene: str = "") -> str:
        return self.say(wechat_event_xml(openid=openid, account=self.account, event="subscribe",
                                         key=f"qrscene_{scene}" if scene else ""))

    def text(self, openid: str, content: str) -> str:
        return self.say(wechat_text_xml(openid=openid, account=self.account, content=content))


# --- WeChat's API, faked for the deployment's processes --------------------------------


class FakeWeChat:
    """The WeChat API the deployment's web and task processes call (WECHAT_API_BASE_URL):
    access tokens for the official account and the mini-program, the official account's
    user info (the follower's unionid), the mini-program's jscode2session, web OAuth's
    code exchange, and customer-service messages, which it records. Tests say who
    exists: ``follower``, ``miniapp_login``, ``web_login``."""

    def __init__(self, server: FakePlatformServer, *, app_id: str, app_secret: str, miniapp_id: str, miniapp_secret: str):
        self.server = server
        self._apps = {app_id: app_secret, miniapp_id: miniapp_secret}
        self._tokens = {app_id: "oa-" + secrets.token_hex(12), miniapp_id: "mp-" + secrets.token_hex(12)}
        self.app_id, self.miniapp_id = app_id, miniapp_id
        self._lock = threading.Lock()
        self._followers: dict[str, str] = {}
        self._logins: dict[str, dict] = {}
        self._web_logins: dict[str, str] = {}  # web OAuth code → openid
        # openid → called with the request before user info is answered (e.g. to hold it back)
        self._user_info_hooks: dict[str, Callable[[RecordedRequest], None]] = {}
        server.script("/cgi-bin/token", self._token)
        server.script("/cgi-bin/user/info", self._user_info)
        server.script("/sns/jscode2session", self._jscode2session)
        server.script("/cgi-bin/message/custom/send", self._custom_send)
        server.script("/sns/oauth2/access_token", self._web_oauth)

    def follower(self, *, unionid: str, before_user_info: Callable[[RecordedRequest], None] | None = None) -> str:
        """A new WeChat user who will follow the official account; its openid."""
        openid = "oE2E" + secrets.token_hex(12)
        with self._lock:
            self._followers[openid] = unionid
            if before_user_info is not None:
                self._user_info_hooks[openid] = before_user_info
        return openid

    def miniapp_login(self, *, unionid: str | None) -> str:
        """A wx.login() code of a new mini-program user (with WeChat's ``unionid``, or
        none: no account of ours linked); jscode2session takes it once."""
        code = "code-" + secrets.token_hex(8)
        answer = {"openid": "oMP" + secrets.token_hex(12), "session_key": secrets.token_urlsafe(16)}
        if unionid:
            answer["unionid"] = unionid
        with self._lock:
            self._logins[code] = answer
        return code

    def web_login(self, openid: str) -> str:
        """The code WeChat's web OAuth (snsapi_base) hands the page for a follower
        opening it in WeChat's browser; sns/oauth2/access_token takes it once."""
        code = "web-" + secrets.token_hex(8)
        with self._lock:
            self._web_logins[code] = openid
        return code

    def customer_service_messages(self, openid: str) -> list[str]:
        """The texts sent to ``openid`` as customer-service messages, in order."""
        return [
            request.json()["text"]["content"] for request in self.server.requests_to("/cgi-bin/message/custom/send")
            if request.json().get("touser") == openid
        ]

    def wait_for_customer_service_message(self, openid: str, contains: str, *, timeout: float) -> str | None:
        def match(request: RecordedRequest) -> bool:
            body = request.json()
            return body.get("touser") == openid and contains in body.get("text", {}).get("content", "")

        found = self.server.wait_for("/cgi-bin/message/custom/send", match, timeout=timeout)
        return None if found is None else found.json()["text"]["content"]

    # The scripts: WeChat's answers, its error codes for what it would refuse.

    def _token(self, request: RecordedRequest) -> Reply:
        appid, secret = request.param("appid"), request.param("secret")
        if request.param("grant_type") != "client_credential" or self._apps.get(appid) != secret:
            return json_reply({"errcode": 40125, "errmsg": "invalid appsecret"})
        return json_reply({"access_token": self._tokens[appid], "expires_in": 7200})

    def _user_info(self, request: RecordedRequest) -> Reply:
        if request.param("access_token") != self._tokens[self.app_id]:
            return json_reply({"errcode": 40001, "errmsg": "invalid credential, access_token is invalid"})
        openid = request.param("openid")
        with self._lock:
            unionid, hook = self._followers.get(openid), self._user_info_hooks.get(openid)
        if unionid is None:
            return json_reply({"errcode": 40003, "errmsg": "invalid openid"})
        if hook is not None:
            hook(request)
        return json_reply({
            "subscribe": 1, "openid": openid, "language": "zh_CN", "subscribe_time": int(time.time()),
            "unionid": unionid, "remark": "", "groupid": 0, "tagid_list": [], "subscribe_scene": "ADD_SCENE_QR_CODE",
            "qr_scene": 0, "qr_scene_str": "",
        })

    def _jscode2session(self, request: RecordedRequest) -> Reply:
        if (request.param("appid"), request.param("secret")) != (self.miniapp_id, self._apps[self.miniapp_id]):
            return json_reply({"errcode": 40125, "errmsg": "invalid appsecret"})
        with self._lock:
            answer = self._logins.pop(request.param("js_code") or "", None)
        if request.param("grant_type") != "authorization_code" or answer is None:
            return json_reply({"errcode": 40029, "errmsg": "invalid code"})
        return json_reply(answer)

    def _web_oauth(self, request: RecordedRequest) -> Reply:
        if (request.param("appid"), request.param("secret")) != (self.app_id, self._apps[self.app_id]):
            return json_reply({"errcode": 40125, "errmsg": "invalid appsecret"})
        with self._lock:
            openid = self._web_logins.pop(request.param("code") or "", None)
        if request.param("grant_type") != "authorization_code" or openid is None:
            return json_reply({"errcode": 40029, "errmsg": "invalid code"})
        return json_reply({"access_token": "web-" + secrets.token_hex(8), "expires_in": 7200,
                           "refresh_token": secrets.token_hex(8), "openid": openid, "scope": "snsapi_base"})

    def _custom_send(self, request: RecordedRequest) -> Reply:
        if request.param("access_token") != self._tokens[self.app_id]:
            return json_reply({"errcode": 40001, "errmsg": "invalid credential, access_token is invalid"})
        body = request.json()
        if body.get("msgtype") != "text" or body.get("touser") not in self._followers:
            return json_reply({"errcode": 40003, "errmsg": "invalid openid"})
        return json_reply({"errcode": 0, "errmsg": "ok"})


# --- Alipay's open API, faked for the deployment's processes ---------------------------


class FakeAlipay:
    """Alipay's gateway (ALIPAY_GATEWAY_URL: every method is a form POSTed to /gateway.do)
    as the deployment's web and task processes call it, keeping a book of trades the way
    Alipay does: mini-program logins (alipay.system.oauth.token), trades opened
    (precreate, create), queried, closed and refunded. It answers only requests signed
    with the app's key and signs its answers with Alipay's. Tests say who logs in
    (``login``) and who pays (``paid_notification``: the trade is paid, and the signed
    trade_status_sync form Alipay would POST to the notify URL is returned)."""

    PATH = "/gateway.do"

    def __init__(self, server: FakePlatformServer, *, app_id: str, app_public_pem: str, alipay_private_pem: str,
                 seller_id: str):
        self.server, self.app_id, self.seller_id = server, app_id, seller_id
        self._app_public_pem, self._alipay_private_pem = app_public_pem, alipay_private_pem
        self._lock = threading.Lock()
        self._logins: dict[str, str] = {}  # auth_code → user_id, taken once
        self.trades: dict[str, dict] = {}  # out_trade_no → the trade as Alipay keeps it
        server.script(self.PATH, self._gateway)

    @staticmethod
    def new_user_id() -> str:
        """An Alipay user_id: "2088" and twelve digits."""
        return "2088" + _digits(12)

    def login(self, user_id: str) -> str:
        """The my.getAuthCode() code of ``user_id`` opening the mini-program."""
        code = "auth-" + secrets.token_hex(8)
        with self._lock:
            self._logins[code] = user_id
        return code

    def calls(self, method: str, out_trade_no: str | None = None) -> list[dict]:
        """Our requests for ``method`` (of ``out_trade_no``), in order, biz_content parsed as ``biz``."""
        found = []
        for request in self.server.requests_to(self.PATH):
            form = request.form
            if form.get("method") != method:
                continue
            biz = json.loads(form.get("biz_content") or "{}")
            if out_trade_no is None or biz.get("out_trade_no") == out_trade_no:
                found.append({**form, "biz": biz})
        return found

    def paid_notification(self, out_trade_no: str, *, buyer_id: str | None = None) -> dict[str, str]:
        """The shopper pays the trade (``buyer_id``: whoever scanned a precreate QR; a
        created trade names its buyer); the notification Alipay sends about it."""
        with self._lock:
            trade = self.trades[out_trade_no]
            assert trade["trade_status"] == "WAIT_BUYER_PAY", trade
            trade.update(trade_status="TRADE_SUCCESS", gmt_payment=_alipay_now(),
                         buyer_id=buyer_id or trade["buyer_id"])
            assert trade["buyer_id"], "who paid?"
            fields = {
                "notify_time": _alipay_now(), "notify_type": "trade_status_sync", "notify_id": secrets.token_hex(16),
                "charset": "utf-8", "version": "1.0", "sign_type": "RSA2", "app_id": self.app_id,
                "auth_app_id": self.app_id, "trade_no": trade["trade_no"], "out_trade_no": out_trade_no,
                "buyer_id": trade["buyer_id"], "seller_id": trade["seller_id"], "trade_status": "TRADE_SUCCESS",
                "total_amount": trade["total_amount"], "receipt_amount": trade["total_amount"],
                "buyer_pay_amount": trade["total_amount"], "subject": trade["subject"],
                "gmt_create": trade["gmt_create"], "gmt_payment": trade["gmt_payment"],
                "fund_bill_list": json.dumps([{"amount": trade["total_amount"], "fundChannel": "ALIPAYACCOUNT"}]),
            }
        return self.signed(fields, self._alipay_private_pem)

    @staticmethod
    def signed(fields: dict[str, str], private_pem: str) -> dict[str, str]:
        """``fields`` with the RSA2 signature Alipay puts on a notification: every field but
        sign and sign_type, sorted by name, ``k=v&…`` (UTF-8), under ``private_pem``."""
        content = "&".join(f"{name}={fields[name]}" for name in sorted(fields) if name not in ("sign", "sign_type"))
        return {**fields, "sign": rsa2_sign(content, private_pem)}

    # The gateway: one method a request.

    def _gateway(self, request: RecordedRequest) -> Reply:
        form = request.form
        if request.method != "POST" or form.get("app_id") != self.app_id or not alipay_request_signature_valid(
            form, self._app_public_pem
        ):
            return json_reply({"error_response": {"code": "40002", "msg": "Invalid Arguments",
                                                  "sub_code": "isv.invalid-signature", "sub_msg": "验签出错"}})
        method = form.get("method", "")
        handler = {
            "alipay.system.oauth.token": self._oauth_token,
            "alipay.trade.precreate": self._open,
            "alipay.trade.create": self._open,
            "alipay.trade.query": self._query,
            "alipay.trade.close": self._close,
            "alipay.trade.refund": self._refund,
            "alipay.trade.fastpay.refund.query": self._refund_query,
        }.get(method)
        if handler is None:
            return json_reply({"error_response": {"code": "40002", "msg": "Invalid Arguments",
                                                  "sub_code": "isv.invalid-method", "sub_msg": "不存在的方法名"}})
        biz = json.loads(form.get("biz_content") or "{}")
        with self._lock:
            key, payload = handler(form, biz)
        return Reply(body=alipay_signed_response(key or method.replace(".", "_") + "_response", payload,
                                                 self._alipay_private_pem))

    @staticmethod
    def _failed(sub_code: str, sub_msg: str) -> tuple[None, dict]:
        return None, {"code": "40004", "msg": "Business Failed", "sub_code": sub_code, "sub_msg": sub_msg}

    @staticmethod
    def _success(**fields) -> tuple[None, dict]:
        return None, {"code": "10000", "msg": "Success", **fields}

    def _oauth_token(self, form, biz):
        user_id = self._logins.pop(form.get("code") or "", None)
        if form.get("grant_type") != "authorization_code" or user_id is None:
            return "error_response", {"code": "40002", "msg": "Invalid Arguments", "sub_code": "isv.code-invalid",
                                      "sub_msg": "授权码code无效"}
        return None, {"user_id": user_id, "access_token": "authusr" + secrets.token_hex(16), "expires_in": 1296000,
                      "refresh_token": "authusr" + secrets.token_hex(16), "re_expires_in": 2592000,
                      "auth_start": _alipay_now()}

    def _open(self, form, biz):
        out_trade_no = biz.get("out_trade_no", "")
        if out_trade_no in self.trades:
            return self._failed("ACQ.TRADE_HAS_SUCCESS" if self.trades[out_trade_no]["trade_status"] == "TRADE_SUCCESS"
                                else "ACQ.CONTEXT_INCONSISTENT", "交易已存在")
        trade = {
            "out_trade_no": out_trade_no, "trade_no": time.strftime("%Y%m%d") + "22001" + _digits(15),
            "total_amount": biz["total_amount"], "subject": biz["subject"], "notify_url": form.get("notify_url", ""),
            "buyer_id": biz.get("buyer_id", ""), "seller_id": self.seller_id, "trade_status": "WAIT_BUYER_PAY",
            "gmt_create": _alipay_now(), "refunds": {},
        }
        self.trades[out_trade_no] = trade
        if form["method"] == "alipay.trade.precreate":
            trade["qr_code"] = "https://qr.alipay.com/bax0" + secrets.token_hex(10)  # data for a QR, never fetched
            return self._success(out_trade_no=out_trade_no, qr_code=trade["qr_code"])
        return self._success(out_trade_no=out_trade_no, trade_no=trade["trade_no"])

    def _query(self, form, biz):
        trade = self.trades.get(biz.get("out_trade_no", ""))
        if trade is None:
            return self._failed("ACQ.TRADE_NOT_EXIST", "交易不存在")
        answer = {"trade_no": trade["trade_no"], "out_trade_no": trade["out_trade_no"],
                  "trade_status": trade["trade_status"], "total_amount": trade["total_amount"]}
        if trade.get("gmt_payment"):
            answer.update(buyer_user_id=trade["buyer_id"], send_pay_date=trade["gmt_payment"])
        return self._success(**answer)

    def _close(self, form, biz):
        trade = self.trades.get(biz.get("out_trade_no", ""))
        if trade is None:
            return self._failed("ACQ.TRADE_NOT_EXIST", "交易不存在")
        if trade["trade_status"] != "WAIT_BUYER_PAY":
            return self._failed("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
        trade["trade_status"] = "TRADE_CLOSED"
        return self._success(trade_no=trade["trade_no"], out_trade_no=trade["out_trade_no"])

    def _refund(self, form, biz):
        trade = self.trades.get(biz.get("out_trade_no", ""))
        if trade is None:
            return self._failed("ACQ.TRADE_NOT_EXIST", "交易不存在")
        if trade["trade_status"] != "TRADE_SUCCESS":
            return self._failed("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
        request_no, amount = biz.get("out_request_no") or trade["out_trade_no"], _fen(biz["refund_amount"])
        change = "N"
        if request_no not in trade["refunds"]:
            if sum(trade["refunds"].values()) + amount > _fen(trade["total_amount"]):
                return self._failed("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "退款金额超限")
            trade["refunds"][request_no], change = amount, "Y"
        refunded = sum(trade["refunds"].values())
        return self._success(trade_no=trade["trade_no"], out_trade_no=trade["out_trade_no"], buyer_logon_id="e2e***@example.com",
                             fund_change=change, refund_fee=_yuan(refunded), gmt_refund_pay=_alipay_now())

    def _refund_query(self, form, biz):
        trade = self.trades.get(biz.get("out_trade_no", ""))
        if trade is None:
            return self._failed("ACQ.TRADE_NOT_EXIST", "交易不存在")
        request_no = biz.get("out_request_no") or trade["out_trade_no"]
        if request_no not in trade["refunds"]:
            return self._success()  # Alipay's answer for a refund it has no record of
        return self._success(trade_no=trade["trade_no"], out_trade_no=trade["out_trade_no"], out_request_no=request_no,
                             total_amount=trade["total_amount"], refund_amount=_yuan(trade["refunds"][request_no]),
                             refund_status="REFUND_SUCCESS")


def _alipay_now() -> str:
    """Now, as Alipay writes times: Beijing time, to the second."""
    return datetime.now(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m-%d %H:%M:%S")


def _digits(count: int) -> str:
    return "".join(secrets.choice("0123456789") for _ in range(count))


def _fen(yuan: str) -> int:
    return int(Decimal(yuan) * 100)


def _yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


# --- forms, as a browser submits them (the admin) ------------------------------------


class _FormFields(HTMLParser):
    """The fields of a page's form (the one with ``form_id``, else the first) and the
    values a browser would submit for them untouched: text-like inputs, checked boxes
    and radios, each select's selected options (a single select's first if none is),
    textareas. Buttons are left out: the caller says which one was pressed."""

    TEXT_LIKE = {"text", "hidden", "number", "email", "password", "url", "search", "tel", "date", "time", "datetime-local"}

    def __init__(self, form_id: str | None):
        super().__init__(convert_charrefs=True)
        self.form_id = form_id
        self.fields: dict[str, list[str]] = {}
        self._in_form = self._done = False
        self._select: tuple[str, bool, list[str], list[str]] | None = None  # name, multiple, options, selected
        self._option: dict | None = None
        self._textarea: tuple[str, list[str]] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = {name: value if value is not None else "" for name, value in attrs}
        if tag == "form" and not self._done and not self._in_form:
            self._in_form = self.form_id is None or attrs.get("id") == self.form_id
            return
        if not self._in_form or "name" not in attrs and tag in ("input", "select", "textarea"):
            return
        if tag == "input":
            kind = attrs.get("type", "text").lower()
            if kind in self.TEXT_LIKE or (kind in ("checkbox", "radio") and "checked" in attrs):
                default = "on" if kind in ("checkbox", "radio") else ""
                self.fields.setdefault(attrs["name"], []).append(attrs.get("value", default))
        elif tag == "select":
            self._select = (attrs["name"], "multiple" in attrs, [], [])
        elif tag == "option" and self._select is not None:
            self._option = {"value": attrs.get("value"), "selected": "selected" in attrs, "text": ""}
        elif tag == "textarea":
            self._textarea = (attrs["name"], [])

    def handle_data(self, data):
        if self._option is not None:
            self._option["text"] += data
        if self._textarea is not None:
            self._textarea[1].append(data)

    def handle_endtag(self, tag):
        if tag == "option" and self._option is not None and self._select is not None:
            value = self._option["value"] if self._option["value"] is not None else self._option["text"].strip()
            self._select[2].append(value)
            if self._option["selected"]:
                self._select[3].append(value)
            self._option = None
        elif tag == "select" and self._select is not None:
            name, multiple, options, selected = self._select
            self.fields[name] = selected if selected or multiple else options[:1]
            self._select = None
        elif tag == "textarea" and self._textarea is not None:
            name, text = self._textarea
            self.fields[name] = ["".join(text).removeprefix("\n")]
            self._textarea = None
        elif tag == "form" and self._in_form:
            self._in_form, self._done = False, True


def form_fields(html: str, *, form_id: str | None = None) -> dict[str, list[str]]:
    """What a browser would submit from the page's form (``form_id``, else the first) untouched."""
    parser = _FormFields(form_id)
    parser.feed(html)
    return parser.fields


def admin_login(site: Site, *, username: str, password: str) -> Browser:
    """A browser logged in to /admin/ as staff, through the login form."""
    browser = Browser(site)
    page = browser.get("/admin/login/?next=/admin/")
    assert page.status_code == 200, page.status_code
    fields = form_fields(page.text, form_id="login-form")
    fields.update(username=[username], password=[password], next=["/admin/"])
    response = browser.post_form("/admin/login/?next=/admin/", fields, referer="/admin/login/?next=/admin/")
    assert response.status_code == 302, (response.status_code, response.text[:500])
    return browser


def admin_submit(browser: Browser, path: str, changes: dict[str, str | list[str]], *, form_id: str, button: str = "_save"):
    """Open an admin page, change some fields of its form ``form_id`` (``<model>_form`` on
    an add or change page, ``changelist-form`` on a list), press ``button`` (a save
    button's name; empty for none): the response to the POST."""
    page = browser.get(path)
    assert page.status_code == 200, (path, page.status_code)
    fields = form_fields(page.text, form_id=form_id)
    assert "csrfmiddlewaretoken" in fields, f"{path}: no form with a CSRF token"
    fields.update({name: value if isinstance(value, list) else [value] for name, value in changes.items()})
    if button:
        fields[button] = [""]
    return browser.post_form(path, fields, referer=path)
