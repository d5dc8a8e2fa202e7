"""H5 pages: a shop's payment page (/m/pay/<store_code>/, its static QR) and the
shopper's order page. The shopper enters the amount, may pay part with points, and
pays with WeChat Pay (inside WeChat), Alipay (elsewhere) or, in the demo, the sandbox
cashier; the order page follows the order until the notification has booked it."""

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
    context = {
        "store": store, "member": member, "channels": channels,
        "points_balance": ledger.member_points_spendable(member=member),
        "amount": request.POST.get("amount", ""), "points": request.POST.get("points", ""),
    }
    if request.method == "GET":
        return render(request, "payments/pay.html", context)
    amount_fen = _amount_fen(request.POST.get("amount"))
    points = _whole_number(request.POST.get("points"))
    channel = request.POST.get("channel", "")
    if amount_fen is None or amount_fen <= 0:
        context["error"] = _("Enter the amount in yuan, e.g. 68 or 68.50.")
    elif points is None:
        context["error"] = _("Enter the points to use, a whole number.")
    elif channel not in channels and amount_fen > points * settings.POINT_VALUE_FEN:
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
            store=store, member=member, amount_fen=amount_fen, points_to_use=points, channel=channel or "sandbox",
            client=Order.Client.CASHIER if channel == "sandbox" else client, site_url=public_base(request),
            payer_id=payer_id, client_ip=client_ip(request),
            return_path=reverse("pay:order", args=["OUT_TRADE_NO"]).replace("OUT_TRADE_NO", "{out_trade_no}"),
        )
    except ledger.InsufficientPoints:
        context["error"] = _("You have %(balance)s points to spend.") % {"balance": context["points_balance"]}
    except orders.PointsOverAmount:
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
