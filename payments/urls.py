"""/payments/: the platforms' notification endpoints and the sandbox cashier."""

from django.urls import path

from payments.views import cashier, notify

app_name = "payments"

urlpatterns = [
    path("notify/wechat/", notify.notify_wechat_v2, name="notify-wechat"),
    path("notify/wechat/v3/", notify.notify_wechat_v3, name="notify-wechat-v3"),
    path("notify/alipay/", notify.notify_alipay, name="notify-alipay"),
    path("notify/sandbox/", notify.notify_sandbox, name="notify-sandbox"),
    path("sandbox/<str:out_trade_no>/", cashier.cashier, name="sandbox-cashier"),
]
