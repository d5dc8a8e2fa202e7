"""The one place that builds WeChat, WeChat Pay and Alipay clients from settings.

Every outbound call goes to WECHAT_API_BASE_URL, WECHAT_PAY_API_BASE_URL or
ALIPAY_GATEWAY_URL (so tests and staging can point them at a local fake), gives up
after PLATFORM_TIMEOUT_SECONDS, and fails only with a ``PlatformError``:

- ``PlatformUnavailable`` (503): no answer in time, no connection, a 5xx;
- ``PlatformBadResponse`` (502): an answer we cannot parse or whose signature fails;
- ``PlatformRejected`` (502): the platform's own refusal, with its code in
  ``platform_code`` (WeChat errcode as text, WeChat Pay err_code, Alipay sub_code) so
  callers can map e.g. an invalid login code to a 4xx;
- ``PlatformBadNotification`` (400): an inbound notification that is malformed,
  carries a DTD, or is not signed by the platform.

Clients are built once per process for each combination of the settings they read,
so ``override_settings`` in a test simply yields another client. Callers check the
``*_configured()`` functions first and fall back to sandbox mode when they are false;
asking for a client of an unconfigured platform is ``ImproperlyConfigured``.
"""

import base64
import binascii
import functools
import hmac
import json
import logging
import time
import types
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit
from xml.etree.ElementTree import ParseError
from xml.parsers.expat import ExpatError
from zoneinfo import ZoneInfo

import requests
from alipay import AliPay
from alipay.exceptions import AliPayException
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as defused_fromstring
from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from wechatpy import WeChatClient
from wechatpy.client.api import WeChatWxa
from wechatpy.exceptions import InvalidSignatureException, WeChatClientException, WeChatException
from wechatpy.pay import WeChatPay
from wechatpy.pay.api import WeChatMicroPay, WeChatOrder, WeChatRedpack, WeChatTransfer, WeChatWithhold
from wechatpy.pay.utils import calculate_signature, calculate_signature_hmac
from wechatpy.session import SessionStorage

from core.errors import PlatformError

logger = logging.getLogger(__name__)

# The hosts the SDKs hard-code; URLs under them are rebased onto the configured bases.
WECHAT_DEFAULT_BASE = "https://api.weixin.qq.com/"
WECHAT_PAY_DEFAULT_BASE = "https://api.mch.weixin.qq.com/"

# spbill_create_ip when a caller does not pass the shopper's IP. wechatpy would
# otherwise resolve api.mch.weixin.qq.com by DNS on every call, to learn an address
# WeChat does not check; 127.0.0.1 is also what wechatpy itself falls back to.
FALLBACK_CLIENT_IP = "127.0.0.1"

# Alipay reads request timestamps as Beijing time, whatever the server's zone.
ALIPAY_TIMEZONE = ZoneInfo("Asia/Shanghai")


# --- Errors -----------------------------------------------------------------------


class PlatformUnavailable(PlatformError):
    """The platform did not answer in time."""

    code = "platform_unavailable"
    status = 503


class PlatformBadResponse(PlatformError):
    """The platform answered something we cannot use."""

    code = "platform_bad_response"
    status = 502


class PlatformRejected(PlatformError):
    """The platform refused the request."""

    code = "platform_rejected"
    status = 502

    def __init__(self, message: str = "", *, platform: str, platform_code: str, **kwargs):
        super().__init__(message, **kwargs)
        self.platform = platform
        self.platform_code = platform_code


class PlatformBadNotification(PlatformError):
    """The notification is malformed or not signed by the platform."""

    code = "platform_bad_notification"
    status = 400


def _transport_error(platform: str, method: str, url: str, exc: requests.RequestException) -> PlatformError:
    # Query strings carry app secrets and access tokens: log the path only, and
    # callers raise the result ``from None`` so the URL stays out of tracebacks too.
    logger.warning("%s %s %s failed: %s", platform, method.upper(), urlsplit(url).path, type(exc).__name__)
    if isinstance(exc, (requests.Timeout, requests.ConnectionError)):
        return PlatformUnavailable(f"{platform} did not answer")
    return PlatformBadResponse(f"{platform} answered something unusable")


def _http_status_error(platform: str, response: requests.Response | None) -> PlatformError:
    status = response.status_code if response is not None else 0
    logger.warning("%s answered HTTP %s", platform, status)
    if status >= 500:
        return PlatformUnavailable(f"{platform} is unavailable (HTTP {status})")
    return PlatformBadResponse(f"{platform} answered HTTP {status}")


