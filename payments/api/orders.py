"""Merchant API for QR orders: a POS shows a payment QR for a bill (POST /api/v1/orders/),
follows it, and refunds it (POST /api/v1/orders/<out_trade_no>/refunds/).

Whoever pays the QR earns the points, funded by this merchant: the platform names the
payer and they become a member on the spot if new.
"""

from django.db import IntegrityError
from django.http import HttpResponse
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from core.api import StrictCharField, StrictIntegerField, validated
from core.errors import Conflict
from core.links import public_base
from members.api.merchant import MerchantApiView, merchant_error_responses
from payments import orders, refunds, services
from payments.api.sales import IDEMPOTENCY_HEADER
from payments.models import Order, OrderRefund
from payments.views.notify import client_ip


class DuplicateOrderRef(Conflict):
    """This order_ref was already used for another order."""

    code = "duplicate_order_ref"


class MerchantOrderSerializer(serializers.Serializer):
    out_trade_no = serializers.CharField()
    status = serializers.ChoiceField(choices=Order.Status.choices)
    channel = serializers.CharField()
    store_code = serializers.CharField(source="store.code")
    amount_fen = serializers.IntegerField()
    points_used = serializers.IntegerField()
    payable_fen = serializers.IntegerField()
    refunded_fen = serializers.IntegerField(help_text="Of amount_fen, refunded or being refunded.")
    order_ref = serializers.CharField()
    code_url = serializers.SerializerMethodField(help_text="Show it as a QR code; the shopper scans it to pay.")
    points_earned = serializers.SerializerMethodField()
    member_no = serializers.CharField(source="member.member_no", allow_null=True, default=None)
    expires_at = serializers.DateTimeField()
    paid_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()

    def get_code_url(self, order) -> str:
        return order.pay_params.get("code_url", "") or order.pay_params.get("cashier_url", "")

    def get_points_earned(self, order) -> int:
        return order.earn.points if order.earn_id else 0


class OrderRefundSerializer(serializers.Serializer):
    out_refund_no = serializers.CharField()
    out_trade_no = serializers.CharField(source="order.out_trade_no")
    status = serializers.ChoiceField(choices=OrderRefund.Status.choices, help_text="pending: sent, the platform has not "
                                     "settled it yet (GET the order later); succeeded; failed (nothing was refunded).")
    amount_fen = serializers.IntegerField(help_text="Of the order's amount.")
    cash_fen = serializers.IntegerField(help_text="Money going back to the shopper.")
    points = serializers.IntegerField(help_text="Points going back to the shopper (the order paid part with points).")
    failure = serializers.CharField()
    created_at = serializers.DateTimeField()


