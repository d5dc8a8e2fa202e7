"""The sandbox cashier (/payments/sandbox/<out_trade_no>/): the embedded demo's payment
platform. "Pay" marks the sandbox trade paid and sends its signed notification through
the same code path as WeChat's and Alipay's. Exists only in sandbox mode."""

from django.conf import settings
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods

from core.money import fen_to_yuan
from payments import notifications
from payments.gateways import sandbox
from payments.views.notify import client_ip


def _next(request) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return target
    return ""


@require_http_methods(["GET", "POST"])
def cashier(request, out_trade_no):
    if not settings.O2O_SANDBOX:
        raise Http404
    trade = sandbox.trade_for_cashier(out_trade_no=out_trade_no)
    if trade is None:
        raise Http404
    context = {"trade": trade, "amount": fen_to_yuan(trade.amount_fen), "next": _next(request),
               "expired": trade.expires_at <= timezone.now()}
    if request.method == "POST":
        signed = sandbox.trade_pay(out_trade_no=out_trade_no)
        if signed is not None:
            headers, body = signed
            ack = notifications.notification_receive(gateway="sandbox", headers=headers, body=body, remote_addr=client_ip(request))
            context["acknowledged"] = ack.status == 200
        trade.refresh_from_db()
        if trade.status == trade.Status.SUCCESS and context["next"]:
            return redirect(context["next"])
        context["trade"] = trade
    return render(request, "payments/cashier.html", context)
