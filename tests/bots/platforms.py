"""WeChat's and Alipay's side of the conversation, for tests: they sign, encrypt and
post messages to our endpoints the way the platforms do, and read our answers.

The WeChat signature and safe-mode AES are written here from WeChat's documentation
with ``hashlib`` and ``cryptography``, not with wechatpy (which the endpoint uses),
so an endpoint that accepts these messages and whose replies decrypt here speaks
WeChat's protocol, not merely the SDK's idea of it.
"""

import base64
import hashlib
import os
import re
import secrets
import struct
import time
from pathlib import Path
from urllib.parse import urlencode

from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from defusedxml.ElementTree import fromstring as defused_fromstring

from tests.fakes.platform_server import rsa2_sign, rsa2_valid

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"

WECHAT_TOKEN = "o2o-test-token"
WECHAT_APP_ID = "wx4f5d2f9e1c3b7a60"
# 43 characters: base64 of 32 bytes without the trailing "=", as the console shows it.
WECHAT_AES_KEY = base64.b64encode(bytes(range(32))).decode().rstrip("=")
OPENID = "oia2TjjewbmiOUlr6X-1crbLOvLw"
ACCOUNT = "gh_7f083739789a"


def fixture_xml(path: str, **fields) -> str:
    """A recorded payload with some fields' values replaced (``Content="points"``)."""
    xml = (FIXTURES / path).read_text(encoding="utf-8")
    for name, value in fields.items():
        replacement = str(value) if isinstance(value, int) else f"<![CDATA[{value}]]>"
        element = f"<{name}>{replacement}</{name}>"
        xml, count = re.subn(rf"<{name}>.*?</{name}>", lambda _match, element=element: element, xml, flags=re.S)
        if not count:  # a field the recording does not have
            xml = xml.replace("</xml>", f"{element}</xml>").replace("</XML>", f"{element}</XML>")
    return xml


def xml_dict(xml: str | bytes) -> dict[str, str]:
    return {child.tag: child.text or "" for child in defused_fromstring(xml, forbid_dtd=True)}


# --- WeChat ---------------------------------------------------------------------------


def wechat_signature(*parts: str) -> str:
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def _aes_key(encoding_aes_key: str) -> bytes:
    return base64.b64decode(encoding_aes_key + "=")


def wechat_encrypt(xml: str, *, aes_key: str = WECHAT_AES_KEY, app_id: str = WECHAT_APP_ID) -> str:
    """Safe mode: AES-256-CBC (IV = the key's first 16 bytes) of 16 random bytes, the
    message length (4 bytes, network order), the message and the app id, PKCS#7-padded
    to 32 bytes; base64."""
    key, message = _aes_key(aes_key), xml.encode()
    plain = os.urandom(16) + struct.pack(">I", len(message)) + message + app_id.encode()
    padder = sym_padding.PKCS7(256).padder()
    padded = padder.update(plain) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(encryptor.update(padded) + encryptor.finalize()).decode()


def wechat_decrypt(encrypted: str, *, aes_key: str = WECHAT_AES_KEY) -> tuple[str, str]:
    """(message, app id) of a safe-mode payload."""
    key = _aes_key(aes_key)
    decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    padded = decryptor.update(base64.b64decode(encrypted)) + decryptor.finalize()
    unpadder = sym_padding.PKCS7(256).unpadder()
    plain = unpadder.update(padded) + unpadder.finalize()
    (length,) = struct.unpack(">I", plain[16:20])
    return plain[20:20 + length].decode(), plain[20 + length:].decode()


