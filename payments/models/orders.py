"""Orders a shopper pays by scanning a shop's QR, their refunds, and every raw
notification the payment platforms sent.

An order moves along one state machine, each step a conditional UPDATE from the state
it leaves (so two racing steps cannot both win) and an ``OrderEvent`` row::

    created ──► paid ──► partially_refunded ──► refunded
       └──────► closed        └─────────────────────┘

Points never live here: the order points at the ledger transactions that moved them.
"""

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils.translation import gettext_lazy

from members.models import Member, Merchant, PointsTransaction, Store


class Order(models.Model):
    class Status(models.TextChoices):
        CREATED = "created", gettext_lazy("Awaiting payment")
        PAID = "paid", gettext_lazy("Paid")
        PARTIALLY_REFUNDED = "partially_refunded", gettext_lazy("Partially refunded")
        REFUNDED = "refunded", gettext_lazy("Refunded")
        CLOSED = "closed", gettext_lazy("Closed (not paid)")

    class Channel(models.TextChoices):
        WECHAT = "wechat", gettext_lazy("WeChat Pay")
        ALIPAY = "alipay", gettext_lazy("Alipay")
        SANDBOX = "sandbox", gettext_lazy("Sandbox cashier")
        POINTS = "points", gettext_lazy("Points only")

    class Gateway(models.TextChoices):
        WECHAT_V2 = "wechat_v2", gettext_lazy("WeChat Pay v2")
        WECHAT_V3 = "wechat_v3", gettext_lazy("WeChat Pay APIv3")
        ALIPAY = "alipay", gettext_lazy("Alipay")
        SANDBOX = "sandbox", gettext_lazy("Sandbox cashier")
        # Paid entirely with points: no platform is involved.
        POINTS = "points", gettext_lazy("Points only")

    class Client(models.TextChoices):
        JSAPI = "jsapi", gettext_lazy("WeChat in-app page (JSAPI)")
        MINIAPP = "miniapp", gettext_lazy("Mini-program")
        NATIVE = "native", gettext_lazy("QR shown to the shopper (Native / precreate)")
        WAP = "wap", gettext_lazy("Mobile web page")
        CASHIER = "cashier", gettext_lazy("Sandbox cashier")

    class Collector(models.TextChoices):
        MALL = "mall", gettext_lazy("The mall's own account (settled to the tenant later)")
        PARTNER = "partner", gettext_lazy("The tenant's sub-merchant account (service-provider mode)")

    out_trade_no = models.CharField(gettext_lazy("order number"), max_length=32, unique=True)
    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="orders", verbose_name=gettext_lazy("merchant"))
    store = models.ForeignKey(Store, on_delete=models.PROTECT, related_name="orders", verbose_name=gettext_lazy("store"))
    # Empty for an order a merchant's POS shows as a QR: the payer becomes known (and a
    # member, if new) when the platform says who paid.
    member = models.ForeignKey(
        Member, on_delete=models.PROTECT, null=True, blank=True, related_name="orders", verbose_name=gettext_lazy("member"),
    )
    channel = models.CharField(gettext_lazy("payment channel"), max_length=12, choices=Channel.choices)
    gateway = models.CharField(gettext_lazy("gateway"), max_length=12, choices=Gateway.choices)
    client = models.CharField(gettext_lazy("paid from"), max_length=12, choices=Client.choices)
    status = models.CharField(gettext_lazy("status"), max_length=20, choices=Status.choices, default=Status.CREATED)
    # All in fen: amount = payable + points_fen + coupon_discount_fen.
    amount_fen = models.BigIntegerField(gettext_lazy("amount"))
    points_used = models.BigIntegerField(gettext_lazy("points used"), default=0)
    points_fen = models.BigIntegerField(gettext_lazy("paid with points"), default=0)
    coupon_code = models.CharField(gettext_lazy("coupon code"), max_length=64, blank=True)
    coupon_discount_fen = models.BigIntegerField(gettext_lazy("coupon discount"), default=0)
    # The member's coupon this order uses: held while unpaid (coupons.holds).
    coupon = models.OneToOneField(
        "coupons.Coupon", on_delete=models.PROTECT, null=True, blank=True, related_name="order", verbose_name=gettext_lazy("coupon"),
    )
    payable_fen = models.BigIntegerField(gettext_lazy("payable in cash"))
    # Of amount_fen, what refunds took back or are taking back (pending ones reserve theirs).
    refunded_fen = models.BigIntegerField(gettext_lazy("refunded"), default=0)
    points_hold = models.OneToOneField(
        PointsTransaction, on_delete=models.PROTECT, null=True, blank=True, related_name="+",
        verbose_name=gettext_lazy("points held (ledger)"),
    )
    earn = models.OneToOneField(
        PointsTransaction, on_delete=models.PROTECT, null=True, blank=True, related_name="+",
        verbose_name=gettext_lazy("points earned (ledger)"),
    )
    collector = models.CharField(gettext_lazy("collected by"), max_length=8, choices=Collector.choices, default=Collector.MALL)
    # The tenant's WeChat sub-merchant id when it collects itself (partner mode).
    sub_merchant_id = models.CharField(gettext_lazy("sub-merchant id"), max_length=32, blank=True)
    description = models.CharField(gettext_lazy("description"), max_length=127)
    order_ref = models.CharField(
        gettext_lazy("POS order number"), max_length=64, blank=True,
        help_text=gettext_lazy("The POS's own order number (merchant QR orders)."),
    )
    payer_id = models.CharField(
        gettext_lazy("payer"), max_length=128, blank=True, help_text=gettext_lazy("openid / Alipay user id or open_id that paid."),
    )
    transaction_id = models.CharField(
        gettext_lazy("platform transaction number"), max_length=64, blank=True,
        help_text=gettext_lazy("The platform's transaction number."),
    )
    # What the shopper's app needs to pay (JSAPI parameters, a QR's URL, a cashier link).
    pay_params = models.JSONField(gettext_lazy("payment parameters"), default=dict, blank=True)
    expires_at = models.DateTimeField(gettext_lazy("expires at"))
    paid_at = models.DateTimeField(gettext_lazy("paid at"), null=True, blank=True)
    closed_at = models.DateTimeField(gettext_lazy("closed at"), null=True, blank=True)
    created_at = models.DateTimeField(gettext_lazy("created at"), db_index=True)

    class Meta:
        verbose_name = gettext_lazy("order")
        verbose_name_plural = gettext_lazy("orders")
        permissions = [("refund_order", "Can refund paid orders")]
        indexes = [
            models.Index(fields=["expires_at"], name="order_awaiting_payment", condition=Q(status="created")),
            models.Index(fields=["store", "created_at"]),
            models.Index(fields=["member", "created_at"]),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(amount_fen__gt=0), name="order_amount_positive"),
            models.CheckConstraint(
                condition=Q(payable_fen__gte=0) & Q(points_used__gte=0) & Q(points_fen__gte=0) & Q(coupon_discount_fen__gte=0),
                name="order_parts_not_negative",
            ),
            models.CheckConstraint(
                condition=Q(amount_fen=F("payable_fen") + F("points_fen") + F("coupon_discount_fen")), name="order_parts_add_up"
            ),
            models.CheckConstraint(
                condition=Q(refunded_fen__gte=0) & Q(refunded_fen__lte=F("amount_fen")), name="order_refunds_within_amount"
            ),
            models.CheckConstraint(condition=Q(points_used=0) | Q(points_hold__isnull=False), name="order_points_are_held"),
            models.UniqueConstraint(
                fields=["gateway", "transaction_id"], condition=~Q(transaction_id=""), name="order_transaction_unique"
            ),
            models.UniqueConstraint(fields=["merchant", "order_ref"], condition=~Q(order_ref=""), name="order_ref_unique"),
        ]

    def __str__(self):
        return self.out_trade_no


