"""Merchant API (/api/v1/): purchases, redemptions, their refunds, reports, settlements.

Each view validates, calls one service, renders. Every POST needs an Idempotency-Key:
a replay gets the first response (status and body), the same key with another body
gets 409 idempotency_conflict, and concurrent requests with one key have one effect.
"""

from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from core.api import DAY_SCHEMA, StrictCharField, StrictDateField, StrictIntegerField, idempotency_key_parameter, validated
from members import ledger
from members.api.merchant import (
    MEMBER_ERRORS,
    MemberRefSerializer,
    MerchantApiView,
    ShopperRefSerializer,
    ShopperRequired,
    member_from,
    merchant_error_responses,
)
from payments import reports, services

IDEMPOTENCY_HEADER = idempotency_key_parameter()
TOO_MANY_CODES = {"429": "too_many_invalid_codes: too many wrong member codes; too_many_invalid_member_numbers: too many "
                  "unknown member numbers (20 in 10 minutes per key)"}


def _once(request, prepare, effect):
    """Answer a POST once per Idempotency-Key; a replay gets the first response's bytes.

    ``prepare()`` validates and resolves the input outside the transaction (so that
    wrong member codes stay counted although the request fails); ``effect(prepared)
    -> (status, body)`` runs inside it, and its rendered response is stored with it.
    """
    merchant = request.user.merchant
    key = services.idempotency_key_check(request.headers.get("Idempotency-Key"))
    fingerprint = services.request_fingerprint(method=request.method, path=request.path, body=request.data)
    answer = services.api_request_replayed(merchant=merchant, key=key, fingerprint=fingerprint)
    if answer is None:
        prepared = prepare()

        def run():
            status, body = effect(prepared)
            return status, JSONRenderer().render(body).decode()

        answer = services.api_request_once(merchant=merchant, key=key, fingerprint=fingerprint, run=run)
    status, text = answer
    return HttpResponse(text, status=status, content_type="application/json")


def _at_store(request, serializer_class) -> tuple[dict, object, object]:
    """Validated input, the caller's own store, and the shopper it names."""
    data = validated(serializer_class, request.data)
    store = services.merchant_store(merchant=request.user.merchant, store_code=data["store_code"])
    return data, store, member_from(caller=request.user, data=data)


# --- purchases ------------------------------------------------------------------------


def _balance_if_told(serializer, member) -> int | None:
    """The shopper's spendable balance, told only to a caller that just presented their
    scanned member code or a redemption token (``tell_balance`` in the context)."""
    if not serializer.context.get("tell_balance"):
        return None
    return ledger.member_points_balance(member=member)


class PurchaseOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    points_earned = serializers.IntegerField(
        source="earn.points", help_text="Points this sale earned, the mall-funded tier extra included (that part is pending "
        "for the refund window before the shopper can spend it)."
    )
    points_balance = serializers.SerializerMethodField(
        help_text="The shopper's spendable balance: only in the answer to a purchase booked with a scanned member_code; "
        "null otherwise (a member number proves nothing about who is at the till)."
    )
    member_present = serializers.BooleanField(help_text="Booked with a scanned member code (the shopper was there).")
    member_no = serializers.CharField(source="member.member_no")
    store_code = serializers.CharField(source="store.code")
    amount_fen = serializers.IntegerField()
    refunded_fen = serializers.IntegerField()
    order_ref = serializers.CharField()
    created_at = serializers.DateTimeField()

    def get_points_balance(self, purchase) -> int | None:
        return _balance_if_told(self, purchase.member)


