"""A local fake of WeChat Pay APIv3's server side, for tests.

It rides on the threaded fake in ``platform_server`` (its ``/v3/…`` paths collide with
nothing there) and plays both of WeChat Pay's roles, written from WeChat Pay's
documentation with ``cryptography`` alone, not with the client under test:

- the API: it checks each request's ``Authorization`` (RSA-SHA256 over
  ``METHOD\\nPATH?QUERY\\nTIMESTAMP\\nNONCE\\nBODY\\n`` with our merchant public key),
  answering 401 ``SIGN_ERROR`` unsigned when it fails, and signs its answers with
  WeChat Pay's own key (``TIMESTAMP\\nNONCE\\nBODY\\n``, ``Wechatpay-*`` headers);
- the notifier: ``notification(...)`` builds a signed APIv3 notification whose
  ``resource`` is AEAD_AES_256_GCM under the APIv3 key.

    fake = FakeWeChatPayV3(platform_server, wechat_pay_v3_keys())
    fake.answer("/v3/pay/transactions/jsapi", lambda request: fake.reply({"prepay_id": "wx1"}))
    with override_settings(**fake.settings()):
        …

Every helper takes overrides (another key, serial or timestamp; a body other than the
one signed) so a test can make WeChat Pay misbehave in one precise way.
"""

import base64
import json
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tests.fakes.platform_server import FakePlatformServer, RecordedRequest, Reply, RsaKeyPair, rsa_key_pair

SCHEME = "WECHATPAY2-SHA256-RSA2048"


@dataclass(frozen=True)
class WeChatPayV3Keys:
    mch_id: str
    api_v3_key: str  # 32 ASCII characters, as the merchant console sets it
    merchant: RsaKeyPair  # our API key pair: we sign requests, the fake checks them
    merchant_serial: str
    wechat_pay: RsaKeyPair  # WeChat Pay's: it signs answers and notifications
    public_key_id: str

    def settings(self) -> dict[str, str]:
        return {
            "WECHAT_PAY_MCH_ID": self.mch_id,
            "WECHAT_PAY_API_V3_KEY": self.api_v3_key,
            "WECHAT_PAY_PRIVATE_KEY": self.merchant.private_pem,
            "WECHAT_PAY_CERT_SERIAL": self.merchant_serial,
            "WECHAT_PAY_PUBLIC_KEY": self.wechat_pay.public_pem,
            "WECHAT_PAY_PUBLIC_KEY_ID": self.public_key_id,
        }


def wechat_pay_v3_keys(*, mch_id: str = "1900000109") -> WeChatPayV3Keys:
    return WeChatPayV3Keys(
        mch_id=mch_id,
        api_v3_key=secrets.token_hex(16),
        merchant=rsa_key_pair(),
        merchant_serial=secrets.token_hex(20).upper(),
        wechat_pay=rsa_key_pair(),
        public_key_id="PUB_KEY_ID_0119" + "".join(secrets.choice("0123456789") for _ in range(28)),
    )


def rsa_sha256_sign(message: bytes, private_pem: str) -> str:
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    return base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()


