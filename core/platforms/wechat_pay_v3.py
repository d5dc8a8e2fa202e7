"""WeChat Pay APIv3: a thin client of our own on ``cryptography`` and ``requests``.

Our own because the PyPI wrappers hard-code api.mch.weixin.qq.com (every outbound call
must honour ``WECHAT_PAY_API_BASE_URL``) and mishandle key serials. The protocol, as
WeChat Pay documents it ("签名生成", "签名验证", "构造验签源串", "如何解密回调报文"):

- We sign each request with the merchant API private key, RSA-SHA256 PKCS#1 v1.5 over
  ``METHOD\\nPATH?QUERY\\nTIMESTAMP\\nNONCE\\nBODY\\n``, sent as ``Authorization:
  WECHATPAY2-SHA256-RSA2048 mchid=…,nonce_str=…,signature=…,timestamp=…,serial_no=…``
  (serial_no: our API certificate's serial).
- WeChat Pay signs answers and notifications over ``TIMESTAMP\\nNONCE\\nBODY\\n``
  (headers ``Wechatpay-Timestamp/-Nonce/-Signature/-Serial``). The serial names its
  key: the WeChat Pay public key id ``PUB_KEY_ID_…``, or, while a merchant moves off
  platform certificates, a certificate serial (``WECHAT_PAY_PLATFORM_CERTIFICATES``,
  optional: ``{serial: PEM or path}``). A 2xx without a signature is forged; a
  timestamp more than 5 minutes off is refused (replay).
- A notification's ``resource`` is AEAD_AES_256_GCM under the 32-byte APIv3 key:
  base64 ciphertext with the 16-byte tag at its end, the nonce and associated data as
  UTF-8 text.

Settings are read at call time. A misconfiguration raises ``ImproperlyConfigured``
(our fault, not the peer's: a notify view answering 5xx makes WeChat Pay retry).
"""

import base64
import functools
import json as jsonlib
import secrets
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

import requests
from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

DEFAULT_BASE_URL = "https://api.mch.weixin.qq.com/"
SCHEME = "WECHATPAY2-SHA256-RSA2048"
USER_AGENT = "o2o-membership/0.1 wechat-pay-v3 (python-requests)"
TIMESTAMP_TOLERANCE_SECONDS = 300
MAX_NOTIFICATION_BYTES = 64 * 1024  # real ones are 1–2 KB


class WeChatPayV3Error(Exception):
    pass


class WeChatPayV3Rejected(WeChatPayV3Error):
    """WeChat Pay answered 4xx with its JSON error body ``{"code", "message"}``."""

    def __init__(self, code: str, message: str, status: int):
        super().__init__(f"{code}: {message} (HTTP {status})")
        self.code, self.message, self.status = code, message, status