class PurchaseCreateApi(MerchantApiView):
    class InputSerializer(MemberRefSerializer):
        store_code = StrictCharField(max_length=32, help_text="One of this merchant's stores. 本商户的门店编码。")
        amount_fen = StrictIntegerField(max_setting="MAX_AMOUNT_FEN", help_text="The sale in fen (¥1 = 100), a JSON integer. "
                                        "消费金额，单位为分。")
        order_ref = StrictCharField(max_length=64, required=False, allow_blank=True, default="",
                                    help_text="The POS's own order number, unique per merchant if given. POS 单号。")

    @extend_schema(
        operation_id="purchases_create",
        summary="Record a purchase · 记录一笔消费",
        description="Book a purchase: the shopper earns points funded by this merchant. Scan the shopper's member code (member_code): the sale earns this merchant's points plus the mall-funded "
        "tier extra (pending for the refund window) and the answer tells the shopper's balance. A sale booked by member_no "
        "earns this merchant's points only, and the balance is not told. Wrong member numbers count against the key like "
        "wrong codes.",
        request=InputSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        examples=[
            OpenApiExample("By scanned code", request_only=True, value={
                "member_code": "87408045666652830219846", "store_code": "sh-starbucks", "amount_fen": 3800, "order_ref": "POS-0001"}),
            OpenApiExample("By member number", request_only=True, value={
                "member_no": "100000000017", "store_code": "sh-starbucks", "amount_fen": 3800, "order_ref": "POS-0002"}),
            OpenApiExample("Booked by scanned code", response_only=True, status_codes=["201"], value={
                "id": 1042, "points_earned": 45, "points_balance": 1283, "member_present": True, "member_no": "100000000017",
                "store_code": "sh-starbucks", "amount_fen": 3800, "refunded_fen": 0, "order_ref": "POS-0001",
                "created_at": "2026-03-10T10:30:00+08:00"}),
        ],
        responses={
            201: PurchaseOutputSerializer,
            **merchant_error_responses(**{
                "400": MEMBER_ERRORS + "; idempotency_key_required: the header is missing or malformed",
                "403": "member_not_active: banned; merchant_not_active: the store is closed",
                "404": "store_not_found: not one of this merchant's stores; member_not_found: no such member",
                "409": "idempotency_conflict: the key was used with another body; duplicate_order_ref: this order_ref was already booked; "
                "member_code_used: another merchant scanned this code, ask the shopper for a fresh one",
                **TOO_MANY_CODES,
            }),
        },
        tags=["purchases"],
    )
    def post(self, request):
        def prepare():
            return _at_store(request, self.InputSerializer)

        def effect(prepared):
            data, store, member = prepared
            present = bool(data.get("member_code"))
            purchase = services.purchase_record(
                merchant=request.user.merchant, store=store, member=member, amount_fen=data["amount_fen"],
                order_ref=data["order_ref"], idempotency_key=request.headers["Idempotency-Key"].strip(),
                member_present=present,
            )
            return 201, PurchaseOutputSerializer(purchase, context={"tell_balance": present}).data

        return _once(request, prepare, effect)


class PurchaseDetailApi(MerchantApiView):
    @extend_schema(
        operation_id="purchases_retrieve",
        summary="One purchase · 查询一笔消费",
        description="One of this merchant's purchases.",
        responses={200: PurchaseOutputSerializer, **merchant_error_responses(**{"404": "purchase_not_found: not this merchant's purchase"})},
        tags=["purchases"],
    )
    def get(self, request, purchase_id: int):
        purchase = services.merchant_purchase(merchant=request.user.merchant, purchase_id=purchase_id)
        return Response(PurchaseOutputSerializer(purchase).data)


class PurchaseRefundCreateApi(MerchantApiView):
    class InputSerializer(serializers.Serializer):
        amount_fen = StrictIntegerField(max_setting="MAX_AMOUNT_FEN", help_text="How much of the sale is refunded, in fen.")

    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        purchase_id = serializers.IntegerField()
        amount_fen = serializers.IntegerField()
        points_reversed = serializers.SerializerMethodField(help_text="Points taken back from the shopper.")
        shortfall_points = serializers.IntegerField(source="reversal.shortfall", help_text="Points the shopper had already spent; borne by this merchant.")
        refundable_fen = serializers.SerializerMethodField(help_text="What is left of the purchase to refund.")
        points_balance = serializers.SerializerMethodField(help_text="Always null: the balance is told only with a scanned code.")
        created_at = serializers.DateTimeField()

        def get_points_reversed(self, refund) -> int:
            return -refund.reversal.points

        def get_refundable_fen(self, refund) -> int:
            refund.purchase.refresh_from_db(fields=["refunded_fen"])
            return refund.purchase.amount_fen - refund.purchase.refunded_fen

        def get_points_balance(self, refund) -> int | None:
            return _balance_if_told(self, refund.purchase.member)

    @extend_schema(
        operation_id="purchases_refunds_create",
        summary="Refund a purchase · 消费退款",
        description="Refund part or all of a purchase; its points go back in proportion. Points are taken back in proportion to the amount refunded; partial refunds add up exactly. "
        "The wallet never goes below zero: points the shopper already spent are reported as shortfall_points.",
        request=InputSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        responses={
            201: OutputSerializer,
            **merchant_error_responses(**{
                "400": "validation_error: amount_fen is not a positive JSON integer within bounds; idempotency_key_required",
                "404": "purchase_not_found: not this merchant's purchase",
                "409": "refund_exceeds_purchase: more than what is left of the purchase; idempotency_conflict",
            }),
        },
        tags=["refunds"],
    )
    def post(self, request, purchase_id: int):
        def prepare():
            data = validated(self.InputSerializer, request.data)
            return data, services.merchant_purchase(merchant=request.user.merchant, purchase_id=purchase_id)

        def effect(prepared):
            data, purchase = prepared
            refund = services.purchase_refund(
                purchase=purchase, amount_fen=data["amount_fen"], idempotency_key=request.headers["Idempotency-Key"].strip()
            )
            return 201, self.OutputSerializer(refund).data

        return _once(request, prepare, effect)


