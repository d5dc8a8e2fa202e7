"""/api/mp/v1/orders/: the shopper pays a shop from the mini-program (payments.api.shopper)."""

from django.urls import path

from payments.api import shopper

urlpatterns = [
    path("", shopper.ShopperOrderCreateApi.as_view(), name="mp-orders"),
    path("<str:out_trade_no>/", shopper.ShopperOrderDetailApi.as_view(), name="mp-order"),
]
