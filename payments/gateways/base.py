"""The one interface every payment platform is spoken through.

A gateway is a pure translator (STYLE.md, Saleor's payment interface): dataclasses
in, one platform call, dataclasses out. It never touches a model; the order services
in ``payments.orders`` decide what a verified ``Payment`` means for an order.

Calls to a platform fail with a ``core.platforms.PlatformError`` (unavailable, bad
response, rejected). An inbound notification that is not the platform's own, or not
for us, fails ``parse_notification`` with ``NotificationRejected`` and a stable reason.
"""

import enum
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime


class TradeState(enum.StrEnum):
    """What a platform says about a trade, in our words."""

    PENDING = "pending"  # created, not (yet) paid: NOTPAY, USERPAYING, WAIT_BUYER_PAY
    PAID = "paid"  # the shopper's money arrived: SUCCESS, REFUND, TRADE_SUCCESS, TRADE_FINISHED
    CLOSED = "closed"  # will never be paid: CLOSED, REVOKED, PAYERROR, TRADE_CLOSED (unpaid)
    NOT_FOUND = "not_found"  # the platform never heard of it (the shopper never opened the payment)


class RefundState(enum.StrEnum):
    SUCCEEDED = "succeeded"
    PENDING = "pending"  # accepted, the money is on its way (WeChat APIv3 PROCESSING)
    FAILED = "failed"  # refused or abnormal: nothing was refunded


class NotificationRejected(Exception):
    """Not a notification we can act on: forged, tampered, stale, for another merchant, malformed."""

    def __init__(self, reason: str, message: str = ""):
        super().__init__(message or reason)
        self.reason = reason


@dataclass(frozen=True)
class ChargeRequest:
    out_trade_no: str
    amount_fen: int  # what the platform collects (the order's payable_fen), > 0
    description: str
    client: str  # an Order.Client value: jsapi, miniapp, native, wap, cashier
    notify_url: str  # absolute, public
    time_expire: datetime  # aware; the platform refuses payment after it
    payer_id: str = ""  # JSAPI / mini-program openid, Alipay buyer user_id or open_id
    return_url: str = ""  # where a web page returns after paying (wap, cashier)
    client_ip: str = ""
    sub_merchant_id: str = ""  # WeChat partner mode: the tenant's sub_mchid
    app_auth_token: str = ""  # Alipay partner mode: the tenant's app_auth_token


@dataclass(frozen=True)
class ChargeResult:
    """``pay_params`` is handed to the shopper's app (or the POS) as is. Its keys, by client:

    - WeChat jsapi / miniapp: ``appId``, ``timeStamp``, ``nonceStr``, ``package``,
      ``signType``, ``paySign`` (wx.requestPayment / getBrandWCPayRequest);
    - WeChat native, Alipay native (precreate): ``code_url`` (shown as a QR);
    - Alipay wap: ``pay_url`` (the page to open; the H5 page redirects to it);
    - Alipay miniapp (alipay.trade.create): ``trade_no`` (my.tradePay);
    - sandbox cashier: ``cashier_url`` (a path on this site).
    """

    pay_params: dict


@dataclass(frozen=True)
class Payment:
    """One trade as the platform tells it (a verified notification or a query's answer)."""

    out_trade_no: str
    state: TradeState
    transaction_id: str = ""
    amount_fen: int | None = None  # what the shopper paid
    payer_id: str = ""
    # members.models.Identity.Channel of payer_id ("" when unknown): the payer becomes
    # the member of an order that had none (a QR on the POS screen).
    payer_channel: str = ""
    sub_merchant_id: str = ""  # WeChat partner mode: who collected
    seller_id: str = ""  # Alipay: who collected
    paid_at: datetime | None = None


@dataclass(frozen=True)
class RefundRequest:
    out_trade_no: str
    out_refund_no: str
    refund_fen: int
    total_fen: int  # the trade's amount (WeChat wants both)
    reason: str = ""
    notify_url: str = ""
    transaction_id: str = ""
    sub_merchant_id: str = ""
    app_auth_token: str = ""


@dataclass(frozen=True)
class RefundResult:
    out_refund_no: str
    state: RefundState
    refund_id: str = ""
    refund_fen: int | None = None
    failure: str = ""


@dataclass(frozen=True)
class Notification:
    """A verified notification: about a payment, or about a refund."""

    payment: Payment | None = None
    refund: RefundResult | None = None
    out_trade_no: str = ""


@dataclass(frozen=True)
class Acknowledgement:
    """The answer a platform expects, in its own format."""

    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict = field(default_factory=dict)


class Gateway(ABC):
    name: str  # an Order.Gateway value

    @abstractmethod
    def charge(self, request: ChargeRequest) -> ChargeResult: ...

    @abstractmethod
    def query(self, *, out_trade_no: str, sub_merchant_id: str = "", app_auth_token: str = "") -> Payment: ...

    @abstractmethod
    def close(self, *, out_trade_no: str, sub_merchant_id: str = "", app_auth_token: str = "") -> None:
        """Close an unpaid trade at the platform; a trade it never heard of is closed already."""

    @abstractmethod
    def refund(self, request: RefundRequest) -> RefundResult: ...

    @abstractmethod
    def refund_query(
        self, *, out_trade_no: str, out_refund_no: str, sub_merchant_id: str = "", app_auth_token: str = ""
    ) -> RefundResult: ...

    @abstractmethod
    def parse_notification(self, *, headers: Mapping[str, str], body: bytes) -> Notification:
        """Verify and read an inbound notification, or raise NotificationRejected."""

    @abstractmethod
    def acknowledge(self, *, ok: bool, message: str = "") -> Acknowledgement:
        """``ok``: processed (or a duplicate); else the platform should retry or give up."""