class WeChatPayV3Unavailable(WeChatPayV3Error):
    """No answer in time, no connection, or a 5xx (``code`` kept when it sent one): try later."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.code = status, code


class WeChatPayV3BadResponse(WeChatPayV3Error):
    """An answer we cannot verify or parse: never act on it."""


class WeChatPayV3BadNotification(WeChatPayV3Error):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


# --- Configuration ----------------------------------------------------------------------


def _setting(name: str, default=""):
    return getattr(settings, name, default) or default


def configured() -> bool:
    """Enough is set to call APIv3 and verify its answers."""
    required = ("WECHAT_PAY_MCH_ID", "WECHAT_PAY_API_V3_KEY", "WECHAT_PAY_PRIVATE_KEY", "WECHAT_PAY_CERT_SERIAL")
    verifier = (_setting("WECHAT_PAY_PUBLIC_KEY") and _setting("WECHAT_PAY_PUBLIC_KEY_ID")) or _setting(
        "WECHAT_PAY_PLATFORM_CERTIFICATES", {}
    )
    return all(_setting(name) for name in required) and bool(verifier)


def _required(name: str) -> str:
    value = _setting(name)
    if not value:
        raise ImproperlyConfigured(f"{name} is not set")
    return str(value)


def _pem_text(value: str, name: str) -> str:
    """PEM text (literal ``\\n`` allowed, as in .env files) or a path to a PEM file."""
    value = str(value).strip()
    if "-----BEGIN" in value:
        return value.replace("\\n", "\n")
    try:
        return Path(value).read_text()
    except (OSError, ValueError):
        raise ImproperlyConfigured(f"{name} is neither PEM text nor a readable file") from None


@functools.lru_cache(maxsize=8)
def _private_key(pem: str) -> rsa.RSAPrivateKey:
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError):
        raise ImproperlyConfigured("WECHAT_PAY_PRIVATE_KEY is not an unencrypted PEM private key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ImproperlyConfigured("WECHAT_PAY_PRIVATE_KEY is not an RSA key")
    return key


@functools.lru_cache(maxsize=16)
def _public_key(pem: str) -> rsa.RSAPublicKey:
    try:
        if "CERTIFICATE" in pem:
            key = x509.load_pem_x509_certificate(pem.encode()).public_key()
        else:
            key = serialization.load_pem_public_key(pem.encode())
    except ValueError:
        raise ImproperlyConfigured("a WeChat Pay public key is neither a PEM public key nor a certificate") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise ImproperlyConfigured("a WeChat Pay public key is not an RSA key")
    return key


def _wechat_pay_key(serial: str) -> rsa.RSAPublicKey | None:
    """The key WeChat Pay signed with, by the serial it names; None for a stranger."""
    key_id = _setting("WECHAT_PAY_PUBLIC_KEY_ID")
    if key_id and serial == key_id:
        return _public_key(_pem_text(_required("WECHAT_PAY_PUBLIC_KEY"), "WECHAT_PAY_PUBLIC_KEY"))
    for cert_serial, value in dict(_setting("WECHAT_PAY_PLATFORM_CERTIFICATES", {})).items():
        if str(cert_serial).upper() == serial.upper():
            return _public_key(_pem_text(value, "WECHAT_PAY_PLATFORM_CERTIFICATES"))
    return None


def _api_v3_key() -> bytes:
    key = _required("WECHAT_PAY_API_V3_KEY").encode("utf-8")
    if len(key) != 32:
        raise ImproperlyConfigured("WECHAT_PAY_API_V3_KEY must be 32 bytes")
    return key


# --- Signatures ---------------------------------------------------------------------------


def _sign(message: str) -> str:
    key = _private_key(_pem_text(_required("WECHAT_PAY_PRIVATE_KEY"), "WECHAT_PAY_PRIVATE_KEY"))
    return base64.b64encode(key.sign(message.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())).decode()


def _nonce() -> str:
    return secrets.token_hex(16)  # 32 characters, WeChat Pay's limit


def _authorization(method: str, path_with_query: str, body: str) -> str:
    timestamp, nonce = str(int(time.time())), _nonce()
    signature = _sign(f"{method}\n{path_with_query}\n{timestamp}\n{nonce}\n{body}\n")
    return (
        f'{SCHEME} mchid="{_required("WECHAT_PAY_MCH_ID")}",nonce_str="{nonce}",signature="{signature}",'
        f'timestamp="{timestamp}",serial_no="{_required("WECHAT_PAY_CERT_SERIAL")}"'
    )


def _lower_headers(headers) -> dict[str, str]:
    """Header names lower-cased; Django's ``request.META`` spelling (HTTP_WECHATPAY_…) too."""
    try:
        items = list(headers.items())
    except (AttributeError, TypeError):
        return {}
    lowered = {}
    for name, value in items:
        if isinstance(name, str) and isinstance(value, str):
            name = name.lower()
            if name.startswith("http_"):
                name = name[5:].replace("_", "-")
            lowered[name] = value
    return lowered


