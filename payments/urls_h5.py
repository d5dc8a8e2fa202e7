"""/m/pay/: a shop's payment page (its static QR) and the shopper's order page."""

from django.urls import path

from payments.views import pay

app_name = "pay"

urlpatterns = [
    path("orders/<str:out_trade_no>/", pay.order_page, name="order"),
    path("orders/<str:out_trade_no>/status.json", pay.order_status, name="order-status"),
    path("<slug:store_code>/", pay.pay_page, name="page"),
]