# --- redemptions ----------------------------------------------------------------------


class RedemptionOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    points = serializers.IntegerField()
    value_fen = serializers.SerializerMethodField(help_text="What the points are worth (POINT_VALUE_FEN each).")
    returned_points = serializers.IntegerField()
    points_balance = serializers.SerializerMethodField(
        help_text="The shopper's spendable balance after the spend: in the answer to the redemption only; null elsewhere."
    )
    member_no = serializers.CharField(source="member.member_no")
    store_code = serializers.CharField(source="store.code")
    order_ref = serializers.CharField()
    created_at = serializers.DateTimeField()

    def get_value_fen(self, redemption) -> int:
        return redemption.points * settings.POINT_VALUE_FEN

    def get_points_balance(self, redemption) -> int | None:
        return _balance_if_told(self, redemption.member)


class RedemptionCreateApi(MerchantApiView):
    class InputSerializer(ShopperRefSerializer):
        store_code = StrictCharField(max_length=32, help_text="One of this merchant's stores. 本商户的门店编码。")
        points = StrictIntegerField(max_setting="MAX_POINTS", help_text="Points the shopper pays with, a JSON integer. 抵扣的积分数。")
        order_ref = StrictCharField(max_length=64, required=False, allow_blank=True, default="", help_text="POS 单号。")

    @extend_schema(
        operation_id="redemptions_create",
        summary="Pay with points · 积分抵扣",
        description="The shopper pays with points at this merchant's store. Spending needs the shopper. Scan their member code (member_code): it pays once, up to the per-spend "
        "limit (REDEEM_CODE_MAX_POINTS, 5,000 by default). For more, the shopper confirms the amount in the mini-program or "
        "on the member page, which shows a redemption_token (rt_…) for this store, valid about two minutes, used once. "
        "A member_no is refused (400 shopper_required). The shopper gets a message for every spend.",
        request=InputSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        examples=[
            OpenApiExample("By scanned code", request_only=True, value={
                "member_code": "87408045666652830219846", "store_code": "sh-starbucks", "points": 500, "order_ref": "POS-0002"}),
            OpenApiExample("Confirmed in the app", request_only=True, value={
                "redemption_token": "rt_Q2xhaW1lZEJ5VGhlU2hvcHBlcjEyMzQ1", "store_code": "sh-starbucks", "points": 8000}),
            OpenApiExample("Paid", response_only=True, status_codes=["201"], value={
                "id": 311, "points": 500, "value_fen": 500, "returned_points": 0, "points_balance": 783,
                "member_no": "100000000017", "store_code": "sh-starbucks", "order_ref": "POS-0002",
                "created_at": "2026-03-10T16:05:00+08:00"}),
        ],
        responses={
            201: RedemptionOutputSerializer,
            **merchant_error_responses(**{
                "400": MEMBER_ERRORS + "; idempotency_key_required; shopper_required: a member_no, or neither member_code "
                "nor redemption_token; redemption_token_invalid: not a token for this store; redemption_token_expired: "
                "ask the shopper to confirm again",
                "403": "member_not_active: banned; shopper_confirmation_required: more than a scanned code may pay, the "
                "shopper confirms in the app; redemption_token_exceeded: more than the shopper confirmed",
                "404": "store_not_found; member_not_found",
                "409": "insufficient_points: the balance does not cover it, nothing changed (the answer tells the balance); "
                "member_code_used: this code already paid, or another merchant scanned it, ask for a fresh one; redemption_token_used; idempotency_conflict",
                **TOO_MANY_CODES,
            }),
        },
        tags=["redemptions"],
    )
    def post(self, request):
        if isinstance(request.data, dict) and "member_no" in request.data:
            raise ShopperRequired()

        def prepare():
            data = validated(self.InputSerializer, request.data)
            store = services.merchant_store(merchant=request.user.merchant, store_code=data["store_code"])
            if data.get("member_code"):
                return data, store, member_from(caller=request.user, data=data)
            return data, store, None

        def effect(prepared):
            data, store, member = prepared
            redemption = services.redemption_record(
                merchant=request.user.merchant, store=store, member=member, points=data["points"],
                order_ref=data["order_ref"], idempotency_key=request.headers["Idempotency-Key"].strip(),
                member_code=data.get("member_code", ""), redemption_token=data.get("redemption_token", ""),
            )
            return 201, RedemptionOutputSerializer(redemption, context={"tell_balance": True}).data

        return _once(request, prepare, effect)


