"""WeChat: the official account's and the mini-program's clients (access tokens in
the shared cache, user info, QR codes …), all calling WECHAT_API_BASE_URL."""

import functools
import time

import requests
from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from wechatpy import WeChatClient
from wechatpy.client.api import WeChatWxa
from wechatpy.exceptions import WeChatClientException
from wechatpy.session import SessionStorage

from core.platforms.base import (
    PlatformBadResponse,
    PlatformRejected,
    PlatformUnavailable,
    _http_status_error,
    _rebase_call,
    _transport_error,
    _with_slash,
    logger,
)

# The host wechatpy hard-codes; URLs under it are rebased onto the configured base.
WECHAT_DEFAULT_BASE = "https://api.weixin.qq.com/"


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