def _rebase(url: str, *, default_base: str, base: str) -> str:
    """``url`` moved from the SDK's hard-coded host onto the configured base.

    A URL on any other host would leave the configured bases, so it is refused.
    """
    if url.startswith(default_base):
        url = base + url[len(default_base):]
    if not url.startswith(base):
        raise ValueError(f"{url.split('?')[0]} is outside the configured platform base {base}")
    return url


def _rebase_call(url_or_endpoint: str, kwargs: dict, *, default_base: str, base: str) -> str:
    """Moves a wechatpy call onto the configured base: a sub-API's own base (passed
    as ``api_base_url``) and an absolute URL alike. Returns the endpoint or URL."""
    if "api_base_url" in kwargs:
        kwargs["api_base_url"] = _rebase(kwargs["api_base_url"], default_base=default_base, base=base)
    if url_or_endpoint.startswith(("http://", "https://")):
        return _rebase(url_or_endpoint, default_base=default_base, base=base)
    return url_or_endpoint


def _with_slash(url: str) -> str:
    return url if url.endswith("/") else url + "/"


# --- WeChat (official account and mini-program) -------------------------------------


class DjangoCacheStorage(SessionStorage):
    """wechatpy's token storage in the Django cache, shared by every worker.

    Entries with a platform-given lifetime are dropped a few minutes early, so that
    no worker sends a token that expires on the way and every worker refreshes it
    from the one shared copy.
    """

    prefix = "wechatpy:"
    early_expiry_seconds = 300

    def get(self, key, default=None):
        return cache.get(self.prefix + key, default)

    def set(self, key, value, ttl=None):
        if ttl is not None:
            ttl = max(int(ttl) - self.early_expiry_seconds, 1)
        cache.set(self.prefix + key, value, ttl)

    def delete(self, key):
        cache.delete(self.prefix + key)


class _Wxa(WeChatWxa):
    def code_to_session(self, js_code):
        # jscode2session authenticates with appid and secret; wechatpy would fetch
        # an access token first, one more call that can only fail.
        return self._client.get_without_token(
            "sns/jscode2session",
            params={
                "appid": self.appid,
                "secret": self.secret,
                "js_code": js_code,
                "grant_type": "authorization_code",
            },
        )


class WeChatApiClient(WeChatClient):
    """A WeChatClient whose every call, the token fetch included, goes to ``api_root``."""

    wxa = _Wxa()

    def __init__(self, *, appid: str, secret: str, api_root: str, timeout: float, auto_retry: bool = True):
        # auto_retry: wechatpy fetches a new access token and calls again when WeChat
        # says the token is invalid (another system fetched one with our secret).
        super().__init__(appid, secret, session=DjangoCacheStorage(), timeout=timeout, auto_retry=auto_retry)
        self.api_root = _with_slash(api_root)
        self.API_BASE_URL = self.api_root + "cgi-bin/"

    @property
    def access_token(self) -> str:
        # The shared cache is the only clock: a token is valid while it is there.
        token = self.session.get(self.access_token_key)
        if not token:
            self.fetch_access_token()
            token = self.session.get(self.access_token_key)
        return token

    def fetch_access_token(self) -> dict:
        result = self.get_without_token(
            "cgi-bin/token", params={"grant_type": "client_credential", "appid": self.appid, "secret": self.secret}
        )
        token, expires_in = result.get("access_token"), result.get("expires_in", 7200)
        if not isinstance(token, str) or not token or not isinstance(expires_in, int):
            raise PlatformBadResponse("WeChat answered an access token request without a token")
        self.session.set(self.access_token_key, token, expires_in)
        return result

    def get_without_token(self, endpoint: str, *, params: dict) -> dict:
        """GET ``<api root><endpoint>`` for the calls authenticated by appid and secret
        (cgi-bin/token, sns/jscode2session, sns/oauth2/access_token), never retried."""
        url = self.api_root + endpoint
        try:
            response = self._http.get(url, params=params, timeout=self.timeout)
        except requests.RequestException as exc:
            raise _transport_error("WeChat", "GET", url, exc) from None
        if response.status_code != 200:
            raise _http_status_error("WeChat", response)
        result = self._decode_result(response)
        if not isinstance(result, dict):
            raise PlatformBadResponse("WeChat answered something that is not JSON")
        if result.get("errcode", 0) != 0:
            raise _wechat_rejected(result.get("errcode"), result.get("errmsg"))
        return result

    def _request(self, method, url_or_endpoint, **kwargs):
        url_or_endpoint = _rebase_call(url_or_endpoint, kwargs, default_base=WECHAT_DEFAULT_BASE, base=self.api_root)
        try:
            return super()._request(method, url_or_endpoint, **kwargs)
        except requests.RequestException as exc:
            raise _transport_error("WeChat", method, url_or_endpoint, exc) from None
        except WeChatClientException as exc:
            if exc.errcode is None:  # raised by wechatpy for an HTTP error status
                raise _http_status_error("WeChat", exc.response) from None
            raise _wechat_rejected(exc.errcode, exc.errmsg) from None

    def _decode_result(self, res):
        result = super()._decode_result(res)
        if isinstance(result, dict):
            return result
        # Media and mini-program codes legitimately answer binary; wechatpy hands the
        # response itself back for those. Anything else that is not a JSON object is
        # garbage, not something to pass on to a caller expecting a dict.
        content_type = res.headers.get("Content-Type", "").split(";")[0].strip().lower()
        binary = content_type.startswith(("image/", "audio/", "video/")) or content_type == "application/octet-stream"
        if result is res and binary:
            return res
        raise PlatformBadResponse("WeChat answered something that is not JSON")


