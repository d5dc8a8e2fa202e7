"""The shopper's coupons, under /api/mp/v1/coupons/."""

from django.urls import path

from coupons import api

urlpatterns = [
    path("", api.ShopperCouponListApi.as_view(), name="mp-coupons"),
    path("catalogue/", api.ShopperCouponCatalogueApi.as_view(), name="mp-coupon-catalogue"),
    path("exchange/", api.ShopperCouponExchangeApi.as_view(), name="mp-coupon-exchange"),
    path("<int:coupon_id>/code/", api.ShopperCouponCodeApi.as_view(), name="mp-coupon-code"),
]
