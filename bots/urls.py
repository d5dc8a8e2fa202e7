from django.urls import path

from bots.alipay import alipay_gateway
from bots.simulator import simulator
from bots.wechat import wechat_endpoint

urlpatterns = [
    path("wechat/", wechat_endpoint, name="wechat"),
    path("alipay/gateway/", alipay_gateway, name="alipay-gateway"),
    path("wechat/simulator/", simulator, name="wechat-simulator"),
]
