"""Orders paid by scanning a shop's QR: create, pay (exactly once), close.

The state machine is in ``payments.models.orders``; every step here is a conditional
UPDATE from the state it leaves, in the same transaction as its ledger moves and its
``OrderEvent``. Points an order uses are held by the ledger when it is created,
captured for the shop's merchant when it is paid and released when it is closed; so
is a coupon it uses (``coupons.holds``).
"""

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import override
from django_q.tasks import async_task

from core.errors import ApplicationError, Conflict, NotFound, PlatformError
from core.platforms import PlatformRejected
from core.money import fen_to_yuan
from coupons import holds
from members import ledger, pushes, tiers
from members.identity import member_active, member_for_identity
from members.models import Identity, Lot, Member, Store, Visit
from members.services import visit_record
from payments import gateways
from payments.gateways import ChargeRequest, Payment, TradeState
from payments.models import Order, OrderEvent, OrderRefund

logger = logging.getLogger(__name__)

EVENT_ORDER_PAID = "order_paid"


class PointsOverAmount(ApplicationError):
    """The points used are worth more than the amount."""

    code = "points_exceed_amount"


class TooManyOpenOrders(ApplicationError):
    """Too many orders awaiting payment: pay or wait for them to expire."""

    code = "too_many_open_orders"
    status = 429


class PayerUnknown(ApplicationError):
    """The platform needs to know who pays (an openid, an Alipay buyer id) and we do not."""

    code = "payer_unknown"


class StoreNotFound(NotFound):
    """No such shop."""

    code = "store_not_found"


class OrderNotFound(NotFound):
    """No such order."""

    code = "order_not_found"


class OrderNotPayable(Conflict):
    """The order is not awaiting payment."""

    code = "order_not_payable"


class PaymentMismatch(Exception):
    """A verified payment that does not match its order: nothing changes."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Confirmation:
    outcome: str  # "processed", "duplicate", "ignored" (not a payment yet)
    order: Order


NOTIFY_ROUTES = {
    Order.Gateway.WECHAT_V2: "payments:notify-wechat",
    Order.Gateway.WECHAT_V3: "payments:notify-wechat-v3",
    Order.Gateway.ALIPAY: "payments:notify-alipay",
    Order.Gateway.SANDBOX: "payments:notify-sandbox",
}


def notify_url(gateway: str, site_url: str) -> str:
    """The absolute URL a platform sends ``gateway``'s notifications to ("" without a site URL)."""
    if not site_url or gateway not in NOTIFY_ROUTES:
        return ""
    return site_url + reverse(NOTIFY_ROUTES[gateway])


def new_out_trade_no(now: datetime) -> str:
    """Unique and not guessable: the day, then 80 random bits (29 characters, WeChat allows 32)."""
    return f"P{timezone.localtime(now):%Y%m%d}{secrets.token_hex(10)}"


def order_store(*, store_code: str) -> Store:
    store = Store.objects.select_related("merchant", "plaza").filter(code=store_code).first()
    if store is None:
        raise StoreNotFound(extra={"store_code": store_code})
    return store


def _event(order: Order, kind: str, *, now: datetime, from_status: str = "", to_status: str = "", operator=None, **detail) -> None:
    OrderEvent.objects.create(
        order=order, kind=kind, from_status=from_status, to_status=to_status, detail=detail, operator=operator, created_at=now,
    )


def _transition(order: Order, to_status: str, *, from_status: str, now: datetime, kind: str, operator=None, **fields) -> bool:
    """Move ``order`` from ``from_status`` to ``to_status`` if it is still there; log it."""
    moved = Order.objects.filter(pk=order.pk, status=from_status).update(status=to_status, **fields)
    if moved:
        for name, value in fields.items():
            setattr(order, name, value)
        order.status = to_status
        _event(order, kind, now=now, from_status=from_status, to_status=to_status, operator=operator)
    return bool(moved)


def _charge_of(order: Order, *, notify_url: str, return_url: str, client_ip: str) -> ChargeRequest:
    merchant = order.merchant
    return ChargeRequest(
        out_trade_no=order.out_trade_no, amount_fen=order.payable_fen, description=order.description,
        client=order.client, notify_url=notify_url, time_expire=order.expires_at, payer_id=order.payer_id,
        return_url=return_url, client_ip=client_ip, sub_merchant_id=order.sub_merchant_id,
        app_auth_token=merchant.alipay_app_auth_token if order.collector == Order.Collector.PARTNER else "",
    )