class RedemptionDetailApi(MerchantApiView):
    @extend_schema(
        operation_id="redemptions_retrieve",
        summary="One redemption · 查询一笔积分抵扣",
        description="One of this merchant's redemptions.",
        responses={200: RedemptionOutputSerializer, **merchant_error_responses(**{"404": "redemption_not_found"})},
        tags=["redemptions"],
    )
    def get(self, request, redemption_id: int):
        redemption = services.merchant_redemption(merchant=request.user.merchant, redemption_id=redemption_id)
        return Response(RedemptionOutputSerializer(redemption).data)


class RedemptionRefundCreateApi(MerchantApiView):
    class InputSerializer(serializers.Serializer):
        points = StrictIntegerField(max_setting="MAX_POINTS", help_text="Points to give back.")

    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        redemption_id = serializers.IntegerField()
        points = serializers.IntegerField()
        points_balance = serializers.SerializerMethodField(help_text="Always null: the balance is told only with a scanned code.")
        created_at = serializers.DateTimeField()

        def get_points_balance(self, refund) -> int | None:
            return _balance_if_told(self, refund.redemption.member)

    @extend_schema(
        operation_id="redemptions_refunds_create",
        summary="Give back a redemption's points · 退还抵扣的积分",
        description="Give back points a redemption took (the sale was cancelled). The points return with the expiry dates they were taken from.",
        request=InputSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        responses={
            201: OutputSerializer,
            **merchant_error_responses(**{
                "400": "validation_error; idempotency_key_required",
                "404": "redemption_not_found",
                "409": "refund_exceeds_purchase: more than the redemption took; idempotency_conflict",
            }),
        },
        tags=["refunds"],
    )
    def post(self, request, redemption_id: int):
        def prepare():
            data = validated(self.InputSerializer, request.data)
            return data, services.merchant_redemption(merchant=request.user.merchant, redemption_id=redemption_id)

        def effect(prepared):
            data, redemption = prepared
            refund = services.redemption_refund(
                redemption=redemption, points=data["points"], idempotency_key=request.headers["Idempotency-Key"].strip()
            )
            return 201, self.OutputSerializer(refund).data

        return _once(request, prepare, effect)


# --- reports --------------------------------------------------------------------------


