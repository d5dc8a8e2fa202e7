"""A local fake of WeChat, WeChat Pay and Alipay, for tests.

One threaded HTTP server on 127.0.0.1 (port 0) answers all three: their paths do not
collide (``/cgi-bin/…``, ``/sns/…``, ``/wxa/…`` for WeChat; ``/pay/…``,
``/secapi/…`` for WeChat Pay; ``/gateway.do`` for Alipay). It records every request
and answers each path from a script the test sets::

    platform_server.script("/cgi-bin/token", json_reply({"access_token": "T", "expires_in": 7200}))
    with override_settings(**platform_server.settings(), WECHAT_APP_ID=…):
        …
    [request] = platform_server.requests_to("/cgi-bin/token")

A script is a ``Reply`` or a function of the ``RecordedRequest`` returning one; a path
without a script answers 404. The protocol helpers below (WeChat Pay v2 MD5 signing,
Alipay RSA2 signing) are written from the platforms' documentation with
``cryptography`` and ``hashlib``, not with the SDKs under test, so a fake that
accepts a request is evidence that the SDK signed it the way the platform checks.
"""

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from defusedxml.ElementTree import fromstring as defused_fromstring

# --- The server -----------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # names lower-cased
    body: bytes

    def param(self, name: str) -> str | None:
        """The first value of a query-string parameter."""
        values = self.query.get(name)
        return values[0] if values else None

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    @property
    def form(self) -> dict[str, str]:
        """The body as an application/x-www-form-urlencoded form, one value a name."""
        return {name: values[0] for name, values in parse_qs(self.text, keep_blank_values=True).items()}

    def json(self):
        return json.loads(self.body)


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes | str = b""
    content_type: str = "application/json; charset=utf-8"
    # Seconds to wait before answering; a client with a shorter timeout gives up.
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


Script = Reply | Callable[[RecordedRequest], Reply]


def json_reply(payload, *, status: int = 200) -> Reply:
    return Reply(status=status, body=json.dumps(payload, ensure_ascii=False))


def text_reply(
    text: str, *, content_type: str = "text/plain; charset=utf-8", status: int = 200, delay: float = 0.0
) -> Reply:
    return Reply(status=status, body=text, content_type=content_type, delay=delay)


def xml_reply(xml: str, *, status: int = 200) -> Reply:
    return Reply(status=status, body=xml, content_type="text/xml; charset=utf-8")