def _signature_problem(headers, body: bytes) -> str | None:
    """None when ``body`` is WeChat Pay's, signed within the window; else the reason."""
    found = _lower_headers(headers)
    timestamp, nonce = found.get("wechatpay-timestamp"), found.get("wechatpay-nonce")
    signature, serial = found.get("wechatpay-signature"), found.get("wechatpay-serial")
    if not (timestamp and nonce and signature and serial):
        return "missing Wechatpay-Timestamp, -Nonce, -Signature or -Serial"
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        return "malformed Wechatpay-Timestamp"
    if abs(time.time() - int(timestamp)) > TIMESTAMP_TOLERANCE_SECONDS:
        return "Wechatpay-Timestamp is more than 5 minutes off"
    if len(nonce) > 64 or "\n" in nonce or len(signature) > 2048 or len(serial) > 128:
        return "malformed signature headers"
    key = _wechat_pay_key(serial)
    if key is None:
        return f"unknown Wechatpay-Serial {serial[:64]!r}"
    try:
        raw_signature = base64.b64decode(signature, validate=True)
    except ValueError:
        return "Wechatpay-Signature is not base64"
    message = f"{timestamp}\n{nonce}\n".encode() + body + b"\n"
    try:
        key.verify(raw_signature, message, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return "Wechatpay-Signature does not verify"
    return None


# --- Requests ------------------------------------------------------------------------------


@functools.cache
def _session() -> requests.Session:
    return requests.Session()  # one connection pool per process


def request(method: str, path: str, json: Mapping | None = None) -> dict | None:
    """Call ``path`` (``/v3/…``, query included), verify the answer and return its JSON
    object, or None for an empty answer (204)."""
    method = method.upper()
    url = str(_setting("WECHAT_PAY_API_BASE_URL", DEFAULT_BASE_URL)).rstrip("/") + path
    body = "" if json is None else jsonlib.dumps(json, ensure_ascii=False, separators=(",", ":"))
    headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
    if json is not None:
        headers["Content-Type"] = "application/json"
    prepared = requests.Request(method, url, data=body.encode("utf-8") or None, headers=headers).prepare()
    # Signed over the path as it goes on the wire, after requests' own quoting.
    prepared.headers["Authorization"] = _authorization(method, prepared.path_url, body)
    try:
        response = _session().send(
            prepared, timeout=float(_setting("PLATFORM_TIMEOUT_SECONDS", 5)), allow_redirects=False
        )
        content = response.content
    except requests.RequestException as exc:
        raise WeChatPayV3Unavailable(f"WeChat Pay did not answer: {exc.__class__.__name__}") from exc
    return _answer(response.status_code, response.headers, content)


def _answer(status: int, headers, body: bytes) -> dict | None:
    # Every 2xx must be signed; other answers are checked when they carry a signature
    # (WeChat Pay leaves some, such as 401 SIGN_ERROR, unsigned).
    if 200 <= status < 300 or "wechatpay-signature" in _lower_headers(headers):
        problem = _signature_problem(headers, body)
        if problem:
            raise WeChatPayV3BadResponse(f"HTTP {status} answer not verified: {problem}")
    try:
        payload = jsonlib.loads(body) if body else None
    except (ValueError, RecursionError):
        payload = None
    if 200 <= status < 300:
        if not body:
            return None
        if not isinstance(payload, dict):
            raise WeChatPayV3BadResponse(f"HTTP {status} answer is not a JSON object")
        return payload
    code = payload.get("code") if isinstance(payload, dict) else None
    message = payload.get("message") if isinstance(payload, dict) else None
    if status >= 500:
        raise WeChatPayV3Unavailable(
            f"WeChat Pay answered HTTP {status} {code or ''}".strip(),
            status=status,
            code=code if isinstance(code, str) else None,
        )
    if 400 <= status < 500 and isinstance(code, str) and code:
        raise WeChatPayV3Rejected(code, message if isinstance(message, str) else "", status)
    raise WeChatPayV3BadResponse(f"unexpected HTTP {status} answer")


# --- Notifications -------------------------------------------------------------------------


def notification_verify_and_decrypt(headers: Mapping, body: bytes) -> dict:
    """The notification WeChat Pay signed, with its ``resource`` decrypted:
    ``{"id", "create_time", "event_type", "resource_type", "summary", "original_type",
    "resource": {…}}``. Anything else raises ``WeChatPayV3BadNotification``."""

    def refuse(reason: str):
        raise WeChatPayV3BadNotification(reason)

    if isinstance(body, (bytearray, memoryview)):
        body = bytes(body)
    if not isinstance(body, bytes):
        refuse("body is not bytes")
    if len(body) > MAX_NOTIFICATION_BYTES:
        refuse("body too large")
    problem = _signature_problem(headers, body)
    if problem:
        refuse(problem)
    envelope = _json_object(body) or refuse("body is not a JSON object")
    resource = envelope.get("resource")
    if not isinstance(resource, dict):
        refuse("no resource object")
    if resource.get("algorithm") != "AEAD_AES_256_GCM":
        refuse("resource algorithm is not AEAD_AES_256_GCM")
    ciphertext, nonce = resource.get("ciphertext"), resource.get("nonce")
    associated_data = resource.get("associated_data") or ""
    if not (isinstance(ciphertext, str) and isinstance(nonce, str) and isinstance(associated_data, str)):
        refuse("resource ciphertext, nonce or associated_data is not text")
    try:
        sealed = base64.b64decode(ciphertext, validate=True)
        plaintext = AESGCM(_api_v3_key()).decrypt(nonce.encode(), sealed, associated_data.encode())
    except (ValueError, InvalidTag):
        refuse("resource does not decrypt (wrong key, nonce, associated_data or tampered ciphertext)")
    decrypted = _json_object(plaintext) or refuse("decrypted resource is not a JSON object")
    if not (isinstance(envelope.get("id"), str) and isinstance(envelope.get("event_type"), str)):
        refuse("id or event_type missing")
    fields = ("id", "create_time", "event_type", "resource_type", "summary")
    return {
        **{name: envelope.get(name) for name in fields},
        "original_type": resource.get("original_type"),
        "resource": decrypted,
    }


def _json_object(data: bytes) -> dict | None:
    try:
        value = jsonlib.loads(data)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) and value else None


