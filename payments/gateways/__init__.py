"""Payment gateways by name, and which one a new order of a channel goes through.

``wechat_v2`` (wechatpy, XML), ``wechat_v3`` (our own APIv3 client), ``alipay``
(python-alipay-sdk) and ``sandbox`` (the embedded demo's cashier) all implement
``base.Gateway``.
"""

from django.conf import settings

from core import platforms
from core.errors import ApplicationError
from core.platforms import wechat_pay_v3
from payments.gateways.base import (
    Acknowledgement,
    ChargeRequest,
    ChargeResult,
    Gateway,
    Notification,
    NotificationRejected,
    Payment,
    RefundRequest,
    RefundResult,
    RefundState,
    TradeState,
)

__all__ = [
    "Acknowledgement",
    "ChargeRequest",
    "ChargeResult",
    "ChannelUnavailable",
    "Gateway",
    "Notification",
    "NotificationRejected",
    "Payment",
    "RefundRequest",
    "RefundResult",
    "RefundState",
    "TradeState",
    "gateway_choose",
    "gateway_for",
]


class ChannelUnavailable(ApplicationError):
    """The mall does not take payments through this channel (no credentials configured)."""

    code = "channel_unavailable"


def gateway_for(name: str) -> Gateway:
    # Imported here: each gateway imports its SDK, and a process needs only those it uses.
    if name == "wechat_v2":
        from payments.gateways.wechat_v2 import WeChatPayV2Gateway

        return WeChatPayV2Gateway()
    if name == "wechat_v3":
        from payments.gateways.wechat_v3 import WeChatPayV3Gateway

        return WeChatPayV3Gateway()
    if name == "alipay":
        from payments.gateways.alipay import AlipayGateway

        return AlipayGateway()
    if name == "sandbox":
        from payments.gateways.sandbox import SandboxGateway

        return SandboxGateway()
    raise ValueError(f"no payment gateway {name!r}")


def gateway_choose(*, channel: str, client: str) -> str:
    """The gateway a new order on ``channel`` goes through, or ChannelUnavailable.

    WeChat: APIv3 once its key is set (new merchant numbers), else v2. The sandbox
    cashier exists only in sandbox mode (O2O_SANDBOX, which DEBUG off refuses).
    """
    if channel == "wechat":
        for_miniapp = client == "miniapp"
        appid = settings.WECHAT_MINIAPP_ID if for_miniapp else settings.WECHAT_APP_ID
        if wechat_pay_v3.configured() and appid:
            return "wechat_v3"
        if platforms.wechat_pay_configured(for_miniapp=for_miniapp):
            return "wechat_v2"
    elif channel == "alipay":
        if platforms.alipay_configured():
            return "alipay"
    elif channel == "sandbox":
        if settings.O2O_SANDBOX:
            return "sandbox"
    raise ChannelUnavailable(f"payments through {channel} are not available", extra={"channel": channel})


def channels_available(*, client: str) -> list[str]:
    """The channels a payer on ``client`` may choose now, best first."""
    available = []
    for channel in ("wechat", "alipay", "sandbox"):
        try:
            gateway_choose(channel=channel, client=client)
        except ChannelUnavailable:
            continue
        available.append(channel)
    return available