def _wechat_rejected(errcode, errmsg) -> PlatformRejected:
    logger.info("WeChat refused a call: errcode %s %s", errcode, errmsg)
    return PlatformRejected(
        f"WeChat refused the request ({errcode}: {errmsg})", platform="wechat", platform_code=str(errcode)
    )


@functools.lru_cache(maxsize=8)
def _wechat_client(*, appid: str, secret: str, api_root: str, timeout: float, auto_retry: bool = True) -> WeChatApiClient:
    return WeChatApiClient(appid=appid, secret=secret, api_root=api_root, timeout=timeout, auto_retry=auto_retry)


def wechat_configured() -> bool:
    return bool(settings.WECHAT_APP_ID and settings.WECHAT_APP_SECRET)


def miniapp_configured() -> bool:
    return bool(settings.WECHAT_MINIAPP_ID and settings.WECHAT_MINIAPP_SECRET)


def wechat_client() -> WeChatApiClient:
    """The official account's client (WECHAT_APP_ID / WECHAT_APP_SECRET)."""
    if not wechat_configured():
        raise ImproperlyConfigured("WECHAT_APP_ID and WECHAT_APP_SECRET must be set to call WeChat")
    return _wechat_client(
        appid=settings.WECHAT_APP_ID,
        secret=settings.WECHAT_APP_SECRET,
        api_root=_with_slash(settings.WECHAT_API_BASE_URL),
        timeout=settings.PLATFORM_TIMEOUT_SECONDS,
    )


def miniapp_client() -> WeChatApiClient:
    """The mini-program's client (WECHAT_MINIAPP_ID / WECHAT_MINIAPP_SECRET)."""
    if not miniapp_configured():
        raise ImproperlyConfigured("WECHAT_MINIAPP_ID and WECHAT_MINIAPP_SECRET must be set to call WeChat")
    return _wechat_client(
        appid=settings.WECHAT_MINIAPP_ID,
        secret=settings.WECHAT_MINIAPP_SECRET,
        api_root=_with_slash(settings.WECHAT_API_BASE_URL),
        timeout=settings.PLATFORM_TIMEOUT_SECONDS,
    )


def wechat_user_info(openid: str, *, timeout: float | None = None) -> dict:
    """A follower's user info from the official account (cgi-bin/user/info):
    ``subscribe``, and ``unionid`` when the account is bound to an open platform account.

    With ``timeout``, for a caller that cannot wait (a reply to WeChat), the whole call
    gives up after about that many seconds with PlatformUnavailable, the access token's
    fetch included, and a token WeChat calls invalid is not fetched again and retried
    (PlatformRejected 40001): the caller hands the work to a task instead.
    """
    client = wechat_client()
    if timeout is None:
        return client.user.get(openid)
    deadline = time.monotonic() + timeout
    quick = _wechat_client(
        appid=client.appid, secret=client.secret, api_root=client.api_root, timeout=timeout, auto_retry=False
    )
    token = quick.access_token  # the shared one from the cache, or fetched within ``timeout``
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise PlatformUnavailable("WeChat did not answer in time")
    return quick.get("user/info", params={"openid": openid, "lang": "zh_CN", "access_token": token}, timeout=remaining)