class WeChat:
    """Posts to /wechat/ as WeChat does, in plaintext or safe mode."""

    def __init__(self, client, *, safe: bool, token: str = WECHAT_TOKEN, aes_key: str = WECHAT_AES_KEY,
                 app_id: str = WECHAT_APP_ID, on_commit=None):
        self.client, self.safe, self.token, self.aes_key, self.app_id = client, safe, token, aes_key, app_id
        self._on_commit = on_commit  # django_capture_on_commit_callbacks: tasks run as after a real commit

    def query(self, *, encrypt: str = "", **overrides) -> dict[str, str]:
        timestamp, nonce = str(int(time.time())), secrets.token_hex(5)
        query = {"signature": wechat_signature(self.token, timestamp, nonce), "timestamp": timestamp,
                 "nonce": nonce, "openid": OPENID}
        if self.safe:
            query.update(encrypt_type="aes", msg_signature=wechat_signature(self.token, timestamp, nonce, encrypt))
        query.update(overrides)
        return query

    def body_and_query(self, xml: str, **overrides) -> tuple[str, dict[str, str]]:
        if not self.safe:
            return xml, self.query(**overrides)
        encrypt = wechat_encrypt(xml, aes_key=self.aes_key, app_id=self.app_id)
        body = f"<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
        return body, self.query(encrypt=encrypt, **overrides)

    def post_raw(self, body: str | bytes, query: dict[str, str]):
        data = body.encode() if isinstance(body, str) else body
        if self._on_commit is None:
            return self.client.post("/wechat/?" + urlencode(query), data=data, content_type="text/xml")
        with self._on_commit(execute=True):
            return self.client.post("/wechat/?" + urlencode(query), data=data, content_type="text/xml")

    def post(self, xml: str, **overrides):
        body, query = self.body_and_query(xml, **overrides)
        return self.post_raw(body, query)

    def reply(self, response) -> dict[str, str]:
        """The reply's fields ({} for "success"), decrypted and its signature checked in safe mode."""
        assert response.status_code == 200, (response.status_code, response.content)
        if response.content == b"success":
            return {}
        fields = xml_dict(response.content)
        if not self.safe:
            assert "Encrypt" not in fields
            return fields
        assert set(fields) == {"Encrypt", "MsgSignature", "TimeStamp", "Nonce"}, fields
        expected = wechat_signature(self.token, fields["TimeStamp"], fields["Nonce"], fields["Encrypt"])
        assert fields["MsgSignature"] == expected
        message, app_id = wechat_decrypt(fields["Encrypt"], aes_key=self.aes_key)
        assert app_id == self.app_id
        return xml_dict(message)

    def say(self, xml: str) -> str:
        """Post ``xml`` and return the reply's text ("" for none)."""
        fields = self.reply(self.post(xml))
        if fields:
            assert fields["MsgType"] == "text" and fields["ToUserName"] == xml_dict(xml)["FromUserName"]
        return fields.get("Content", "")


# --- Alipay ---------------------------------------------------------------------------


def alipay_form(biz_content: str, *, alipay_private_pem: str, service: str = "alipay.mobile.public.message.notify",
                sign: str | None = None) -> dict[str, str]:
    """A gateway POST: RSA2 over every parameter but sign and sign_type, sorted, k=v&…"""
    params = {"service": service, "biz_content": biz_content, "charset": "UTF-8", "sign_type": "RSA2"}
    content = "&".join(f"{k}={params[k]}" for k in sorted(params) if k not in ("sign", "sign_type"))
    params["sign"] = sign if sign is not None else rsa2_sign(content, alipay_private_pem)
    return params


def alipay_answer(body: bytes, *, app_public_pem: str) -> str:
    """The text inside <response> of a gateway answer, its signature checked."""
    text = body.decode()
    match = re.fullmatch(
        r'<\?xml version="1\.0" encoding="UTF-8"\?><alipay><response>(.*)</response>'
        r"<sign>([^<]+)</sign><sign_type>RSA2</sign_type></alipay>", text, flags=re.S,
    )
    assert match, text
    response, sign = match.groups()
    assert rsa2_valid(response, sign, app_public_pem), "the answer is not signed with the app's private key"
    return response


def alipay_post(client, params: dict[str, str], *, on_commit=None):
    data = urlencode(params)
    content_type = "application/x-www-form-urlencoded; charset=UTF-8"
    if on_commit is None:
        return client.post("/alipay/gateway/", data=data, content_type=content_type)
    with on_commit(execute=True):
        return client.post("/alipay/gateway/", data=data, content_type=content_type)