# --- Calls the payments app uses ----------------------------------------------------------


def _fen(value: int, name: str) -> int:
    if type(value) is not int or value <= 0:
        raise ValueError(f"{name} must be a positive integer number of fen")
    return value


def _rfc3339(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        raise ValueError("time_expire must be an aware datetime")
    return moment.isoformat(timespec="seconds")


def _merchant(appid: str, sub_mchid: str | None) -> dict:
    """Who is paid: ourselves (direct), or a sub-merchant of ours as service provider."""
    mch_id = _required("WECHAT_PAY_MCH_ID")
    if sub_mchid:
        return {"sp_appid": appid, "sp_mchid": mch_id, "sub_mchid": sub_mchid}
    return {"appid": appid, "mchid": mch_id}


def _order(appid, sub_mchid, description, out_trade_no, amount_fen, notify_url, time_expire) -> dict:
    body = {
        **_merchant(appid, sub_mchid),
        "description": description,
        "out_trade_no": out_trade_no,
        "notify_url": notify_url,
        "amount": {"total": _fen(amount_fen, "amount_fen"), "currency": "CNY"},
    }
    if time_expire is not None:
        body["time_expire"] = _rfc3339(time_expire)
    return body


def _prepay(kind: str, sub_mchid: str | None, body: dict) -> dict:
    path = f"/v3/pay/partner/transactions/{kind}" if sub_mchid else f"/v3/pay/transactions/{kind}"
    return request("POST", path, json=body) or {}


def jsapi_prepay(
    *,
    description: str,
    out_trade_no: str,
    amount_fen: int,
    payer_openid: str,
    notify_url: str,
    time_expire: datetime | None,
    appid: str,
    sub_mchid: str | None = None,
) -> str:
    """The prepay_id for a JSAPI / mini-program payment; ``payer_openid`` is under ``appid``."""
    body = _order(appid, sub_mchid, description, out_trade_no, amount_fen, notify_url, time_expire)
    body["payer"] = {"sp_openid": payer_openid} if sub_mchid else {"openid": payer_openid}
    return _text_field(_prepay("jsapi", sub_mchid, body), "prepay_id")


def native_prepay(
    *,
    description: str,
    out_trade_no: str,
    amount_fen: int,
    notify_url: str,
    time_expire: datetime | None,
    appid: str,
    sub_mchid: str | None = None,
) -> str:
    """The code_url a shopper scans (Native payment)."""
    body = _order(appid, sub_mchid, description, out_trade_no, amount_fen, notify_url, time_expire)
    return _text_field(_prepay("native", sub_mchid, body), "code_url")


def _text_field(answer: dict, name: str) -> str:
    value = answer.get(name)
    if not isinstance(value, str) or not value:
        raise WeChatPayV3BadResponse(f"answer has no {name}")
    return value


def jsapi_pay_params(*, appid: str, prepay_id: str) -> dict:
    """What the front end hands to wx.requestPayment (timeStamp … paySign) or to
    WeixinJSBridge's getBrandWCPayRequest (which also wants appId)."""
    timestamp, nonce, package = str(int(time.time())), _nonce(), f"prepay_id={prepay_id}"
    return {
        "appId": appid,
        "timeStamp": timestamp,
        "nonceStr": nonce,
        "package": package,
        "signType": "RSA",
        "paySign": _sign(f"{appid}\n{timestamp}\n{nonce}\n{package}\n"),
    }


def _order_path(out_trade_no: str, sub_mchid: str | None) -> str:
    prefix = "/v3/pay/partner/transactions" if sub_mchid else "/v3/pay/transactions"
    return f"{prefix}/out-trade-no/{quote(out_trade_no, safe='')}"


def transaction_by_out_trade_no(out_trade_no: str, *, sub_mchid: str | None = None) -> dict:
    mch_id = _required("WECHAT_PAY_MCH_ID")
    query = f"sp_mchid={quote(mch_id)}&sub_mchid={quote(sub_mchid)}" if sub_mchid else f"mchid={quote(mch_id)}"
    return request("GET", f"{_order_path(out_trade_no, sub_mchid)}?{query}") or {}


def close(out_trade_no: str, *, sub_mchid: str | None = None) -> None:
    mch_id = _required("WECHAT_PAY_MCH_ID")
    body = {"sp_mchid": mch_id, "sub_mchid": sub_mchid} if sub_mchid else {"mchid": mch_id}
    request("POST", f"{_order_path(out_trade_no, sub_mchid)}/close", json=body)


def refund(
    *,
    out_trade_no: str,
    out_refund_no: str,
    refund_fen: int,
    total_fen: int,
    notify_url: str,
    reason: str = "",
    sub_mchid: str | None = None,
) -> dict:
    body = {
        "out_trade_no": out_trade_no,
        "out_refund_no": out_refund_no,
        "amount": {"refund": _fen(refund_fen, "refund_fen"), "total": _fen(total_fen, "total_fen"), "currency": "CNY"},
    }
    if notify_url:  # else WeChat Pay notifies the URL configured in its console, if any
        body["notify_url"] = notify_url
    if reason:
        body["reason"] = reason
    if sub_mchid:
        body["sub_mchid"] = sub_mchid
    return request("POST", "/v3/refund/domestic/refunds", json=body) or {}