def order_create(
    *,
    store: Store,
    amount_fen: int,
    channel: str,
    client: str,
    site_url: str,
    member: Member | None = None,
    points_to_use: int = 0,
    coupon_code: str = "",
    payer_id: str = "",
    return_path: str = "",
    client_ip: str = "",
    order_ref: str = "",
    require_payer: bool = False,
    at: datetime | None = None,
) -> Order:
    """A new order at ``store``, its coupon and points held, its platform trade opened.

    ``member``'s coupon ``coupon_code`` takes its discount off first, then up to the rest
    is paid with ``points_to_use`` (the shopper's own session authorises both); an order
    without a member is a merchant's QR, whose payer is known when paid. ``site_url``
    (scheme and host) makes the notification URL and the absolute form of ``return_path``
    (where a web page comes back after paying; it may name ``{out_trade_no}``). Paid in
    full by points and coupon, it completes here. If the platform refuses to open the
    trade, the order is closed (coupon and points given back) and the PlatformError raised.
    """
    ledger._check_amount_fen(amount_fen)
    if points_to_use:
        ledger._check_points(points_to_use)
    if member is None and (points_to_use or coupon_code):
        raise ApplicationError("points and coupons need a signed-in shopper", code="shopper_required")
    merchant = store.merchant
    if not (merchant.is_active and store.is_active and store.plaza.is_active):
        raise ledger.MerchantNotActive(extra={"store_code": store.code})
    if member is not None and Order.objects.filter(member=member, status=Order.Status.CREATED).count() >= settings.ORDER_OPEN_MAX:
        # Each order opens a trade under the mall's merchant number: one shopper may not
        # use up the mall's quota at the platforms.
        raise TooManyOpenOrders(extra={"max_open_orders": settings.ORDER_OPEN_MAX})
    if amount_fen > ledger._merchant_max_sale_fen(merchant):
        raise ledger.SaleAmountOverLimit(extra={"max_sale_fen": ledger._merchant_max_sale_fen(merchant)})
    now = at or timezone.now()
    out_trade_no = new_out_trade_no(now)
    with transaction.atomic():
        coupon, discount_fen = None, 0
        if coupon_code:
            coupon, discount_fen = holds.coupon_hold(member=member, code=coupon_code, store=store, amount_fen=amount_fen,
                                                     points_to_use=points_to_use, order_no=out_trade_no, at=now)
        points_fen = points_to_use * settings.POINT_VALUE_FEN
        if points_fen > amount_fen - discount_fen:
            raise PointsOverAmount(extra={"max_points": (amount_fen - discount_fen) // settings.POINT_VALUE_FEN})
        payable_fen = amount_fen - discount_fen - points_fen
        if payable_fen:
            gateway_name = gateways.gateway_choose(channel=channel, client=client)
        else:
            channel = gateway_name = Order.Gateway.POINTS
        if require_payer and payable_fen and not payer_id:
            raise PayerUnknown(extra={"channel": channel})
        partner = (channel == Order.Channel.WECHAT and merchant.wechat_sub_mch_id) or (
            channel == Order.Channel.ALIPAY and merchant.alipay_app_auth_token
        )
        hold = None
        if points_to_use:
            hold = ledger.points_hold(
                member=member, store=store, points=points_to_use, idempotency_key=f"order:{out_trade_no}:hold",
                reference=out_trade_no, at=now,
            )
        order = Order.objects.create(
            out_trade_no=out_trade_no, merchant=merchant, store=store, member=member, channel=channel,
            gateway=gateway_name, client=client, amount_fen=amount_fen, points_used=points_to_use, points_fen=points_fen,
            coupon=coupon, coupon_code=coupon.code if coupon else "", coupon_discount_fen=discount_fen, payable_fen=payable_fen,
            collector=Order.Collector.PARTNER if partner else Order.Collector.MALL,
            sub_merchant_id=merchant.wechat_sub_mch_id if channel == Order.Channel.WECHAT else "",
            description=f"{store.name}"[:127], order_ref=order_ref, payer_id=payer_id, points_hold=hold,
            expires_at=now + timedelta(minutes=settings.ORDER_PAY_MINUTES), created_at=now,
        )
        _event(order, "created", now=now, to_status=Order.Status.CREATED, amount_fen=amount_fen, points=points_to_use)
        if payable_fen == 0:
            _paid(order, payment=None, now=now)
            return order
    try:
        result = gateways.gateway_for(gateway_name).charge(
            _charge_of(
                order, notify_url=notify_url(gateway_name, site_url), client_ip=client_ip,
                return_url=(site_url + return_path.format(out_trade_no=order.out_trade_no)) if return_path else "",
            )
        )
    except PlatformError as exc:
        logger.warning("opening trade %s at %s failed: %s", order.out_trade_no, gateway_name, exc)
        _close(order, now=timezone.now(), kind="charge_failed")
        raise
    # Unless it was paid (or closed) meanwhile: then there is nothing to pay with.
    if Order.objects.filter(pk=order.pk, status=Order.Status.CREATED).update(pay_params=result.pay_params):
        order.pay_params = result.pay_params
    return order


# --- paying ---------------------------------------------------------------------------


def _payer(order: Order, payment: Payment | None) -> Member | None:
    """Who earns: the order's member, else the payer the platform named (a member on the spot)."""
    if order.member_id is not None:
        return order.member
    if payment is None or not (payment.payer_id and payment.payer_channel):
        return None
    found = member_for_identity(
        channel=payment.payer_channel, external_id=payment.payer_id,
        join_channel=JOIN_CHANNELS.get(payment.payer_channel, Member.Channel.POS), plaza=order.store.plaza,
        refuse_banned=False,
    )
    return found.member


# A payer who becomes a member by paying joined through the app they paid in.
JOIN_CHANNELS = {
    Identity.Channel.WECHAT_OPENID: Member.Channel.WECHAT,
    Identity.Channel.MINIAPP_OPENID: Member.Channel.MINIAPP,
    Identity.Channel.ALIPAY_USER_ID: Member.Channel.ALIPAY,
    Identity.Channel.ALIPAY_OPEN_ID: Member.Channel.ALIPAY,
}


def _paid(order: Order, *, payment: Payment | None, now: datetime) -> None:
    """created → paid, and what it means: held coupon and points captured, points earned, a visit, one push."""
    fields = {"paid_at": (payment.paid_at if payment and payment.paid_at else now)}
    if payment is not None:
        fields.update(transaction_id=payment.transaction_id, payer_id=payment.payer_id or order.payer_id)
    member = _payer(order, payment)
    if member is not None and order.member_id is None:
        fields["member"] = member
    fields["pay_params"] = {}  # nothing left to pay with
    if not _transition(order, Order.Status.PAID, from_status=Order.Status.CREATED, now=now, kind="paid", **fields):
        raise OrderNotPayable(extra={"status": Order.objects.get(pk=order.pk).status})
    if order.coupon_id:
        holds.coupon_hold_capture(order=order, at=now)
    if order.points_hold_id:
        ledger.points_hold_capture(hold=order.points_hold, idempotency_key=f"order:{order.out_trade_no}:capture", at=now)
    if member is None:
        return
    earned = 0
    if order.payable_fen:
        # DESIGN.md's key: one payment earns once, whatever order or notification names it.
        key = f"pay:{order.channel}:{order.transaction_id}" if order.transaction_id else f"order:{order.out_trade_no}:earn"
        try:
            order.earn = ledger.points_earn(
                member=member, store=order.store, amount_fen=order.payable_fen, idempotency_key=key,
                reference=order.out_trade_no, member_present=True, at=now,
            )
        except (ledger.MemberNotActive, ledger.MerchantNotActive, ledger.SaleAmountOverLimit) as exc:
            # The money arrived and the payment stands; only the points are refused (a member
            # banned or a shop suspended since the order was made).
            logger.warning("order %s paid without points: %s", order.out_trade_no, exc.code)
            _event(order, "earn_refused", now=now, code=exc.code)
            return
        Order.objects.filter(pk=order.pk).update(earn=order.earn)
        earned = order.earn.points
    member = member_active(member)  # merged since the order was made: the member it lives on as
    visit_record(member=member, plaza=order.store.plaza, store=order.store, kind=Visit.Kind.PAYMENT, amount_fen=order.amount_fen, at=now)
    _push_paid(order, member=member, earned=earned)
    tiers.tier_spend_record(member=member, amount_fen=order.amount_fen, at=fields["paid_at"])


def _push_paid(order: Order, *, member: Member, earned: int) -> None:
    balance = ledger.member_points_balance(member=member)
    pending = sum(lot.amount for lot in order.earn.lots.all() if lot.status != Lot.Status.AVAILABLE) if order.earn_id else 0
    values = {
        "store": order.store.name, "amount": fen_to_yuan(order.amount_fen), "paid": fen_to_yuan(order.payable_fen),
        "points": earned, "used": order.points_used, "balance": balance, "pending": pending,
        "days": settings.MALL_POINTS_HOLD_DAYS, "coupon": fen_to_yuan(order.coupon_discount_fen),
    }
    with override(settings.LANGUAGE_CODE):
        title = _("支付成功，获得 %(points)s 积分") % values if earned else _("支付成功")
        body = _("在%(store)s支付 ¥%(amount)s") % values
        if order.coupon_discount_fen:
            body += _("（优惠券减 ¥%(coupon)s，积分抵扣 %(used)s，实付 ¥%(paid)s）") % values
        elif order.points_used:
            body += _("（积分抵扣 %(used)s，实付 ¥%(paid)s）") % values
        body += _("，获得 %(points)s 积分，当前积分 %(balance)s。") % values
        if pending:
            body += _("其中 %(pending)s 积分为商场奖励，%(days)s 天后可用。") % values
    pushes.push_send(
        member=member, event=EVENT_ORDER_PAID, event_key=f"{EVENT_ORDER_PAID}:{order.pk}", title=title, body=body,
        data={**values, "out_trade_no": order.out_trade_no, "amount_fen": order.amount_fen, "plaza": order.store.plaza.name},
    )


def order_payment_confirm(*, gateway: str, payment: Payment, at: datetime | None = None) -> Confirmation:
    """A platform says ``payment`` happened (a verified notification, or our query).

    Exactly once, however often and however concurrently it is told: the order row is
    locked and moved by a conditional update. A payment that does not match its order
    (amount, gateway, collecting account) raises PaymentMismatch and changes nothing.
    A payment for an order closed meanwhile is refunded whole, automatically.
    """
    now = at or timezone.now()
    with transaction.atomic():
        order = (
            Order.objects.select_for_update(of=("self",)).select_related("store__plaza", "merchant", "member", "points_hold")
            .filter(out_trade_no=payment.out_trade_no).first()
        )
        if order is None:
            raise PaymentMismatch("order_not_found")
        if order.gateway != gateway:
            raise PaymentMismatch("gateway_mismatch")
        if payment.state != TradeState.PAID:
            return Confirmation("ignored", order)
        if not payment.transaction_id:
            raise PaymentMismatch("transaction_id_missing")
        if payment.amount_fen != order.payable_fen:
            logger.warning("payment %s of %s fen for order %s of %s fen", payment.transaction_id, payment.amount_fen,
                           order.out_trade_no, order.payable_fen)
            raise PaymentMismatch("amount_mismatch")
        if gateway in (Order.Gateway.WECHAT_V2, Order.Gateway.WECHAT_V3) and payment.sub_merchant_id != order.sub_merchant_id:
            raise PaymentMismatch("merchant_mismatch")
        # Alipay's notifications name the seller; its query answers do not.
        if gateway == Order.Gateway.ALIPAY and order.collector == Order.Collector.MALL and settings.ALIPAY_SELLER_ID \
                and payment.seller_id and payment.seller_id != settings.ALIPAY_SELLER_ID:
            raise PaymentMismatch("merchant_mismatch")
        if order.transaction_id:
            if order.transaction_id != payment.transaction_id:
                raise PaymentMismatch("transaction_mismatch")
            return Confirmation("duplicate", order)
        if order.status == Order.Status.CREATED:
            _paid(order, payment=payment, now=now)
            return Confirmation("processed", order)
        if order.status == Order.Status.CLOSED:
            late_payment_refund(order=order, payment=payment, now=now)
            return Confirmation("processed", order)
        raise PaymentMismatch("order_state")


def late_payment_refund(*, order: Order, payment: Payment, now: datetime) -> OrderRefund:
    """A payment arrived for an order already closed: all of it goes back (once)."""
    refund, created = OrderRefund.objects.get_or_create(
        out_refund_no=f"{order.out_trade_no}L",
        defaults={
            "order": order, "kind": OrderRefund.Kind.LATE_PAYMENT, "amount_fen": 0, "cash_fen": payment.amount_fen,
            "transaction_id": payment.transaction_id, "reason": "paid after the order closed", "created_at": now,
        },
    )
    if created:
        logger.warning("order %s was paid (%s) after it closed; refunding %s fen", order.out_trade_no,
                       payment.transaction_id, payment.amount_fen)
        OrderEvent.objects.create(
            order=order, kind="late_payment", created_at=now,
            detail={"transaction_id": payment.transaction_id, "amount_fen": payment.amount_fen, "out_refund_no": refund.out_refund_no},
        )
        transaction.on_commit(lambda: _enqueue_submit(refund.pk))
    return refund


def _enqueue_submit(refund_id: int) -> None:
    async_task("payments.tasks.refund_submit", refund_id)


# --- closing --------------------------------------------------------------------------


def _close(order: Order, *, now: datetime, kind: str, operator=None) -> bool:
    with transaction.atomic():
        if not _transition(order, Order.Status.CLOSED, from_status=Order.Status.CREATED, now=now, kind=kind,
                           operator=operator, closed_at=now, pay_params={}):
            return False
        if order.coupon_id:
            holds.coupon_hold_release(order=order, at=now)
            Order.objects.filter(pk=order.pk).update(coupon=None)  # free to serve another order; coupon_code stays
        if order.points_hold_id:
            ledger.points_hold_release(hold=order.points_hold, idempotency_key=f"order:{order.out_trade_no}:release", at=now)
    return True


def order_close(*, order: Order, at: datetime | None = None, operator=None) -> Order:
    """Close an order nobody paid: ask the platform first (a payment may be on its way),
    close the trade there, then here (held points go back). A paid one is booked instead."""
    order = Order.objects.select_related("merchant", "store__plaza", "points_hold", "member").get(pk=order.pk)
    if order.status != Order.Status.CREATED:
        return order
    if order.gateway != Order.Gateway.POINTS:
        gateway = gateways.gateway_for(order.gateway)
        partner = {"sub_merchant_id": order.sub_merchant_id,
                   "app_auth_token": order.merchant.alipay_app_auth_token if order.collector == Order.Collector.PARTNER else ""}
        payment = gateway.query(out_trade_no=order.out_trade_no, **partner)
        if payment.state == TradeState.PENDING:
            try:
                gateway.close(out_trade_no=order.out_trade_no, **partner)
            except PlatformRejected:
                # Paid meanwhile, or closed by another worker a moment ago: ask again.
                payment = gateway.query(out_trade_no=order.out_trade_no, **partner)
                if payment.state == TradeState.PENDING:
                    raise
        if payment.state == TradeState.PAID:
            order_payment_confirm(gateway=order.gateway, payment=payment, at=at)
            return Order.objects.get(pk=order.pk)
    _close(order, now=at or timezone.now(), kind="closed", operator=operator)
    return Order.objects.get(pk=order.pk)


def orders_stale(*, now: datetime | None = None, limit: int = 200) -> list[int]:
    """Orders past their time to pay, oldest first."""
    return list(
        Order.objects.filter(status=Order.Status.CREATED, expires_at__lte=now or timezone.now())
        .order_by("expires_at").values_list("pk", flat=True)[:limit]
    )


def order_reconcile(*, order: Order, at: datetime | None = None) -> str:
    """Ask the platform about an unpaid order whose notification never came: book a
    payment, close what is past its time. Returns what happened."""
    if order.status != Order.Status.CREATED or order.gateway == Order.Gateway.POINTS:
        return "skipped"
    now = at or timezone.now()
    gateway = gateways.gateway_for(order.gateway)
    payment = gateway.query(
        out_trade_no=order.out_trade_no, sub_merchant_id=order.sub_merchant_id,
        app_auth_token=order.merchant.alipay_app_auth_token if order.collector == Order.Collector.PARTNER else "",
    )
    if payment.state == TradeState.PAID:
        return order_payment_confirm(gateway=order.gateway, payment=payment, at=now).outcome
    if order.expires_at <= now:
        order_close(order=order, at=now)
        return "closed"
    return "pending"


# --- reads ----------------------------------------------------------------------------


def order_for_member(*, member: Member, out_trade_no: str) -> Order:
    """The member's order, or one of a member merged into it."""
    order = Order.objects.select_related("store", "merchant", "member").filter(out_trade_no=out_trade_no).first()
    if order is not None and order.member_id is not None and member_active(order.member).pk != member.pk:
        order = None
    if order is None or order.member_id is None:
        raise OrderNotFound()
    return order


def order_for_merchant(*, merchant, out_trade_no: str) -> Order:
    order = Order.objects.select_related("store", "merchant").filter(merchant=merchant, out_trade_no=out_trade_no).first()
    if order is None:
        raise OrderNotFound()
    return order