class OrderCreateApi(MerchantApiView):
    class InputSerializer(serializers.Serializer):
        store_code = StrictCharField(max_length=32)
        amount_fen = StrictIntegerField(max_setting="MAX_AMOUNT_FEN", help_text="The bill in fen, a JSON integer.")
        channel = serializers.ChoiceField(choices=["wechat", "alipay", "sandbox"])
        order_ref = StrictCharField(max_length=64, required=False, allow_blank=True, default="")

    @extend_schema(
        operation_id="orders_create",
        summary="Show a payment QR for a bill · 生成收款二维码",
        description="Show a payment QR for a bill (WeChat Native / Alipay precreate). The answer's code_url is shown as a QR code on the POS screen. When the shopper pays it, the "
        "platform's notification books the payment and the payer earns this merchant's points (a new payer becomes a "
        "member). Unpaid, the order closes after ORDER_PAY_MINUTES (15).",
        request=InputSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        examples=[OpenApiExample("A ¥38 bill", request_only=True,
                                 value={"store_code": "sh-starbucks", "amount_fen": 3800, "channel": "wechat", "order_ref": "POS-0002"})],
        responses={
            201: MerchantOrderSerializer,
            **merchant_error_responses(**{
                "400": "validation_error; idempotency_key_required; channel_unavailable: the mall does not take this channel; "
                "sale_amount_over_limit",
                "403": "merchant_not_active: the store is closed",
                "404": "store_not_found: not one of this merchant's stores",
                "409": "idempotency_conflict; duplicate_order_ref: this order_ref was used for another order",
                "502": "platform_rejected / platform_bad_response: the platform refused to open the payment",
                "503": "platform_unavailable: the platform did not answer",
            }),
        },
        tags=["orders"],
    )
    def post(self, request):
        merchant = request.user.merchant
        key = services.idempotency_key_check(request.headers.get("Idempotency-Key"))
        fingerprint = services.request_fingerprint(method=request.method, path=request.path, body=request.data)
        answer = services.api_request_replayed(merchant=merchant, key=key, fingerprint=fingerprint)
        if answer is None:
            data = validated(self.InputSerializer, request.data)
            store = services.merchant_store(merchant=merchant, store_code=data["store_code"])
            # Opened outside any transaction: the platform call may take seconds, and no
            # database lock may wait on it. Two racing first requests with one key open two
            # trades; the second answers as the first did, and its own order simply expires.
            try:
                order = orders.order_create(
                    store=store, amount_fen=data["amount_fen"], channel=data["channel"],
                    client=Order.Client.CASHIER if data["channel"] == "sandbox" else Order.Client.NATIVE,
                    site_url=public_base(request), client_ip=client_ip(request), order_ref=data["order_ref"],
                )
            except IntegrityError:
                raise DuplicateOrderRef(extra={"order_ref": data["order_ref"]}) from None
            body = JSONRenderer().render(MerchantOrderSerializer(order).data).decode()
            answer = services.api_request_once(merchant=merchant, key=key, fingerprint=fingerprint, run=lambda: (201, body))
        status, text = answer
        return HttpResponse(text, status=status, content_type="application/json")


class OrderDetailApi(MerchantApiView):
    @extend_schema(
        operation_id="orders_retrieve",
        summary="One order · 查询订单",
        description="One of this merchant's orders (QR orders and shoppers' payments at its stores).",
        responses={200: MerchantOrderSerializer, **merchant_error_responses(**{"404": "order_not_found: not this merchant's order"})},
        tags=["orders"],
    )
    def get(self, request, out_trade_no: str):
        return Response(MerchantOrderSerializer(orders.order_for_merchant(merchant=request.user.merchant, out_trade_no=out_trade_no)).data)


class OrderRefundCreateApi(MerchantApiView):
    class InputSerializer(serializers.Serializer):
        amount_fen = StrictIntegerField(max_setting="MAX_AMOUNT_FEN", help_text="How much of the order's amount to refund, in fen.")
        reason = StrictCharField(max_length=200, required=False, allow_blank=True, default="")

    @extend_schema(
        operation_id="orders_refunds_create",
        summary="Refund an order · 订单退款",
        description="Refund part or all of a paid order, through its payment platform. The money goes back through the platform the shopper paid with; points the order earned are taken "
        "back in proportion, and points it used are given back, when the platform confirms. Retrying with the same "
        "Idempotency-Key returns the same refund with its state now (201 again).",
        request=InputSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        responses={
            201: OrderRefundSerializer,
            **merchant_error_responses(**{
                "400": "validation_error; idempotency_key_required; refund_too_small: rounds to nothing (the rest of an order a coupon paid whole is accepted: it gives the coupon back)",
                "404": "order_not_found: not this merchant's order",
                "409": "order_not_refundable: not paid; refund_exceeds_order: more than what is left; idempotency_conflict: "
                "the key was used for another amount",
            }),
        },
        tags=["refunds"],
    )
    def post(self, request, out_trade_no: str):
        key = services.idempotency_key_check(request.headers.get("Idempotency-Key"))
        data = validated(self.InputSerializer, request.data)
        order = orders.order_for_merchant(merchant=request.user.merchant, out_trade_no=out_trade_no)
        refund = refunds.order_refund_request(order=order, amount_fen=data["amount_fen"], reason=data["reason"], idempotency_key=key)
        refund = refunds.refund_submit(refund=refund)
        return Response(OrderRefundSerializer(refund).data, status=201)
