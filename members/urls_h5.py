"""The shopper's H5 pages, under /m/ (members.views)."""

from django.urls import path, re_path

from members import views, views_spend

app_name = "h5"

urlpatterns = [
    path("", views.card, name="card"),
    path("card/code.json", views.card_code, name="card-code"),
    path("history/", views.history, name="history"),
    path("inbox/", views.inbox, name="inbox"),
    path("checkin/<str:token>/", views.checkin, name="checkin"),
    path("redeem/<slug:store_code>/", views_spend.redeem, name="redeem"),
    re_path(r"^qr/(?P<kind>checkin|pay)/(?P<key>[-\w:.]+)\.(?P<fmt>png|svg)$", views.qr_image, name="qr"),
    path("login/", views.login, name="login"),
    path("login/demo/", views.demo_login, name="login-demo"),
    path("login/wechat/", views.oauth_start, {"platform": "wechat"}, name="login-wechat"),
    path("login/wechat/callback/", views.oauth_callback, {"platform": "wechat"}, name="login-wechat-callback"),
    path("login/alipay/", views.oauth_start, {"platform": "alipay"}, name="login-alipay"),
    path("login/alipay/callback/", views.oauth_callback, {"platform": "alipay"}, name="login-alipay-callback"),
    path("logout/", views.logout, name="logout"),
    path("language/", views.language, name="language"),
]
