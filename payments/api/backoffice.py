"""Merchant API for back offices (/api/v1/): the merchant's own purchases, redemptions and
refunds of a period of local days, page by page, for reconciliation.

``GET /api/v1/purchases/`` and ``GET /api/v1/redemptions/`` share their paths with the
POS's POSTs, so their views extend the POS views with a ``get``. Refunds have a list
per kind (purchase, redemption, order refunds): their rows differ (fen, points, cash
and points with a platform state), and each is reconciled against its own figure.
"""

import re

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from core.api import CURSOR_PATTERN, DAY_SCHEMA, validated
from members.api.merchant import MerchantApiView, merchant_error_responses
from members.api.shopper import PageQuerySerializer
from payments import backoffice, services
from payments.api.orders import OrderRefundSerializer
from payments.api.sales import PurchaseCreateApi, PurchaseOutputSerializer, RedemptionCreateApi, RedemptionOutputSerializer

LIST_PARAMETERS = [
    OpenApiParameter("from", DAY_SCHEMA, OpenApiParameter.QUERY, required=True,
                     description="First day, YYYY-MM-DD, in the mall's local time (Asia/Shanghai). 第一天（商场当地时间）。"),
    OpenApiParameter("to", DAY_SCHEMA, OpenApiParameter.QUERY, required=True,
                     description="Last day, inclusive: not before `from`, at most 92 days in all (as the daily report). "
                     "最后一天（含），不早于 from，最多 92 天。"),
    OpenApiParameter("store_code", {"type": "string", "minLength": 1, "maxLength": 32}, OpenApiParameter.QUERY,
                     description="Only this one of the merchant's stores. 仅本商户的某一门店。"),
    OpenApiParameter("cursor", {"type": "string", "maxLength": 36, "pattern": CURSOR_PATTERN}, OpenApiParameter.QUERY,
                     description="next_cursor of the previous page; leave out for the first. 上一页返回的 next_cursor。"),
    OpenApiParameter("limit", {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}, OpenApiParameter.QUERY,
                     description="Rows per page, 1–100 (default 20). 每页条数。"),
]
LIST_ERRORS = {
    "400": "invalid_period: from or to missing or not a day (YYYY-MM-DD), to before from, more than 92 days, or outside "
    "2000–2999; invalid_cursor: not a cursor this API gave; validation_error: limit is not 1–100, or store_code is "
    "blank or longer than 32",
    "404": "store_not_found: store_code is not one of this merchant's stores",
}
_CURSOR = re.compile(CURSOR_PATTERN, re.ASCII)
PAGING = ("Oldest first, by time booked then id; pass next_cursor back as cursor until it is null. A row booked while "
          "you page shows up once, on a later page; reconcile a day once it is over. Only this merchant's rows.")
NEXT_CURSOR_HELP = "Pass as cursor for the next page; null on the last."
PAGING_ZH = "按记账时间从早到晚排列；把 next_cursor 作为 cursor 传回直到其为 null。只含本商户的记录；建议在当天结束后对账。"


class ListQuerySerializer(PageQuerySerializer):
    store_code = serializers.CharField(required=False, max_length=32)

    def validate(self, data):
        # DRF reads an empty query parameter as a missing one; the schema says it is not.
        blank = [name for name in ("store_code", "limit") if self.initial_data.get(name) == ""]
        if blank:
            raise serializers.ValidationError({name: ["This field may not be blank."] for name in blank}, code="blank")
        if data["cursor"] and _CURSOR.fullmatch(data["cursor"]) is None:
            raise backoffice.InvalidCursor()
        return data


def _listed(request, select, row_serializer) -> Response:
    """One page of what ``select(merchant=, period=, store=)`` lists for the caller."""
    query = validated(ListQuerySerializer, request.query_params)
    period = backoffice.period_parse(first=request.query_params.get("from"), last=request.query_params.get("to"))
    merchant = request.user.merchant
    store = services.merchant_store(merchant=merchant, store_code=query["store_code"]) if "store_code" in query else None
    rows, next_cursor = backoffice.page(select(merchant=merchant, period=period, store=store), cursor=query["cursor"], limit=query["limit"])
    return Response({"results": row_serializer(rows, many=True).data, "next_cursor": next_cursor})


def _example(row: dict) -> list:
    return [OpenApiExample("A page", response_only=True, status_codes=["200"], value={
        "results": [row], "next_cursor": "1773109800000000-1042"})]


