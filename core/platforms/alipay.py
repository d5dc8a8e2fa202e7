"""Alipay (RSA2, through python-alipay-sdk): the client and ``alipay_call``, POSTing
to ALIPAY_GATEWAY_URL."""

import base64
import binascii
import functools
import json
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import requests
from alipay import AliPay
from alipay.exceptions import AliPayException
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from core.platforms.base import (
    PlatformBadResponse,
    PlatformRejected,
    _http_status_error,
    _transport_error,
    logger,
)

# Alipay reads request timestamps as Beijing time, whatever the server's zone.
ALIPAY_TIMEZONE = ZoneInfo("Asia/Shanghai")


class AliPayClient(AliPay):
    """An AliPay that POSTs to ``gateway`` and turns every failure into a PlatformError.

    python-alipay-sdk GETs the gateway with the whole signed request in the query
    string (urlopen, whatever the configured host) and returns business failures as
    ordinary dicts; here an error_response, or an answer whose ``code`` is not 10000,
    raises PlatformRejected.
    """

    def __init__(self, *, appid: str, app_private_key: str, alipay_public_key: str, gateway: str, timeout: float):
        super().__init__(
            appid=appid,
            app_private_key_string=app_private_key,
            alipay_public_key_string=alipay_public_key,
            sign_type="RSA2",
        )
        self._gateway = gateway
        self._timeout = timeout
        self._http = requests.Session()

    def build_body(self, method, biz_content=None, **kwargs):
        kwargs.setdefault("timestamp", datetime.now(ALIPAY_TIMEZONE).strftime("%Y-%m-%d %H:%M:%S"))
        return super().build_body(method, biz_content, **kwargs)

    def call(self, method: str, biz_content: dict | None = None, **params) -> dict:
        data = self.build_body(method, biz_content, **params)
        if biz_content is None:
            # Methods such as alipay.system.oauth.token take no biz_content at all.
            data.pop("biz_content")
        return self.verified_sync_response(data, method.replace(".", "_") + "_response")

    def verified_sync_response(self, data, response_type):
        try:
            response = self._http.post(
                self._gateway,
                data=self.sign_data(data).encode(),
                headers={"Content-Type": "application/x-www-form-urlencoded;charset=utf-8"},
                timeout=self._timeout,
            )
        except requests.RequestException as exc:
            raise _transport_error("Alipay", "POST", self._gateway, exc) from None
        if response.status_code != 200:
            raise _http_status_error("Alipay", response)
        return self._verify_and_return_sync_response(response.content.decode("utf-8", "replace"), response_type)

    def _verify_and_return_sync_response(self, raw_string, response_type):
        try:
            answer = json.loads(raw_string)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise PlatformBadResponse("Alipay answered something that is not JSON")
        # Alipay answers failures of the call itself (bad signature, bad app id,
        # invalid oauth code) under error_response instead of <method>_response.
        key = response_type if response_type in answer else "error_response"
        result = answer.get(key)
        if not isinstance(result, dict):
            raise PlatformBadResponse("Alipay answered without a response object")
        # The signature covers the exact text of that object, not a re-serialisation.
        signed_text = self._get_string_to_be_signed(raw_string, key)
        signed = "sign" in answer and self.verify_content(signed_text, answer["sign"])
        # Some successes (alipay.system.oauth.token) carry no code at all.
        failed = key == "error_response" or result.get("code", "10000") != "10000"
        if failed and (signed or "sign" not in answer):
            # Unsigned refusals happen (our own signature was rejected); trusting one
            # can do no more harm than failing.
            code = result.get("sub_code") or result.get("code") or "unknown"
            logger.info("Alipay refused %s: %s %s", response_type, code, result.get("sub_msg") or result.get("msg"))
            raise PlatformRejected(
                f"Alipay refused the request ({code}: {result.get('sub_msg') or result.get('msg')})",
                platform="alipay",
                platform_code=code,
            )
        if not signed:
            raise PlatformBadResponse("Alipay's answer is not signed with ALIPAY_PUBLIC_KEY")
        return result

    def sign_content(self, content: str) -> str:
        """RSA2 signature of ``content`` with the app private key (service-window replies)."""
        return self._sign(content)

    def verify_content(self, content: str, signature: str) -> bool:
        """Whether Alipay signed ``content``; false, never an exception, for garbage."""
        try:
            return self._verify(content, signature)
        except (ValueError, TypeError, AttributeError, binascii.Error):
            return False

    def verify(self, data, signature) -> bool:
        """Whether a notification's params (without ``sign``) were signed by Alipay.
        Never raises and never changes ``data``, unlike python-alipay-sdk's."""
        try:
            return super().verify(dict(data), signature)
        except (AliPayException, ValueError, TypeError, binascii.Error):
            return False