class OrderEvent(models.Model):
    """Every step of an order, in order: the audit trail of its state machine."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="events", verbose_name=gettext_lazy("order"))
    kind = models.CharField(gettext_lazy("event"), max_length=32)
    from_status = models.CharField(gettext_lazy("from status"), max_length=20, blank=True)
    to_status = models.CharField(gettext_lazy("to status"), max_length=20, blank=True)
    detail = models.JSONField(gettext_lazy("detail"), default=dict, blank=True)
    operator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+",
        verbose_name=gettext_lazy("operator"),
    )
    created_at = models.DateTimeField(gettext_lazy("at"))

    class Meta:
        verbose_name = gettext_lazy("order event")
        verbose_name_plural = gettext_lazy("order events")
        ordering = ["created_at", "id"]

    def __str__(self):
        return f"{self.order_id} {self.kind}"


class OrderRefund(models.Model):
    """Money (and points) going back for an order.

    A refund reserves its share of the order when it is asked for (``Order.refunded_fen``),
    is sent to the platform, and moves points only when the platform says it succeeded.
    A payment that arrived for a closed order is refunded whole (``kind`` late_payment).
    """

    class Kind(models.TextChoices):
        REQUESTED = "requested", gettext_lazy("Requested (staff or merchant)")
        LATE_PAYMENT = "late_payment", gettext_lazy("Paid after the order closed")

    class Status(models.TextChoices):
        PENDING = "pending", gettext_lazy("Sent, awaiting the platform")
        SUCCEEDED = "succeeded", gettext_lazy("Succeeded")
        FAILED = "failed", gettext_lazy("Failed")

    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="refunds", verbose_name=gettext_lazy("order"))
    out_refund_no = models.CharField(gettext_lazy("refund number"), max_length=64, unique=True)
    kind = models.CharField(gettext_lazy("kind"), max_length=16, choices=Kind.choices, default=Kind.REQUESTED)
    status = models.CharField(gettext_lazy("status"), max_length=12, choices=Status.choices, default=Status.PENDING)
    # Of the order's amount; split into cash back (of payable_fen) and points back.
    amount_fen = models.BigIntegerField(gettext_lazy("amount"))
    cash_fen = models.BigIntegerField(gettext_lazy("cash back"))
    points = models.BigIntegerField(gettext_lazy("points back"), default=0)
    transaction_id = models.CharField(
        gettext_lazy("platform transaction number"), max_length=64, blank=True,
        help_text=gettext_lazy("The payment refunded (late payments)."),
    )
    refund_id = models.CharField(
        gettext_lazy("platform refund number"), max_length=64, blank=True, help_text=gettext_lazy("The platform's refund number."),
    )
    reason = models.CharField(gettext_lazy("reason"), max_length=200, blank=True)
    failure = models.CharField(gettext_lazy("failure"), max_length=200, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+",
        verbose_name=gettext_lazy("requested by"),
    )
    # The merchant API's Idempotency-Key: a retry finds this refund (and its state now).
    idempotency_key = models.CharField(gettext_lazy("idempotency key"), max_length=200, blank=True)
    earn_reversal = models.OneToOneField(
        PointsTransaction, on_delete=models.PROTECT, null=True, blank=True, related_name="+",
        verbose_name=gettext_lazy("earned points taken back (ledger)"),
    )
    points_return = models.OneToOneField(
        PointsTransaction, on_delete=models.PROTECT, null=True, blank=True, related_name="+",
        verbose_name=gettext_lazy("points given back (ledger)"),
    )
    created_at = models.DateTimeField(gettext_lazy("created at"), db_index=True)
    finished_at = models.DateTimeField(gettext_lazy("finished at"), null=True, blank=True)

    class Meta:
        verbose_name = gettext_lazy("order refund")
        verbose_name_plural = gettext_lazy("order refunds")
        constraints = [
            models.CheckConstraint(
                # Cash or points go back; or neither, for the rest of an order a coupon paid
                # (its amount refunded gives the coupon back: payments.refunds).
                condition=Q(amount_fen__gte=0) & Q(cash_fen__gte=0) & Q(points__gte=0)
                & (Q(cash_fen__gt=0) | Q(points__gt=0) | Q(amount_fen__gt=0)),
                name="order_refund_refunds_something",
            ),
            models.CheckConstraint(condition=Q(cash_fen__lte=F("amount_fen")) | Q(kind="late_payment"), name="order_refund_cash_within_amount"),
            models.UniqueConstraint(
                fields=["order", "idempotency_key"], condition=~Q(idempotency_key=""), name="order_refund_key_unique"
            ),
        ]

    def __str__(self):
        return self.out_refund_no


class PaymentNotification(models.Model):
    """A notification exactly as a platform (or someone claiming to be one) sent it."""

    class Outcome(models.TextChoices):
        PROCESSED = "processed", gettext_lazy("Processed")
        DUPLICATE = "duplicate", gettext_lazy("Already processed")
        REJECTED = "rejected", gettext_lazy("Rejected (forged, mismatched, malformed or unknown)")
        ERROR = "error", gettext_lazy("Failed; the platform will retry")

    gateway = models.CharField(gettext_lazy("gateway"), max_length=12, choices=Order.Gateway.choices)
    kind = models.CharField(gettext_lazy("kind"), max_length=16, blank=True, help_text=gettext_lazy("payment or refund, once verified."))
    outcome = models.CharField(gettext_lazy("outcome"), max_length=12, choices=Outcome.choices)
    reason = models.CharField(gettext_lazy("reason"), max_length=64, blank=True)
    order = models.ForeignKey(
        Order, on_delete=models.SET_NULL, null=True, blank=True, related_name="notifications", verbose_name=gettext_lazy("order"),
    )
    out_trade_no = models.CharField(gettext_lazy("order number"), max_length=64, blank=True, db_index=True)
    transaction_id = models.CharField(gettext_lazy("platform transaction number"), max_length=64, blank=True)
    # The body, cut at NOTIFY_MAX_BYTES (longer ones are refused anyway), and the headers
    # that carry signatures.
    body = models.TextField(gettext_lazy("body"))
    headers = models.JSONField(gettext_lazy("headers"), default=dict, blank=True)
    remote_addr = models.CharField(gettext_lazy("sender's address"), max_length=64, blank=True)
    received_at = models.DateTimeField(gettext_lazy("received at"), db_index=True)

    class Meta:
        verbose_name = gettext_lazy("payment notification")
        verbose_name_plural = gettext_lazy("payment notifications")
        indexes = [models.Index(fields=["gateway", "received_at"])]

    def __str__(self):
        return f"{self.gateway} {self.outcome} {self.out_trade_no}"


class SandboxTrade(models.Model):
    """The sandbox cashier's side of an order: what a payment platform would keep.

    Only the sandbox gateway reads or writes it; the rest of the project knows the
    sandbox through that gateway and its signed notifications, as any other platform.
    """

    class Status(models.TextChoices):
        NOTPAY = "NOTPAY", gettext_lazy("Not paid")
        SUCCESS = "SUCCESS", gettext_lazy("Paid")
        CLOSED = "CLOSED", gettext_lazy("Closed")

    out_trade_no = models.CharField(gettext_lazy("order number"), max_length=64, unique=True)
    transaction_id = models.CharField(gettext_lazy("platform transaction number"), max_length=64, unique=True)
    description = models.CharField(gettext_lazy("description"), max_length=127)
    amount_fen = models.BigIntegerField(gettext_lazy("amount"))
    refunded_fen = models.BigIntegerField(gettext_lazy("refunded"), default=0)
    # {out_refund_no: fen}: a refund asked twice is made once.
    refunds = models.JSONField(gettext_lazy("refunds"), default=dict, blank=True)
    status = models.CharField(gettext_lazy("status"), max_length=8, choices=Status.choices, default=Status.NOTPAY)
    notify_url = models.CharField(gettext_lazy("notify URL"), max_length=300)
    return_url = models.CharField(gettext_lazy("return URL"), max_length=300, blank=True)
    expires_at = models.DateTimeField(gettext_lazy("expires at"))
    paid_at = models.DateTimeField(gettext_lazy("paid at"), null=True, blank=True)
    created_at = models.DateTimeField(gettext_lazy("created at"))

    class Meta:
        verbose_name = gettext_lazy("sandbox trade")
        verbose_name_plural = gettext_lazy("sandbox trades")
        constraints = [
            models.CheckConstraint(
                condition=Q(refunded_fen__gte=0) & Q(refunded_fen__lte=F("amount_fen")), name="sandbox_refunds_within_amount"
            ),
        ]

    def __str__(self):
        return self.out_trade_no


class SandboxKey(models.Model):
    """The secret the sandbox cashier signs its notifications with, made by a migration."""

    secret = models.CharField(gettext_lazy("secret"), max_length=64)
    created_at = models.DateTimeField(gettext_lazy("created at"), auto_now_add=True)

    class Meta:
        verbose_name = gettext_lazy("sandbox signing key")
        verbose_name_plural = gettext_lazy("sandbox signing keys")
