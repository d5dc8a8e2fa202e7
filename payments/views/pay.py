"""H5 pages: a shop's payment page (/m/pay/<store_code>/, its static QR) and the
shopper's order page. The shopper enters the amount, may use one of their coupons
accepted at the shop and pay part with points, and pays with WeChat Pay (inside WeChat),
Alipay (elsewhere) or, in the demo, the sandbox cashier; the order page follows the
order until the notification has booked it."""

import logging
import re

from django.conf import settings
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods

from core.errors import ApplicationError
from core.links import public_base
from core.money import fen_to_yuan, yuan_to_fen
from coupons import holds
from coupons.models import Coupon, CouponTemplate
from coupons.services import coupon_discount_fen
from members import ledger
from members.models import Identity
from members.views import _not_found, member_required
from payments import gateways, orders
from payments.models import Order
from payments.views.notify import client_ip

logger = logging.getLogger(__name__)


def _client(request) -> str:
    """JSAPI inside WeChat's browser; a mobile web page anywhere else."""
    return Order.Client.JSAPI if "MicroMessenger" in request.headers.get("User-Agent", "") else Order.Client.WAP


def _channels(client: str) -> list[str]:
    # WeChat Pay from a web page only inside WeChat (JSAPI); Alipay's wap pay outside it.
    wanted = {Order.Client.JSAPI: ("wechat", "sandbox"), Order.Client.WAP: ("alipay", "sandbox")}[client]
    return [channel for channel in gateways.channels_available(client=client) if channel in wanted]


def _whole_number(raw: str) -> int | None:
    raw = (raw or "").strip() or "0"
    if not raw.isascii() or not raw.isdigit() or len(raw) > 12:
        return None
    return int(raw)


_YUAN = re.compile(r"[0-9]{1,9}(?:\.[0-9]{1,2})?", re.ASCII)


def _amount_fen(raw: str) -> int | None:
    """Yuan as a shopper types them: "68", "68.5", "68.50"; nothing else (no exponents)."""
    raw = (raw or "").strip()
    if not _YUAN.fullmatch(raw):
        return None
    return yuan_to_fen(raw)


def _coupon_choice(coupon: Coupon) -> dict:
    """A coupon as the pay page offers it, with what its script needs to show the discount."""
    template = coupon.template
    values = {"face": fen_to_yuan(template.face_value_fen), "min": fen_to_yuan(template.min_spend_fen),
              "percent": f"{template.percent_off_bp / 100:g}", "cap": fen_to_yuan(template.max_discount_fen or 0)}
    if template.kind == CouponTemplate.Kind.CASH_OFF:
        summary = _("¥%(face)s off ¥%(min)s or more") % values
    elif template.kind == CouponTemplate.Kind.PERCENT_OFF:
        summary = (_("%(percent)s%% off, at most ¥%(cap)s") if template.max_discount_fen else _("%(percent)s%% off")) % values
    else:
        summary = _("¥%(face)s voucher") % values
    if not template.combines_with_points:
        summary += _(" (not with points)")
    return {
        "code": coupon.code, "name": template.name, "summary": summary, "valid_until": coupon.valid_until,
        "kind": template.kind, "face_fen": template.face_value_fen, "min_fen": template.min_spend_fen,
        "bp": template.percent_off_bp, "cap_fen": template.max_discount_fen or 0,
    }


@require_http_methods(["GET", "POST"])
def pay_page(request, store_code):
    """A shop that does not exist is said so before anyone is asked to log in."""
    try:
        store = orders.order_store(store_code=store_code)
    except ApplicationError:
        store = None
    if store is None or not (store.is_active and store.merchant.is_active and store.plaza.is_active):
        return _not_found(request, _("This shop's code is not valid. Please ask the shop for help."))
    return _pay(request, store)


