"""The shopper's coupons, under /api/mp/v1/coupons/."""

from django.urls import path

from coupons import api_shopper

urlpatterns = [
    path("", api_shopper.ShopperCouponListApi.as_view(), name="mp-coupons"),
    path("catalogue/", api_shopper.ShopperCouponCatalogueApi.as_view(), name="mp-coupon-catalogue"),
    path("exchange/", api_shopper.ShopperCouponExchangeApi.as_view(), name="mp-coupon-exchange"),
    path("claimable/", api_shopper.ShopperCouponClaimableApi.as_view(), name="mp-coupons-claimable"),
    path("claim/", api_shopper.ShopperCouponClaimApi.as_view(), name="mp-coupon-claim"),
    path("<int:coupon_id>/code/", api_shopper.ShopperCouponCodeApi.as_view(), name="mp-coupon-code"),
]
