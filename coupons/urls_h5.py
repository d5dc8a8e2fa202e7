"""The shopper's coupon pages, under /m/coupons/."""

from django.urls import path

app_name = "coupons"

urlpatterns: list = []