class DailyReportApi(MerchantApiView):
    class InputSerializer(serializers.Serializer):
        from_ = StrictDateField(help_text="First day, YYYY-MM-DD (mall's local time).")
        to = StrictDateField(help_text="Last day, inclusive.")

        def get_fields(self):
            fields = super().get_fields()
            fields["from"] = fields.pop("from_")
            return fields

    class OutputSerializer(serializers.Serializer):
        day = serializers.DateField()
        customers = serializers.IntegerField(help_text="Distinct shoppers who bought.")
        transactions = serializers.IntegerField()
        sales_fen = serializers.IntegerField()
        refunds_fen = serializers.IntegerField()
        average_ticket_fen = serializers.IntegerField()
        frequency = serializers.CharField(help_text="Transactions per customer (decimal string): sales = customers × average ticket × frequency.")
        points_funded = serializers.IntegerField()
        points_accepted = serializers.IntegerField()

    @extend_schema(
        operation_id="reports_daily",
        summary="Daily report · 日报（顾客数、笔数、销售额、客单价、频次、积分）",
        description="Per day: customers, transactions, sales, average ticket, frequency, points.",
        parameters=[
            OpenApiParameter("from", DAY_SCHEMA, OpenApiParameter.QUERY, required=True,
                             description="First day, YYYY-MM-DD, in the mall's local time (Asia/Shanghai), 2000–2999. 第一天。"),
            OpenApiParameter("to", DAY_SCHEMA, OpenApiParameter.QUERY, required=True,
                             description="Last day, inclusive: not before `from`, at most 92 days in all (else 400 "
                             "invalid_period). 最后一天（含），不早于 from，最多 92 天。"),
        ],
        responses={
            200: OutputSerializer(many=True),
            **merchant_error_responses(**{"400": "validation_error: from/to missing or not dates; invalid_period: to before from, or more than 92 days"}),
        },
        tags=["reports"],
    )
    def get(self, request):
        data = validated(self.InputSerializer, request.query_params)
        rows = reports.merchant_daily_report(merchant=request.user.merchant, first=data["from"], last=data["to"])
        return Response(self.OutputSerializer(rows, many=True).data)


class SettlementApi(MerchantApiView):
    class OutputSerializer(serializers.Serializer):
        period = serializers.CharField()
        funded_points = serializers.IntegerField(help_text="Points this merchant issued, net of refunds taken back.")
        accepted_points = serializers.IntegerField(help_text="Points this merchant took as payment, net of those given back.")
        funded_fen = serializers.IntegerField(help_text="What this merchant owes the pool.")
        accepted_fen = serializers.IntegerField(help_text="What the pool owes this merchant.")
        net_fen = serializers.IntegerField(help_text="accepted − funded: positive, the pool pays the merchant; negative, the merchant pays.")
        collected_fen = serializers.IntegerField(help_text="Shoppers' payments for this merchant's orders that the mall's own "
                                                 "account collected this month (not those collected in partner mode).")
        refunded_fen = serializers.IntegerField(help_text="Of those, what refunds that succeeded this month gave back.")
        payments_due_fen = serializers.IntegerField(help_text="collected − refunded: what the mall owes for payments.")
        coupons_mall_funded_fen = serializers.IntegerField(
            help_text="Discounts of the mall's coupons this merchant took this month (at its tills and on orders paid by "
            "scanning its QR), less those of sales refunded in full this month: the mall owes the merchant this."
        )
        coupons_merchant_funded_fen = serializers.IntegerField(
            help_text="The same for the merchant's own coupons, which it funds: for information, not in total_due_fen."
        )
        total_due_fen = serializers.IntegerField(
            help_text="net_fen + payments_due_fen + coupons_mall_funded_fen: positive, the mall pays the merchant."
        )

    @extend_schema(
        operation_id="settlements_retrieve",
        summary="Monthly settlement · 月度结算单",
        description="The settlement statement for a month: points, payments the mall collected, coupons the mall funded. Points at their value (net_fen), the payments the mall's own account collected for the merchant's "
        "orders (payments_due_fen) and the discounts of the mall's coupons the merchant took (coupons_mall_funded_fen); "
        "total_due_fen is their sum. Refunds and full-refund coupon reversals count in the month they happen.",
        parameters=[OpenApiParameter(
            "period", {"type": "string", "pattern": "^2[0-9]{3}-(?:0[1-9]|1[0-2])$", "example": "2026-11"}, OpenApiParameter.QUERY,
            required=True, description="The month, YYYY-MM, from 2000-01 to 2999-12. 结算月份。",
        )],
        responses={200: OutputSerializer, **merchant_error_responses(**{"400": "invalid_period: not YYYY-MM"})},
        tags=["settlements"],
    )
    def get(self, request):
        period = request.query_params.get("period", "")
        statement = reports.merchant_monthly_settlement(merchant=request.user.merchant, period=period)
        return Response(self.OutputSerializer({**statement.__dict__, "period": period}).data)