# --- purchases and redemptions -------------------------------------------------------------


class PurchaseListCreateApi(PurchaseCreateApi):
    """GET lists the merchant's purchases of a period; POST books one (PurchaseCreateApi)."""

    class OutputSerializer(serializers.Serializer):
        results = PurchaseOutputSerializer(many=True, help_text="As GET /api/v1/purchases/{id}/ shows each (points_balance null).")
        next_cursor = serializers.CharField(allow_null=True, help_text=NEXT_CURSOR_HELP)

    @extend_schema(
        operation_id="purchases_list",
        summary="Purchases by day · 消费明细（对账）",
        description="This merchant's purchases of a period, for reconciliation. Each sale as GET /api/v1/purchases/{id}/ shows it. Over a day, the sum of amount_fen is the daily "
        "report's sales_fen, the number of rows its transactions and the distinct member_no its customers. " + PAGING
        + "\n\n本商户在某段日期内的 POS 消费记录，用于对账：当天 amount_fen 之和等于日报的 sales_fen，条数等于 transactions。"
        + PAGING_ZH,
        parameters=LIST_PARAMETERS,
        responses={200: OutputSerializer, **merchant_error_responses(**LIST_ERRORS)},
        examples=_example({
            "id": 1042, "points_earned": 38, "points_balance": None, "member_present": True, "member_no": "100000000017",
            "store_code": "sh-starbucks", "amount_fen": 3800, "refunded_fen": 0, "order_ref": "POS-0001",
            "created_at": "2026-03-10T10:30:00+08:00"}),
        tags=["back-office"],
    )
    def get(self, request):
        return _listed(request, backoffice.merchant_purchases, PurchaseOutputSerializer)


class RedemptionListCreateApi(RedemptionCreateApi):
    """GET lists the merchant's redemptions of a period; POST records one (RedemptionCreateApi)."""

    class OutputSerializer(serializers.Serializer):
        results = RedemptionOutputSerializer(many=True, help_text="As GET /api/v1/redemptions/{id}/ shows each (points_balance null).")
        next_cursor = serializers.CharField(allow_null=True, help_text=NEXT_CURSOR_HELP)

    @extend_schema(
        operation_id="redemptions_list",
        summary="Redemptions by day · 积分抵扣明细（对账）",
        description="Points shoppers paid with at this merchant in a period, for reconciliation. Each redemption as GET /api/v1/redemptions/{id}/ shows it. Over a day, Σ points less Σ points of "
        "the redemption refunds booked that day is the daily report's points_accepted. " + PAGING
        + "\n\n本商户在某段日期内收取的积分抵扣记录，用于对账：当天 points 之和减去当天积分退还之和等于日报的 points_accepted。"
        + PAGING_ZH,
        parameters=LIST_PARAMETERS,
        responses={200: OutputSerializer, **merchant_error_responses(**LIST_ERRORS)},
        examples=_example({
            "id": 311, "points": 500, "value_fen": 500, "returned_points": 0, "points_balance": None,
            "member_no": "100000000017", "store_code": "sh-starbucks", "order_ref": "POS-0002",
            "created_at": "2026-03-10T16:05:00+08:00"}),
        tags=["back-office"],
    )
    def get(self, request):
        return _listed(request, backoffice.merchant_redemptions, RedemptionOutputSerializer)


# --- refunds ---------------------------------------------------------------------------


class PurchaseRefundRowSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    purchase_id = serializers.IntegerField()
    store_code = serializers.CharField(source="purchase.store.code")
    order_ref = serializers.CharField(source="purchase.order_ref", help_text="The purchase's POS order number.")
    amount_fen = serializers.IntegerField()
    points_reversed = serializers.SerializerMethodField(help_text="Points taken back from the shopper.")
    shortfall_points = serializers.IntegerField(source="reversal.shortfall", help_text="Points the shopper had already spent; borne by this merchant.")
    created_at = serializers.DateTimeField()

    def get_points_reversed(self, refund) -> int:
        return -refund.reversal.points


class RedemptionRefundRowSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    redemption_id = serializers.IntegerField()
    store_code = serializers.CharField(source="redemption.store.code")
    order_ref = serializers.CharField(source="redemption.order_ref", help_text="The redemption's POS order number.")
    points = serializers.IntegerField(help_text="Points given back to the shopper.")
    created_at = serializers.DateTimeField()