def rsa_sha256_valid(message: bytes, signature: str, public_pem: str) -> bool:
    key = serialization.load_pem_public_key(public_pem.encode())
    try:
        key.verify(base64.b64decode(signature), message, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


# --- Answers ---------------------------------------------------------------------------


def signed_headers(
    body: bytes,
    keys: WeChatPayV3Keys,
    *,
    timestamp: int | None = None,
    nonce: str | None = None,
    serial: str | None = None,
    private_pem: str | None = None,
) -> dict[str, str]:
    """WeChat Pay's signature headers over ``body``."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    nonce = nonce or secrets.token_hex(16)
    message = f"{timestamp}\n{nonce}\n".encode() + body + b"\n"
    return {
        "Wechatpay-Timestamp": str(timestamp),
        "Wechatpay-Nonce": nonce,
        "Wechatpay-Signature": rsa_sha256_sign(message, private_pem or keys.wechat_pay.private_pem),
        "Wechatpay-Serial": serial or keys.public_key_id,
        "Wechatpay-Signature-Type": SCHEME,
    }


def signed_reply(
    keys: WeChatPayV3Keys,
    payload: Mapping | None = None,
    *,
    status: int = 200,
    sent_body: bytes | None = None,
    **signing,
) -> Reply:
    """An answer signed by WeChat Pay; ``payload`` None is an empty body (204 style).
    ``sent_body`` replaces the body after signing (a tampered answer); ``signing``
    takes ``signed_headers``' overrides."""
    body = b"" if payload is None else json.dumps(payload, ensure_ascii=False).encode("utf-8")
    headers = signed_headers(body, keys, **signing)
    return Reply(status=status, body=body if sent_body is None else sent_body, headers=headers)


# --- Requests --------------------------------------------------------------------------


def authorization_params(request: RecordedRequest) -> dict[str, str] | None:
    header = request.headers.get("authorization", "")
    if not header.startswith(SCHEME + " "):
        return None
    return dict(re.findall(r'(\w+)="([^"]*)"', header[len(SCHEME) + 1 :]))


def request_signature_valid(request: RecordedRequest, keys: WeChatPayV3Keys) -> bool:
    """The check WeChat Pay makes before it executes a request. The URL is rebuilt
    from the recorded path and query, which is exact for the plain ``mchid=…`` style
    queries APIv3 uses."""
    params = authorization_params(request)
    if params is None or params.get("mchid") != keys.mch_id or params.get("serial_no") != keys.merchant_serial:
        return False
    url = request.path
    if request.query:
        url += "?" + urlencode([(name, value) for name, values in request.query.items() for value in values])
    message = f"{request.method}\n{url}\n{params.get('timestamp')}\n{params.get('nonce_str')}\n{request.text}\n"
    return rsa_sha256_valid(message.encode("utf-8"), params.get("signature", ""), keys.merchant.public_pem)


class FakeWeChatPayV3:
    def __init__(self, server: FakePlatformServer, keys: WeChatPayV3Keys):
        self.server, self.keys = server, keys

    def settings(self) -> dict[str, str]:
        return {**self.server.settings(), **self.keys.settings()}

    def reply(self, payload: Mapping | None = None, *, status: int = 200, **overrides) -> Reply:
        return signed_reply(self.keys, payload, status=status, **overrides)

    def answer(self, path: str, respond: Callable[[RecordedRequest], Reply]) -> None:
        """Answer ``path`` with ``respond(request)`` once the request's signature checks out."""

        def script(request: RecordedRequest) -> Reply:
            if not request_signature_valid(request, self.keys):
                body = {"code": "SIGN_ERROR", "message": "签名错误"}
                return Reply(status=401, body=json.dumps(body, ensure_ascii=False))
            return respond(request)

        self.server.script(path, script)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        return self.server.requests_to(path)


# --- Notifications ---------------------------------------------------------------------


def encrypt_resource(
    plaintext: bytes, api_v3_key: str, *, nonce: str | None = None, associated_data: str = "transaction"
) -> dict[str, str]:
    """A ``resource`` block: AES-256-GCM, the tag appended to the ciphertext, base64."""
    nonce = nonce or secrets.token_hex(6)  # 12 characters, as WeChat Pay sends
    sealed = AESGCM(api_v3_key.encode()).encrypt(nonce.encode(), plaintext, associated_data.encode())
    return {
        "original_type": "transaction",
        "algorithm": "AEAD_AES_256_GCM",
        "ciphertext": base64.b64encode(sealed).decode(),
        "associated_data": associated_data,
        "nonce": nonce,
    }


def notification_body(resource: object, *, event_type: str = "TRANSACTION.SUCCESS") -> bytes:
    envelope = {
        "id": "EV-" + secrets.token_hex(8),
        "create_time": "2025-06-08T10:34:56+08:00",
        "resource_type": "encrypt-resource",
        "event_type": event_type,
        "summary": "支付成功",
        "resource": resource,  # any JSON value: tests send malformed ones
    }
    return json.dumps(envelope, ensure_ascii=False).encode("utf-8")


def notification(
    keys: WeChatPayV3Keys, transaction: Mapping, *, event_type: str = "TRANSACTION.SUCCESS", **signing
) -> tuple[dict[str, str], bytes]:
    """The headers and body WeChat Pay POSTs to a notify_url for ``transaction``."""
    plaintext = json.dumps(transaction, ensure_ascii=False).encode("utf-8")
    body = notification_body(encrypt_resource(plaintext, keys.api_v3_key), event_type=event_type)
    return signed_headers(body, keys, **signing), body
