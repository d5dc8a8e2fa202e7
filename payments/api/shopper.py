"""Shopper API: pay a shop from the mini-program (POST /api/mp/v1/orders/) and follow the order."""

from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from core.api import StrictCharField, StrictIntegerField, error_responses, validated
from core.links import public_base
from members.api.shopper import AUTH_ERRORS, TAGS, ShopperApiView
from members.models import Identity
from payments import orders
from payments.models import Order
from payments.views.notify import client_ip

# The mini-program pays as itself: its own openid for WeChat Pay, the Alipay buyer id.
PAYER_CHANNELS = {
    "wechat": [Identity.Channel.MINIAPP_OPENID],
    "alipay": [Identity.Channel.ALIPAY_USER_ID, Identity.Channel.ALIPAY_OPEN_ID],
}


class ShopperOrderSerializer(serializers.Serializer):
    out_trade_no = serializers.CharField()
    status = serializers.ChoiceField(choices=Order.Status.choices)
    channel = serializers.CharField()
    store_code = serializers.CharField(source="store.code")
    store_name = serializers.CharField(source="store.name")
    amount_fen = serializers.IntegerField()
    points_used = serializers.IntegerField()
    coupon_code = serializers.CharField(help_text="The coupon the order uses; empty for none.")
    coupon_discount_fen = serializers.IntegerField(help_text="What the coupon took off amount_fen (taken before the points).")
    payable_fen = serializers.IntegerField(
        help_text="amount_fen − coupon_discount_fen − the points' value: what the shopper pays the platform; 0 when the "
        "coupon and points paid it all."
    )
    points_earned = serializers.SerializerMethodField(help_text="Points the payment earned, once paid.")
    refunded_fen = serializers.IntegerField()
    pay_params = serializers.JSONField(
        help_text="For the app to pay: WeChat — wx.requestPayment's timeStamp, nonceStr, package, signType, paySign "
        "(and appId); Alipay — trade_no for my.tradePay; sandbox — cashier_url. Empty once paid or for points only."
    )
    expires_at = serializers.DateTimeField()
    paid_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()

    def get_points_earned(self, order) -> int:
        return order.earn.points if order.earn_id else 0


ORDER_ERRORS = {
    **AUTH_ERRORS,
    "400": "validation_error: amount_fen or points_to_use is not a JSON integer within bounds, or channel is unknown; "
    "points_exceed_amount: the points are worth more than the amount less the coupon's discount (max_points says how "
    "many fit); sale_amount_over_limit: above this shop's limit; min_spend_not_met: the amount is below the coupon's "
    "minimum spend (min_spend_fen); "
    "channel_unavailable: the mall does not take this channel now; payer_unknown: log in to the mini-program through "
    "this platform first",
    "403": f"{AUTH_ERRORS['403']}; merchant_not_active: the shop (or its plaza) does not take payments now; "
    "store_not_accepted: the coupon is not accepted at this shop",
    "404": "store_not_found: no such shop; coupon_not_found: no coupon of yours has this code",
    "409": "insufficient_points: more points than you can spend; coupon_used: the coupon was used; coupon_held: another "
    "order awaiting payment uses it (pay or let it expire); coupon_expired / coupon_not_valid_yet: outside its validity; "
    "coupon_void: cancelled; coupon_not_combinable: this coupon cannot be used with points (send points_to_use 0); "
    "coupon_gift_at_till: a gift coupon is handed over at the till, not used on an order; coupon_no_discount: the "
    "coupon takes nothing off this amount",
    "429": "too_many_open_orders: ORDER_OPEN_MAX (5) orders already await payment; pay them or let them expire",
    "502": "platform_rejected / platform_bad_response: the payment platform refused to open the payment (nothing was taken)",
    "503": "platform_unavailable: the payment platform did not answer (nothing was taken)",
}


class ShopperOrderCreateApi(ShopperApiView):
    class InputSerializer(serializers.Serializer):
        store_code = StrictCharField(max_length=32, help_text="The shop's code, from its payment QR (/m/pay/<store_code>/).")
        amount_fen = StrictIntegerField(max_setting="MAX_AMOUNT_FEN", help_text="The bill in fen, a JSON integer.")
        channel = serializers.ChoiceField(choices=["wechat", "alipay", "sandbox"])
        points_to_use = StrictIntegerField(
            max_setting="MAX_POINTS", min_value=0, required=False, default=0,
            help_text="Points to pay part (or all) of the bill with; held until paid, given back if not.",
        )
        coupon_code = StrictCharField(
            max_length=64, required=False, allow_blank=True, default="",
            help_text="One of your coupons, by its code (GET /api/mp/v1/coupons/): its discount comes off first, then "
            "the points pay up to the rest. Held until paid (redeemed then), given back if not paid.",
        )

    @extend_schema(
        operation_id="shopper_orders_create",
        summary="Pay a shop: create an order and get what the app needs to pay it",
        description="The coupon's discount comes off the amount first (coupon_discount_fen), then the points pay up to "
        "the rest. The coupon and the points used are held now and given back if the order is not paid within "
        "ORDER_PAY_MINUTES (15); the coupon is redeemed when it is paid, and given back if the order is refunded in "
        "full. When the coupon and points pay the whole bill the order is paid at once (status paid, no pay_params). "
        "Points are earned on payable_fen only. Otherwise pay with pay_params; the platform's notification books the payment, and the points it "
        "earns arrive with a push. Poll GET /api/mp/v1/orders/<out_trade_no>/ for the outcome.",
        request=InputSerializer,
        examples=[
            OpenApiExample("¥68 with 800 points", request_only=True,
                           value={"store_code": "sh-starbucks", "amount_fen": 6800, "channel": "wechat", "points_to_use": 800}),
            OpenApiExample("¥120 with a ¥20-off coupon and 500 points", request_only=True,
                           value={"store_code": "sh-starbucks", "amount_fen": 12000, "channel": "wechat", "points_to_use": 500,
                                  "coupon_code": "7K3QH9XW2MBD4RTN"}),
        ],
        responses={201: ShopperOrderSerializer, **error_responses(**ORDER_ERRORS)},
        tags=TAGS,
    )
    def post(self, request):
        data = validated(self.InputSerializer, request.data)
        store = orders.order_store(store_code=data["store_code"])
        channel = data["channel"]
        payer_id = ""
        if channel in PAYER_CHANNELS:
            payer_id = (
                self.member.identities.filter(channel__in=PAYER_CHANNELS[channel]).values_list("external_id", flat=True).first()
                or ""
            )
        order = orders.order_create(
            store=store, member=self.member, amount_fen=data["amount_fen"], points_to_use=data["points_to_use"],
            coupon_code=data["coupon_code"], channel=channel,
            client=Order.Client.CASHIER if channel == "sandbox" else Order.Client.MINIAPP,
            payer_id=payer_id, site_url=public_base(request), client_ip=client_ip(request),
            require_payer=channel in PAYER_CHANNELS,
        )
        return Response(ShopperOrderSerializer(order).data, status=201)


class ShopperOrderDetailApi(ShopperApiView):
    @extend_schema(
        operation_id="shopper_orders_retrieve",
        summary="One of your orders",
        responses={200: ShopperOrderSerializer, **error_responses(**{**AUTH_ERRORS, "404": "order_not_found: not your order"})},
        tags=TAGS,
    )
    def get(self, request, out_trade_no: str):
        return Response(ShopperOrderSerializer(orders.order_for_member(member=self.member, out_trade_no=out_trade_no)).data)