@member_required
def _pay(request, store):
    member = request.member
    client = _client(request)
    channels = _channels(client)
    coupons = holds.coupons_for_store(member=member, store=store)
    context = {
        "store": store, "member": member, "channels": channels,
        "points_balance": ledger.member_points_spendable(member=member),
        "coupons": [_coupon_choice(coupon) for coupon in coupons],
        "coupon_texts": {"off": _("Coupon: −¥%(discount)s, left to pay ¥%(payable)s"),
                         "below": _("Spend ¥%(min)s or more to use this coupon.")},
        "amount": request.POST.get("amount", ""), "points": request.POST.get("points", ""),
        "coupon": request.POST.get("coupon", ""), "point_value_fen": settings.POINT_VALUE_FEN,
    }
    if request.method == "GET":
        return render(request, "payments/pay.html", context)
    amount_fen = _amount_fen(request.POST.get("amount"))
    points = _whole_number(request.POST.get("points"))
    channel = request.POST.get("channel", "")
    coupon_code = context["coupon"].strip()
    chosen = next((coupon for coupon in coupons if coupon.code == coupon_code), None)
    if amount_fen is None or amount_fen <= 0:
        context["error"] = _("Enter the amount in yuan, e.g. 68 or 68.50.")
    elif points is None:
        context["error"] = _("Enter the points to use, a whole number.")
    elif channel not in channels and amount_fen > points * settings.POINT_VALUE_FEN + (
        coupon_discount_fen(template=chosen.template, amount_fen=amount_fen) if chosen else 0
    ):
        context["error"] = _("Choose how to pay.")
    if "error" in context:
        return render(request, "payments/pay.html", context, status=400)
    payer_id = ""
    if channel == "wechat":
        payer_id = member.identities.filter(channel=Identity.Channel.WECHAT_OPENID).values_list("external_id", flat=True).first() or ""
        if not payer_id:
            context["error"] = _("Open this page in WeChat from the mall's official account to pay with WeChat Pay.")
            return render(request, "payments/pay.html", context, status=400)
    try:
        order = orders.order_create(
            store=store, member=member, amount_fen=amount_fen, points_to_use=points, coupon_code=coupon_code,
            channel=channel or "sandbox",
            client=Order.Client.CASHIER if channel == "sandbox" else client, site_url=public_base(request),
            payer_id=payer_id, client_ip=client_ip(request),
            return_path=reverse("pay:order", args=["OUT_TRADE_NO"]).replace("OUT_TRADE_NO", "{out_trade_no}"),
        )
    except ledger.InsufficientPoints:
        context["error"] = _("You have %(balance)s points to spend.") % {"balance": context["points_balance"]}
    except orders.PointsOverAmount:
        if coupon_code:
            context["error"] = _("The points are worth more than the amount less the coupon.")
        else:
            context["error"] = _("The points are worth more than the amount.")
    except ApplicationError as exc:
        logger.info("pay page: order refused: %s", exc.code)
        context["error"] = exc.message
    if "error" in context:
        return render(request, "payments/pay.html", context, status=400)
    order_page_url = reverse("pay:order", args=[order.out_trade_no])
    params = order.pay_params
    if order.status != Order.Status.CREATED:
        return redirect(order_page_url)
    if "cashier_url" in params:
        return redirect(f"{params['cashier_url']}?next={order_page_url}")
    if "pay_url" in params:
        return redirect(params["pay_url"])
    return render(request, "payments/pay_wechat.html", {
        "order": order, "params": params, "next": order_page_url, "payable": fen_to_yuan(order.payable_fen),
    })


def _order_view(order: Order) -> dict:
    earned = order.earn.points if order.earn_id else 0
    return {
        "out_trade_no": order.out_trade_no, "status": order.status, "status_label": order.get_status_display(),
        "amount": fen_to_yuan(order.amount_fen), "paid": fen_to_yuan(order.payable_fen), "points_used": order.points_used,
        "points_earned": earned, "store": order.store.name,
        "coupon_discount": fen_to_yuan(order.coupon_discount_fen) if order.coupon_discount_fen else "",
        # By its code: the order lets go of its coupon when it closes or is refunded in full.
        "coupon_name": Coupon.objects.filter(code=order.coupon_code).values_list("template__name", flat=True).first() or ""
        if order.coupon_code else "",
    }


@require_GET
@member_required
def order_page(request, out_trade_no):
    try:
        order = orders.order_for_member(member=request.member, out_trade_no=out_trade_no)
    except ApplicationError:
        return _not_found(request, _("No such order."))
    return render(request, "payments/order.html", {
        "order": order, "view": _order_view(order), "points_balance": ledger.member_points_balance(member=request.member),
    })


@require_GET
@member_required(as_json=True)
def order_status(request, out_trade_no):
    try:
        order = orders.order_for_member(member=request.member, out_trade_no=out_trade_no)
    except ApplicationError:
        return JsonResponse({"code": "order_not_found", "message": _("No such order.")}, status=404)
    return JsonResponse({**_order_view(order), "points_balance": ledger.member_points_balance(member=request.member)})