class OrderRefundRowSerializer(OrderRefundSerializer):
    kind = serializers.CharField(help_text="requested (by the merchant or the mall's staff) or late_payment (a payment "
                                 "that arrived after the order closed, refunded whole).")
    store_code = serializers.CharField(source="order.store.code")
    finished_at = serializers.DateTimeField(allow_null=True, help_text="When the platform settled it; null while pending.")


class PurchaseRefundListApi(MerchantApiView):
    class OutputSerializer(serializers.Serializer):
        results = PurchaseRefundRowSerializer(many=True)
        next_cursor = serializers.CharField(allow_null=True, help_text=NEXT_CURSOR_HELP)

    @extend_schema(
        operation_id="purchase_refunds_list",
        summary="Purchase refunds by day · 消费退款明细",
        description="Refunds of this merchant's purchases booked in a period. By the day the refund was booked, whenever the sale was. Over a day, Σ amount_fen is the daily "
        "report's refunds_fen. " + PAGING + "\n\n某段日期内登记的 POS 消费退款（按退款日期），当天 amount_fen 之和等于日报的 "
        "refunds_fen。" + PAGING_ZH,
        parameters=LIST_PARAMETERS,
        responses={200: OutputSerializer, **merchant_error_responses(**LIST_ERRORS)},
        examples=_example({
            "id": 77, "purchase_id": 1042, "store_code": "sh-starbucks", "order_ref": "POS-0001", "amount_fen": 1900,
            "points_reversed": 19, "shortfall_points": 0, "created_at": "2026-03-10T15:00:00+08:00"}),
        tags=["back-office"],
    )
    def get(self, request):
        return _listed(request, backoffice.merchant_purchase_refunds, PurchaseRefundRowSerializer)


class RedemptionRefundListApi(MerchantApiView):
    class OutputSerializer(serializers.Serializer):
        results = RedemptionRefundRowSerializer(many=True)
        next_cursor = serializers.CharField(allow_null=True, help_text=NEXT_CURSOR_HELP)

    @extend_schema(
        operation_id="redemption_refunds_list",
        summary="Redemption refunds by day · 积分退还明细",
        description="Points this merchant gave back on cancelled redemptions in a period. By the day the points were given back. " + PAGING
        + "\n\n某段日期内退还给顾客的积分（按退还日期）。" + PAGING_ZH,
        parameters=LIST_PARAMETERS,
        responses={200: OutputSerializer, **merchant_error_responses(**LIST_ERRORS)},
        examples=_example({
            "id": 12, "redemption_id": 311, "store_code": "sh-starbucks", "order_ref": "POS-0002", "points": 200,
            "created_at": "2026-03-10T17:20:00+08:00"}),
        tags=["back-office"],
    )
    def get(self, request):
        return _listed(request, backoffice.merchant_redemption_refunds, RedemptionRefundRowSerializer)


class OrderRefundListApi(MerchantApiView):
    class OutputSerializer(serializers.Serializer):
        results = OrderRefundRowSerializer(many=True)
        next_cursor = serializers.CharField(allow_null=True, help_text=NEXT_CURSOR_HELP)

    @extend_schema(
        operation_id="order_refunds_list",
        summary="Order refunds by day · 订单退款明细",
        description="Refunds of this merchant's orders asked for in a period, with their state now. By the day the refund was asked for; status and finished_at say where it stands (the monthly "
        "settlement counts succeeded refunds in the month they finished). " + PAGING
        + "\n\n某段日期内发起的扫码订单退款（按发起日期）及其当前状态；月度结算按退款成功的月份计入。" + PAGING_ZH,
        parameters=LIST_PARAMETERS,
        responses={200: OutputSerializer, **merchant_error_responses(**LIST_ERRORS)},
        examples=_example({
            "out_refund_no": "R20260310000123", "out_trade_no": "O20260310000456", "status": "succeeded",
            "amount_fen": 5000, "cash_fen": 4000, "points": 1000, "failure": "", "created_at": "2026-03-10T18:00:00+08:00",
            "kind": "requested", "store_code": "sh-starbucks", "finished_at": "2026-03-10T18:00:05+08:00"}),
        tags=["back-office"],
    )
    def get(self, request):
        return _listed(request, backoffice.merchant_order_refunds, OrderRefundRowSerializer)