def _rsa_key_pem(value: str, *, setting: str) -> str:
    """PEM text from a setting holding PEM text (literal ``\\n`` allowed, as in .env
    files), a path to a PEM file, or the bare base64 that Alipay's console shows."""
    if "-----BEGIN" in value:
        return value.replace("\\n", "\n")
    try:
        return Path(value).read_text()
    except OSError:  # no such file, or a key far longer than any file name
        pass
    try:
        der = base64.b64decode(value, validate=True)
        try:
            return _private_pem(serialization.load_der_private_key(der, password=None))
        except ValueError:
            return _public_pem(serialization.load_der_public_key(der))
    except (ValueError, TypeError, UnsupportedAlgorithm):  # binascii.Error is a ValueError
        raise ImproperlyConfigured(f"{setting} is neither PEM text, a readable file nor a base64 RSA key") from None


def _private_pem(key) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _public_pem(key) -> str:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


@functools.lru_cache(maxsize=8)
def _alipay_client(
    *, appid: str, app_private_key: str, alipay_public_key: str, gateway: str, timeout: float
) -> AliPayClient:
    try:
        return AliPayClient(
            appid=appid,
            app_private_key=_rsa_key_pem(app_private_key, setting="ALIPAY_APP_PRIVATE_KEY"),
            alipay_public_key=_rsa_key_pem(alipay_public_key, setting="ALIPAY_PUBLIC_KEY"),
            gateway=gateway,
            timeout=timeout,
        )
    except (ValueError, IndexError, TypeError):
        raise ImproperlyConfigured("ALIPAY_APP_PRIVATE_KEY or ALIPAY_PUBLIC_KEY is not an RSA key") from None


def alipay_configured() -> bool:
    return bool(settings.ALIPAY_APP_ID and settings.ALIPAY_APP_PRIVATE_KEY and settings.ALIPAY_PUBLIC_KEY)


def alipay_client() -> AliPayClient:
    if not alipay_configured():
        raise ImproperlyConfigured(
            "ALIPAY_APP_ID, ALIPAY_APP_PRIVATE_KEY and ALIPAY_PUBLIC_KEY must be set to call Alipay"
        )
    return _alipay_client(
        appid=settings.ALIPAY_APP_ID,
        app_private_key=settings.ALIPAY_APP_PRIVATE_KEY,
        alipay_public_key=settings.ALIPAY_PUBLIC_KEY,
        gateway=settings.ALIPAY_GATEWAY_URL,
        timeout=settings.PLATFORM_TIMEOUT_SECONDS,
    )


def alipay_call(method: str, biz_content: dict | None = None, **params) -> dict:
    """Call any Alipay open API method and return its verified ``<method>_response``.

    e.g. ``alipay_call("alipay.system.oauth.token", grant_type="authorization_code",
    code=auth_code)`` or ``alipay_call("alipay.open.public.message.custom.send",
    {"to_user_id": user_id, "msg_type": "text", "text": {"content": "…"}})``.
    """
    return alipay_client().call(method, biz_content, **params)