def wechat_temporary_qr_create(*, scene: str, expire_seconds: int) -> dict:
    """A temporary parametric QR code of the official account (qrcode/create,
    QR_STR_SCENE): ``{"ticket", "expire_seconds", "url"}``; ``url`` is what the QR encodes
    (draw it locally: showqrcode lives outside the API base). ``scene`` is 1–64 characters."""
    if not 1 <= len(scene) <= 64:
        raise ValueError("a WeChat scene_str is 1 to 64 characters")
    answer = wechat_client().qrcode.create(
        {"expire_seconds": expire_seconds, "action_name": "QR_STR_SCENE", "action_info": {"scene": {"scene_str": scene}}}
    )
    if not isinstance(answer.get("url"), str) or not answer["url"]:
        raise PlatformBadResponse("WeChat answered qrcode/create without a url")
    return answer


# --- WeChat Pay (v2, XML) -------------------------------------------------------------


def _without_ip_lookup(method):
    """A copy of a wechatpy Pay method in which ``get_external_ip()`` answers
    FALLBACK_CLIENT_IP instead of resolving api.mch.weixin.qq.com by DNS.

    The library module stays untouched; only our subclasses use the copies. A
    ``client_ip`` the caller passes still wins, as in wechatpy.
    """
    namespace = {**method.__globals__, "get_external_ip": lambda: FALLBACK_CLIENT_IP}
    copy = types.FunctionType(method.__code__, namespace, method.__name__, method.__defaults__, method.__closure__)
    copy.__kwdefaults__ = method.__kwdefaults__
    return functools.update_wrapper(copy, method)


class _Order(WeChatOrder):
    create = _without_ip_lookup(WeChatOrder.create)


class _MicroPay(WeChatMicroPay):
    create = _without_ip_lookup(WeChatMicroPay.create)


class _Redpack(WeChatRedpack):
    send = _without_ip_lookup(WeChatRedpack.send)
    send_group = _without_ip_lookup(WeChatRedpack.send_group)


class _Transfer(WeChatTransfer):
    transfer = _without_ip_lookup(WeChatTransfer.transfer)


class _Withhold(WeChatWithhold):
    apply_deduct = _without_ip_lookup(WeChatWithhold.apply_deduct)


def _plain_xml_dict(xml: str | bytes) -> dict | None:
    """The children of the root of a flat XML document as a dict, or None when the
    text is not XML or declares a DTD (entity expansion, external references)."""
    try:
        root = defused_fromstring(xml, forbid_dtd=True)
    except (DefusedXmlException, ParseError):
        return None
    return {child.tag: child.text or "" for child in root}


# Endpoints whose success answer is a text file (a bill), not XML.
_WECHAT_PAY_TEXT_ENDPOINTS = ("/pay/downloadbill", "/pay/downloadfundflow")


