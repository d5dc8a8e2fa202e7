"""What the platform modules share: the errors every outbound call fails with, and
the helpers that keep calls on the configured bases.

A call fails only with a ``PlatformError``:

- ``PlatformUnavailable`` (503): no answer in time, no connection, a 5xx;
- ``PlatformBadResponse`` (502): an answer we cannot parse or whose signature fails;
- ``PlatformRejected`` (502): the platform's own refusal, with its code in
  ``platform_code`` (WeChat errcode as text, WeChat Pay err_code, Alipay sub_code) so
  callers can map e.g. an invalid login code to a 4xx;
- ``PlatformBadNotification`` (400): an inbound notification that is malformed,
  carries a DTD, or is not signed by the platform.
"""

import logging
from urllib.parse import urlsplit

import requests

from core.errors import PlatformError

# One logger for the package, named as before the split ("core.platforms").
logger = logging.getLogger(__package__)


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
