"""Who talks to the deployment in tests/e2e, over real HTTP: a client behind nginx
(``Site``), WeChat's servers posting to /wechat/ in safe mode (``OfficialAccount``),
and the fake WeChat the deployment's own processes call (``FakeWeChat``)."""

import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

import requests

from tests.bots.platforms import wechat_decrypt, wechat_encrypt, wechat_signature, xml_dict
from tests.fakes.platform_server import FakePlatformServer, RecordedRequest, Reply, json_reply

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
