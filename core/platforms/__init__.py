"""The one place that builds WeChat, WeChat Pay and Alipay clients from settings.

Every outbound call goes to WECHAT_API_BASE_URL, WECHAT_PAY_API_BASE_URL or
ALIPAY_GATEWAY_URL (so tests and staging can point them at a local fake), gives up
after PLATFORM_TIMEOUT_SECONDS, and fails only with a ``PlatformError`` (the kinds are
in ``base``).

Clients are built once per process for each combination of the settings they read,
so ``override_settings`` in a test simply yields another client. Callers check the
``*_configured()`` functions first and fall back to sandbox mode when they are false;
asking for a client of an unconfigured platform is ``ImproperlyConfigured``.

One module per platform: ``wechat`` (official account and mini-program),
``wechat_pay`` (WeChat Pay v2 through wechatpy), ``wechat_pay_v3`` (WeChat Pay APIv3,
a client of our own: ``from core.platforms import wechat_pay_v3``) and ``alipay``;
``base`` holds what they share. Callers
import from the package: ``from core import platforms; platforms.wechat_client()``.
"""

from core.errors import PlatformError
from core.platforms.alipay import (
    ALIPAY_TIMEZONE,
    AliPayClient,
    alipay_call,
    alipay_client,
    alipay_configured,
)
from core.platforms.base import (
    PlatformBadNotification,
    PlatformBadResponse,
    PlatformRejected,
    PlatformUnavailable,
)
from core.platforms.wechat import (
    WECHAT_DEFAULT_BASE,
    DjangoCacheStorage,
    WeChatApiClient,
    miniapp_client,
    miniapp_configured,
    wechat_client,
    wechat_configured,
    wechat_temporary_qr_create,
    wechat_user_info,
)
from core.platforms.wechat_pay import (
    FALLBACK_CLIENT_IP,
    WECHAT_PAY_DEFAULT_BASE,
    WeChatPayClient,
    wechat_pay_client,
    wechat_pay_configured,
)

__all__ = [
    "ALIPAY_TIMEZONE",
    "FALLBACK_CLIENT_IP",
    "WECHAT_DEFAULT_BASE",
    "WECHAT_PAY_DEFAULT_BASE",
    "AliPayClient",
    "DjangoCacheStorage",
    "PlatformBadNotification",
    "PlatformBadResponse",
    "PlatformError",
    "PlatformRejected",
    "PlatformUnavailable",
    "WeChatApiClient",
    "WeChatPayClient",
    "alipay_call",
    "alipay_client",
    "alipay_configured",
    "miniapp_client",
    "miniapp_configured",
    "wechat_client",
    "wechat_configured",
    "wechat_pay_client",
    "wechat_pay_configured",
    "wechat_temporary_qr_create",
    "wechat_user_info",
]
