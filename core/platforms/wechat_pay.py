"""WeChat Pay v2 (XML, through wechatpy), calling WECHAT_PAY_API_BASE_URL only."""

import functools
import hmac
import types
from urllib.parse import urlsplit
from xml.etree.ElementTree import ParseError
from xml.parsers.expat import ExpatError

import requests
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as defused_fromstring
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from wechatpy.exceptions import InvalidSignatureException, WeChatClientException, WeChatException
from wechatpy.pay import WeChatPay
from wechatpy.pay.api import WeChatMicroPay, WeChatOrder, WeChatRedpack, WeChatTransfer, WeChatWithhold
from wechatpy.pay.utils import calculate_signature, calculate_signature_hmac

from core.platforms.base import (
    PlatformBadNotification,
    PlatformBadResponse,
    PlatformRejected,
    _http_status_error,
    _rebase_call,
    _transport_error,
    _with_slash,
    logger,
)

# The host wechatpy hard-codes; URLs under it are rebased onto the configured base.
WECHAT_PAY_DEFAULT_BASE = "https://api.mch.weixin.qq.com/"

# spbill_create_ip when a caller does not pass the shopper's IP. wechatpy would
# otherwise resolve api.mch.weixin.qq.com by DNS on every call, to learn an address
# WeChat does not check; 127.0.0.1 is also what wechatpy itself falls back to.
FALLBACK_CLIENT_IP = "127.0.0.1"


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
