"""The shopper mini-program API, under /api/mp/v1/."""

from django.urls import path

from members.api import shopper, shopper_login, shopper_spend

urlpatterns = [
    path("auth/wechat/", shopper_login.WeChatLoginApi.as_view(), name="mp-auth-wechat"),
    path("auth/alipay/", shopper_login.AlipayLoginApi.as_view(), name="mp-auth-alipay"),
    # Answers 404 outside sandbox mode, exactly as an unknown path does.
    path("auth/demo/", shopper_login.DemoLoginApi.as_view(), name="mp-auth-demo"),
    path("me/", shopper.MeApi.as_view(), name="mp-me"),
    path("points/history/", shopper.PointsHistoryApi.as_view(), name="mp-points-history"),
    path("member-code/", shopper.MemberCodeApi.as_view(), name="mp-member-code"),
    path("checkin/", shopper.CheckinApi.as_view(), name="mp-checkin"),
    path("redemption-tokens/", shopper_spend.RedemptionTokenCreateApi.as_view(), name="mp-redemption-tokens"),
    path("phone/", shopper.PhoneApi.as_view(), name="mp-phone"),
    path("inbox/", shopper.InboxApi.as_view(), name="mp-inbox"),
    path("inbox/read/", shopper.InboxReadApi.as_view(), name="mp-inbox-read"),
]
