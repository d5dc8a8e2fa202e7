from payments.models.orders import Order, OrderEvent, OrderRefund, PaymentNotification, SandboxKey, SandboxTrade
from payments.models.sales import ApiRequest, Purchase, PurchaseRefund, Redemption, RedemptionRefund

__all__ = [
    "ApiRequest",
    "Order",
    "OrderEvent",
    "OrderRefund",
    "PaymentNotification",
    "Purchase",
    "PurchaseRefund",
    "Redemption",
    "RedemptionRefund",
    "SandboxKey",
    "SandboxTrade",
]