class FakePlatformServer:
    def __init__(self):
        self.requests: list[RecordedRequest] = []
        self.errors: list[BaseException] = []  # exceptions raised by scripts
        self._scripts: dict[str, Script] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-platform-server", daemon=True
        )

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>/``"""
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/"

    def settings(self) -> dict[str, str]:
        """The three base-URL settings, all pointed at this server."""
        return {
            "WECHAT_API_BASE_URL": self.url,
            "WECHAT_PAY_API_BASE_URL": self.url,
            "ALIPAY_GATEWAY_URL": self.url + "gateway.do",
        }

    def script(self, path: str, reply: Script) -> None:
        with self._lock:
            self._scripts[path] = reply

    def requests_to(self, path: str) -> list[RecordedRequest]:
        with self._lock:
            return [request for request in self.requests if request.path == path]

    def wait_for(
        self, path: str, match: Callable[[RecordedRequest], bool] = lambda request: True, *, timeout: float = 20.0
    ) -> RecordedRequest | None:
        """The first request to ``path`` that ``match`` accepts, waiting up to ``timeout``
        seconds for it (work done by another process arrives when it arrives); None if
        none came."""
        deadline = time.monotonic() + timeout
        while True:
            found = next((request for request in self.requests_to(path) if match(request)), None)
            if found is not None or time.monotonic() >= deadline:
                return found
            time.sleep(0.05)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()  # releases handlers still sleeping on a delayed reply
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def _answer(self, request: RecordedRequest) -> Reply:
        with self._lock:
            self.requests.append(request)
            script = self._scripts.get(request.path)
        if script is None:
            return json_reply({"fake": f"no script for {request.path}"}, status=404)
        if isinstance(script, Reply):
            return script
        try:
            return script(request)
        except Exception as exc:  # surfaced through .errors; the client sees a 500
            self.errors.append(exc)
            return json_reply({"fake": f"script failed: {exc!r}"}, status=500)


def _handler_for(server: FakePlatformServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _handle(self):
            length = int(self.headers.get("Content-Length") or 0)
            parts = urlsplit(self.path)
            request = RecordedRequest(
                method=self.command,
                path=parts.path,
                query=parse_qs(parts.query, keep_blank_values=True),
                headers={name.lower(): value for name, value in self.headers.items()},
                body=self.rfile.read(length) if length else b"",
            )
            reply = server._answer(request)
            if reply.delay and server._stopping.wait(reply.delay):
                return
            body = reply.body.encode("utf-8") if isinstance(reply.body, str) else reply.body
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                self.send_header("Content-Length", str(len(body)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up waiting, as a timeout test intends

        do_GET = do_POST = do_PUT = do_DELETE = _handle

        def log_message(self, format, *args):
            pass

    return Handler


@pytest.fixture
def platform_server():
    server = FakePlatformServer()
    server.start()
    yield server
    server.stop()


# --- WeChat Pay v2 --------------------------------------------------------------------


def wechat_pay_sign(params: Mapping[str, object], api_key: str, *, sign_type: str = "MD5") -> str:
    """The v2 signature: non-empty params but ``sign`` sorted by name, joined as
    ``k=v&…&key=<API key>``, MD5 (or HMAC-SHA256 keyed with the API key), upper hex."""
    pairs = [f"{name}={params[name]}" for name in sorted(params) if name != "sign" and params[name] not in (None, "")]
    message = "&".join([*pairs, f"key={api_key}"]).encode("utf-8")
    if sign_type == "HMAC-SHA256":
        return hmac.new(api_key.encode("utf-8"), message, hashlib.sha256).hexdigest().upper()
    return hashlib.md5(message).hexdigest().upper()


def wechat_pay_signature_valid(params: Mapping[str, str], api_key: str) -> bool:
    expected = wechat_pay_sign(params, api_key, sign_type=params.get("sign_type") or "MD5")
    return hmac.compare_digest(params.get("sign", ""), expected)


def wechat_pay_xml(params: Mapping[str, object], *, api_key: str | None = None) -> str:
    """A WeChat Pay XML document, signed when ``api_key`` is given."""
    fields = dict(params)
    if api_key is not None:
        fields["sign"] = wechat_pay_sign(fields, api_key)
    body = "".join(f"<{name}><![CDATA[{value}]]></{name}>" for name, value in fields.items())
    return f"<xml>{body}</xml>"


def wechat_pay_refund_notification(refund: Mapping[str, object], *, appid: str, mch_id: str, api_key: str) -> str:
    """A refund notification: ``req_info`` is the refund as ``<root>`` XML, encrypted
    with AES-256-ECB (PKCS#7) under the lower-case hex MD5 of the API key, base64."""
    inner = "<root>" + "".join(f"<{name}><![CDATA[{value}]]></{name}>" for name, value in refund.items()) + "</root>"
    padder = sym_padding.PKCS7(128).padder()
    padded = padder.update(inner.encode("utf-8")) + padder.finalize()
    key = hashlib.md5(api_key.encode("utf-8")).hexdigest().encode("ascii")
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    req_info = base64.b64encode(encryptor.update(padded) + encryptor.finalize()).decode()
    outer = {"return_code": "SUCCESS", "appid": appid, "mch_id": mch_id, "nonce_str": "n", "req_info": req_info}
    return wechat_pay_xml(outer)


def parse_wechat_pay_xml(body: bytes | str) -> dict[str, str]:
    return {child.tag: child.text or "" for child in defused_fromstring(body, forbid_dtd=True)}


# --- Alipay (RSA2) --------------------------------------------------------------------


@dataclass(frozen=True)
class RsaKeyPair:
    private_pem: str
    public_pem: str


def rsa_key_pair() -> RsaKeyPair:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    return RsaKeyPair(private_pem=private_pem, public_pem=public_pem)


def rsa2_sign(content: str, private_pem: str) -> str:
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    return base64.b64encode(key.sign(content.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())).decode()


def rsa2_valid(content: str, signature: str, public_pem: str) -> bool:
    key = serialization.load_pem_public_key(public_pem.encode())
    try:
        key.verify(base64.b64decode(signature), content.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


def alipay_request_signature_valid(params: Mapping[str, str], app_public_pem: str) -> bool:
    """An open-API request is signed over every non-empty parameter but ``sign``
    (``sign_type`` included), sorted by name and joined as ``k=v&…``."""
    content = "&".join(f"{name}={params[name]}" for name in sorted(params) if name != "sign" and params[name] != "")
    return rsa2_valid(content, params.get("sign", ""), app_public_pem)


def alipay_signed_response(
    response_key: str, payload: Mapping[str, object], alipay_private_pem: str, *, sign: str | None = None
) -> str:
    """A gateway answer: ``{"<response_key>": {…}, "sign": "…"}`` where the signature
    covers the exact JSON text of the inner object. ``sign`` overrides it."""
    content = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    signature = sign if sign is not None else rsa2_sign(content, alipay_private_pem)
    return f'{{"{response_key}":{content},"sign":"{signature}"}}'


# The platforms' RSA keys, made once per test session: Alipay's (it signs its answers and
# notifications) and ours (we sign our requests), as a test would have them configured.


@pytest.fixture(scope="session")
def app_keys() -> RsaKeyPair:
    return rsa_key_pair()


@pytest.fixture(scope="session")
def alipay_keys() -> RsaKeyPair:
    return rsa_key_pair()
