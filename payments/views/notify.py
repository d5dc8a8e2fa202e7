"""The platforms' notification endpoints: read the body, hand it over, answer in kind."""

from django.conf import settings
from django.http import Http404, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from rest_framework.throttling import BaseThrottle
from payments import notifications


def client_ip(request) -> str:
    """The caller's address, past NUM_PROXIES proxies (as the API throttles see it)."""
    return BaseThrottle().get_ident(request) or ""


def _answer(ack) -> HttpResponse:
    response = HttpResponse(ack.body, status=ack.status, content_type=ack.content_type)
    for name, value in ack.headers.items():
        response[name] = value
    return response


def _notify(request, gateway: str) -> HttpResponse:
    limit = settings.PAYMENT_NOTIFY_MAX_BYTES
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = limit + 1
    if declared > limit:
        # Not read at all: stored as refused with what little we know.
        return _answer(notifications.notification_receive(
            gateway=gateway, headers=request.headers, body=b"", remote_addr=client_ip(request), oversized=True
        ))
    return _answer(notifications.notification_receive(
        gateway=gateway, headers=request.headers, body=request.body, remote_addr=client_ip(request)
    ))


def _endpoint(gateway: str):
    @csrf_exempt
    @require_POST
    def view(request):
        if gateway == "sandbox" and not settings.O2O_SANDBOX:
            raise Http404  # the sandbox cashier is the demo's platform only
        return _notify(request, gateway)

    view.__name__ = f"notify_{gateway}"
    return view


notify_wechat_v2 = _endpoint("wechat_v2")
notify_wechat_v3 = _endpoint("wechat_v3")
notify_alipay = _endpoint("alipay")
notify_sandbox = _endpoint("sandbox")

