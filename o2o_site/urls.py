from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from core import ops
from core.api import api_not_found
from coupons import api as coupons_api
from coupons import api_merchant as campaigns_api
from members.api import merchant as members_api
from payments.api import backoffice as backoffice_api
from payments.api import orders as orders_api
from payments.api import sales as payments_api

merchant_api = [
    path("api/v1/purchases/", backoffice_api.PurchaseListCreateApi.as_view(), name="api-purchases"),
    path("api/v1/purchases/<int:purchase_id>/", payments_api.PurchaseDetailApi.as_view(), name="api-purchase"),
    path("api/v1/purchases/<int:purchase_id>/refunds/", payments_api.PurchaseRefundCreateApi.as_view(), name="api-purchase-refunds"),
    path("api/v1/redemptions/", backoffice_api.RedemptionListCreateApi.as_view(), name="api-redemptions"),
    path("api/v1/redemptions/<int:redemption_id>/", payments_api.RedemptionDetailApi.as_view(), name="api-redemption"),
    path("api/v1/redemptions/<int:redemption_id>/refunds/", payments_api.RedemptionRefundCreateApi.as_view(), name="api-redemption-refunds"),
    path("api/v1/purchase-refunds/", backoffice_api.PurchaseRefundListApi.as_view(), name="api-purchase-refunds-list"),
    path("api/v1/redemption-refunds/", backoffice_api.RedemptionRefundListApi.as_view(), name="api-redemption-refunds-list"),
    path("api/v1/order-refunds/", backoffice_api.OrderRefundListApi.as_view(), name="api-order-refunds-list"),
    path("api/v1/orders/", orders_api.OrderCreateApi.as_view(), name="api-orders"),
    path("api/v1/orders/<str:out_trade_no>/", orders_api.OrderDetailApi.as_view(), name="api-order"),
    path("api/v1/orders/<str:out_trade_no>/refunds/", orders_api.OrderRefundCreateApi.as_view(), name="api-order-refunds"),
    path("api/v1/members/lookup/", members_api.MemberLookupApi.as_view(), name="api-members-lookup"),
    path("api/v1/reports/daily/", payments_api.DailyReportApi.as_view(), name="api-reports-daily"),
    path("api/v1/settlements/", payments_api.SettlementApi.as_view(), name="api-settlements"),
    path("api/v1/coupon-redemptions/", coupons_api.CouponRedemptionCreateApi.as_view(), name="api-coupon-redemptions"),
    path("api/v1/coupon-redemptions/<int:redemption_id>/cancel/", coupons_api.CouponRedemptionCancelApi.as_view(),
         name="api-coupon-redemption-cancel"),
    path("api/v1/campaigns/", campaigns_api.CampaignListApi.as_view(), name="api-campaigns"),
    path("api/v1/campaigns/<int:campaign_id>/", campaigns_api.CampaignDetailApi.as_view(), name="api-campaign"),
    path("api/v1/campaigns/<int:campaign_id>/cancel/", campaigns_api.CampaignCancelApi.as_view(), name="api-campaign-cancel"),
]

urlpatterns = [
    # Answered first by core.ops.OperatorEndpointsMiddleware (plain HTTP, any Host); here for reverse().
    path("healthz", ops.healthz, name="healthz"),
    path("readyz", ops.readyz, name="readyz"),
    path("metrics", ops.metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("merchant/", include("backoffice.urls", namespace="merchant")),  # the tenants' admin
    *merchant_api,
    path("api/mp/v1/orders/", include("payments.urls_mp")),
    path("api/mp/v1/coupons/", include("coupons.urls_mp")),
    path("api/mp/v1/", include("members.urls_mp")),
    path("m/pay/", include("payments.urls_h5")),
    path("m/coupons/", include("coupons.urls_h5")),
    path("m/", include("members.urls_h5")),
    path("payments/", include("payments.urls")),
    path("", include("bots.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    re_path(r"^api/", api_not_found),
]

handler500 = "core.api.server_error"
