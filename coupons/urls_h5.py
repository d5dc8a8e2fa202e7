"""The shopper's coupon pages, under /m/coupons/ (coupons.views)."""

from django.urls import path

from coupons import views

app_name = "coupons"

urlpatterns = [
    path("", views.coupons_page, name="list"),
    path("claim/", views.claim_listed, name="claim"),
    path("exchange/", views.exchange, name="exchange"),
    path("<int:coupon_id>/", views.detail, name="detail"),
    path("<int:coupon_id>/code.json", views.code_json, name="code"),
    # A claim QR: its page, and for staff its printable poster and its image.
    path("claim/<str:claim_code>/", views.claim_by_code, name="claim-code"),
    path("claim/<str:claim_code>/print/", views.claim_print, name="claim-print"),
    path("claim/<str:claim_code>/qr.png", views.claim_png, name="claim-png"),
]