class WeChatPayClient(WeChatPay):
    """A v2 WeChatPay that calls only ``api_root``, never looks up its own IP by DNS,
    verifies the signature of every answer, and refuses XML with a DTD."""

    order = _Order()
    micropay = _MicroPay()
    redpack = _Redpack()
    transfer = _Transfer()
    withhold = _Withhold()

    def __init__(
        self,
        *,
        appid: str,
        mch_id: str,
        api_key: str,
        api_root: str,
        timeout: float,
        mch_cert: str = "",
        mch_key: str = "",
    ):
        super().__init__(appid, api_key, mch_id, mch_cert=mch_cert or None, mch_key=mch_key or None, timeout=timeout)
        self.API_BASE_URL = _with_slash(api_root)

    def _request(self, method, url_or_endpoint, **kwargs):
        url_or_endpoint = _rebase_call(
            url_or_endpoint, kwargs, default_base=WECHAT_PAY_DEFAULT_BASE, base=self.API_BASE_URL
        )
        try:
            return super()._request(method, url_or_endpoint, **kwargs)
        except requests.RequestException as exc:
            raise _transport_error("WeChat Pay", method, url_or_endpoint, exc) from None
        except WeChatClientException as exc:  # raised by wechatpy for an HTTP error status
            raise _http_status_error("WeChat Pay", exc.response) from None

    def _handle_result(self, res):
        res.encoding = "utf-8"
        data = _plain_xml_dict(res.text)
        if data is None:
            if res.status_code == 200 and urlsplit(res.url).path.endswith(_WECHAT_PAY_TEXT_ENDPOINTS):
                return res.text
            raise PlatformBadResponse("WeChat Pay answered something that is not plain XML")
        if data.get("return_code") != "SUCCESS":
            # Communication failures (bad signature on our side, bad parameters) come
            # unsigned; trusting one can do no more harm than failing.
            code = data.get("err_code") or data.get("return_code") or "FAIL"
            raise _wechat_pay_rejected(code, data.get("return_msg"))
        if not self._signed_by_wechat(data):
            raise PlatformBadResponse("WeChat Pay's answer is not signed with our API key")
        if data.get("result_code") != "SUCCESS":
            raise _wechat_pay_rejected(data.get("err_code") or "FAIL", data.get("err_code_des"))
        return data

    def _signed_by_wechat(self, data: dict) -> bool:
        unsigned = {key: value for key, value in data.items() if key != "sign"}
        sign = data.get("sign", "")
        # An answer is signed the way its request was: MD5 unless we asked for HMAC-SHA256.
        expected = (calculate_signature(unsigned, self.api_key), calculate_signature_hmac(unsigned, self.api_key))
        return any(hmac.compare_digest(sign, candidate) for candidate in expected)

    def parse_payment_result(self, xml):
        if _plain_xml_dict(xml) is None:
            raise PlatformBadNotification("The payment notification is not plain XML")
        try:
            return super().parse_payment_result(xml)
        except (InvalidSignatureException, ValueError, KeyError):
            raise PlatformBadNotification("The payment notification is not signed with our API key") from None

    def parse_refund_notify_result(self, xml):
        if _plain_xml_dict(xml) is None:
            raise PlatformBadNotification("The refund notification is not plain XML")
        try:
            return super().parse_refund_notify_result(xml)
        # req_info is AES-encrypted with our key: anything that fails to decrypt,
        # unpad or parse did not come from WeChat Pay.
        except (WeChatException, ExpatError, ValueError, KeyError, TypeError):
            raise PlatformBadNotification("The refund notification cannot be decrypted with our API key") from None

    @classmethod
    def get_payment_data(cls, xml):
        if _plain_xml_dict(xml) is None:
            raise PlatformBadNotification("The payment notification is not plain XML")
        try:
            return super().get_payment_data(xml)
        except (ValueError, KeyError):
            raise PlatformBadNotification("The payment notification lacks its identifiers") from None


def _wechat_pay_rejected(code: str, message: str | None) -> PlatformRejected:
    logger.info("WeChat Pay refused a call: %s %s", code, message)
    return PlatformRejected(
        f"WeChat Pay refused the request ({code}: {message})", platform="wechat_pay", platform_code=code
    )


@functools.lru_cache(maxsize=8)
def _wechat_pay_client(**kwargs) -> WeChatPayClient:
    return WeChatPayClient(**kwargs)


def wechat_pay_configured(*, for_miniapp: bool = False) -> bool:
    appid = settings.WECHAT_MINIAPP_ID if for_miniapp else settings.WECHAT_APP_ID
    return bool(settings.WECHAT_PAY_MCH_ID and settings.WECHAT_PAY_API_KEY and appid)


def wechat_pay_client(*, for_miniapp: bool = False) -> WeChatPayClient:
    """WeChat Pay for payers of the official account, or of the mini-program: a
    JSAPI payment's openid must belong to the appid it is paid under."""
    if not wechat_pay_configured(for_miniapp=for_miniapp):
        app_setting = "WECHAT_MINIAPP_ID" if for_miniapp else "WECHAT_APP_ID"
        raise ImproperlyConfigured(
            f"WECHAT_PAY_MCH_ID, WECHAT_PAY_API_KEY and {app_setting} must be set to call WeChat Pay"
        )
    return _wechat_pay_client(
        appid=settings.WECHAT_MINIAPP_ID if for_miniapp else settings.WECHAT_APP_ID,
        mch_id=settings.WECHAT_PAY_MCH_ID,
        api_key=settings.WECHAT_PAY_API_KEY,
        mch_cert=settings.WECHAT_PAY_CERT_PATH,
        mch_key=settings.WECHAT_PAY_KEY_PATH,
        api_root=_with_slash(settings.WECHAT_PAY_API_BASE_URL),
        timeout=settings.PLATFORM_TIMEOUT_SECONDS,
    )


# --- Alipay (RSA2) --------------------------------------------------------------------


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
