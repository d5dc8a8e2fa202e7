"""The shopper's coupons over HTTP (/api/mp/v1/coupons/, the mini-program): my coupons and
one's rotating till code, the points mall (catalogue, exchange), and the free coupons to
claim (listed, or through a claim QR's code)."""

from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from core.api import StrictCharField, StrictIntegerField, error_responses, validated
from coupons import claims, codes, services
from coupons.api import IDEMPOTENCY_HEADER, KIND_HELP, _idempotency_key
from coupons.models import Coupon
from members.api.shopper import AUTH_ERRORS, PAGE_ERRORS, PAGE_PARAMETERS, ShopperApiView, _page

# --- shopper: my coupons ------------------------------------------------------------------


class ShopperCouponSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    code = serializers.CharField(help_text="The coupon's own code, for orders in the app; at a till show the rotating code.")
    status = serializers.ChoiceField(choices=Coupon.Status.choices)
    name = serializers.CharField(source="template.name")
    description = serializers.CharField(source="template.description")
    kind = serializers.CharField(source="template.kind", help_text=KIND_HELP)
    face_value_fen = serializers.IntegerField(source="template.face_value_fen", help_text="cash_off and voucher: the value.")
    min_spend_fen = serializers.IntegerField(source="template.min_spend_fen")
    percent_off_bp = serializers.IntegerField(source="template.percent_off_bp", help_text="percent_off: 1500 = 15 % off.")
    max_discount_fen = serializers.IntegerField(source="template.max_discount_fen", allow_null=True)
    gift_description = serializers.CharField(source="template.gift_description")
    combines_with_points = serializers.BooleanField(source="template.combines_with_points")
    merchant = serializers.CharField(source="template.merchant.name", allow_null=True, default=None,
                                     help_text="The issuing merchant's name; null for the mall's coupons.")
    stores = serializers.SerializerMethodField(help_text="Names of the accepting stores; empty when all_stores.")
    all_stores = serializers.SerializerMethodField(help_text="Accepted at every store of the merchant (every store for the mall's).")
    valid_from = serializers.DateTimeField()
    valid_until = serializers.DateTimeField()
    redeemed_at = serializers.DateTimeField(allow_null=True)

    def get_stores(self, coupon) -> list[str]:
        return [store.name for store in coupon.template.stores.all()]

    def get_all_stores(self, coupon) -> bool:
        return not coupon.template.stores.all()


class ShopperCouponListApi(ShopperApiView):
    class OutputSerializer(serializers.Serializer):
        results = ShopperCouponSerializer(many=True)
        next_cursor = serializers.CharField(allow_null=True, help_text="Pass as cursor for the next page; null on the last.")

    @extend_schema(
        operation_id="shopper_coupons_list",
        summary="The shopper's coupons, newest first",
        parameters=PAGE_PARAMETERS,
        responses={200: OutputSerializer, **error_responses(**{"400": PAGE_ERRORS, **AUTH_ERRORS})},
        tags=["shopper"],
    )
    def get(self, request):
        rows, next_cursor = _page(services.member_coupons(member=self.member), request.query_params)
        return Response(self.OutputSerializer({"results": rows, "next_cursor": next_cursor}).data)


class ShopperCouponCodeApi(ShopperApiView):
    class OutputSerializer(serializers.Serializer):
        code = serializers.CharField(help_text="24 digits for a QR or barcode; the till scans it.")
        expires_at = serializers.DateTimeField(help_text="Show the next code from this moment (codes rotate every minute).")

    @extend_schema(
        operation_id="shopper_coupon_code",
        summary="The rotating code to show at the till for one coupon",
        request=None,
        responses={
            200: OutputSerializer,
            **error_responses(**{
                "404": "coupon_not_found: not one of the shopper's coupons",
                "409": "coupon_used: already used; coupon_expired: past its validity; coupon_not_valid_yet: before its "
                "validity; coupon_void: cancelled",
                **AUTH_ERRORS,
            }),
        },
        tags=["shopper"],
    )
    def post(self, request, coupon_id: int):
        coupon = services.member_coupon(member=self.member, coupon_id=coupon_id)
        services.coupon_usable_check(coupon=coupon, at=timezone.now())
        issued = codes.coupon_code_issue(coupon=coupon)
        return Response(self.OutputSerializer({"code": issued.code, "expires_at": issued.expires_at}).data)



# --- shopper: the points mall -------------------------------------------------------------


class CatalogueTemplateSerializer(serializers.Serializer):
    id = serializers.IntegerField(help_text="Send as template_id to exchange points for one.")
    name = serializers.CharField()
    description = serializers.CharField()
    kind = serializers.CharField(help_text=KIND_HELP)
    face_value_fen = serializers.IntegerField(help_text="cash_off and voucher: the value.")
    min_spend_fen = serializers.IntegerField()
    percent_off_bp = serializers.IntegerField(help_text="percent_off: 1500 = 15 % off.")
    max_discount_fen = serializers.IntegerField(allow_null=True)
    gift_description = serializers.CharField()
    merchant = serializers.CharField(source="merchant.name", allow_null=True, default=None,
                                     help_text="The issuing merchant's name; null for the mall's coupons.")
    points_price = serializers.IntegerField(help_text="Points one coupon costs.")
    stock_left = serializers.SerializerMethodField(help_text="Coupons left to exchange; null: unlimited.")
    per_member_limit = serializers.IntegerField(help_text="How many of these one member may hold.")
    valid_from = serializers.DateTimeField(allow_null=True, help_text="A fixed window: its start; null with valid_days.")
    valid_until = serializers.DateTimeField(allow_null=True, help_text="A fixed window: its end; null with valid_days.")
    valid_days = serializers.IntegerField(allow_null=True, help_text="Valid this many days from the exchange; null with a window.")

    def get_stock_left(self, template) -> int | None:
        if template.total_quota is None:
            return None
        return max(template.total_quota - template.issued_count, 0)


class ShopperCouponCatalogueApi(ShopperApiView):
    class OutputSerializer(serializers.Serializer):
        results = CatalogueTemplateSerializer(many=True)

    @extend_schema(
        operation_id="shopper_coupon_catalogue",
        summary="The points mall: coupons for sale for points now, cheapest first",
        responses={200: OutputSerializer, **error_responses(**AUTH_ERRORS)},
        tags=["shopper"],
    )
    def get(self, request):
        return Response(self.OutputSerializer({"results": services.coupon_catalogue()}).data)


class ShopperCouponExchangeApi(ShopperApiView):
    class InputSerializer(serializers.Serializer):
        template_id = StrictIntegerField(max_value=2**63 - 1, help_text="The id of a coupon in the catalogue.")

    @extend_schema(
        operation_id="shopper_coupon_exchange",
        summary="Exchange points for one coupon of the points mall",
        description="Debits the coupon's points price and issues the coupon in one transaction: both or neither. "
        "Retrying with the same Idempotency-Key returns the coupon issued the first time (201), whatever "
        "happened since.",
        request=InputSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        examples=[OpenApiExample("One coupon", request_only=True, value={"template_id": 42})],
        responses={
            201: ShopperCouponSerializer,
            **error_responses(**{
                "400": "idempotency_key_required: the header is missing or malformed; validation_error: template_id "
                "is not a positive integer; invalid_amount: the points price is beyond what one exchange may move",
                "404": "coupon_template_not_found: no such coupon",
                "409": "insufficient_points: the spendable balance is below the points price; coupon_quota_exhausted: "
                "sold out; coupon_member_limit_reached: the shopper holds as many as one may; coupon_not_for_points: "
                "not for sale for points; coupon_template_paused: not being issued now; coupon_not_on_sale_yet: its "
                "window has not begun; coupon_template_ended: its validity has ended; idempotency_conflict: the key "
                "was used for another coupon or by another shopper",
                **AUTH_ERRORS,
                "403": AUTH_ERRORS["403"] + "; member_not_active: banned or merged; merchant_not_active: the "
                "issuing merchant is suspended",
            }),
        },
        tags=["shopper"],
    )
    def post(self, request):
        key = _idempotency_key(request)
        data = validated(self.InputSerializer, request.data)
        template = services.catalogue_template(template_id=data["template_id"])
        coupon = services.coupon_exchange(member=self.member, template=template, idempotency_key=key)
        coupon = services.member_coupons(member=self.member).get(pk=coupon.pk)  # with its template's stores
        return Response(ShopperCouponSerializer(coupon).data, status=201)


# --- shopper: free coupons to claim -------------------------------------------------------


class ClaimOfferSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="template.id", help_text="Send as template_id to claim one.")
    name = serializers.CharField(source="template.name")
    description = serializers.CharField(source="template.description")
    kind = serializers.CharField(source="template.kind", help_text=KIND_HELP)
    face_value_fen = serializers.IntegerField(source="template.face_value_fen", help_text="cash_off and voucher: the value.")
    min_spend_fen = serializers.IntegerField(source="template.min_spend_fen")
    percent_off_bp = serializers.IntegerField(source="template.percent_off_bp", help_text="percent_off: 1500 = 15 % off.")
    max_discount_fen = serializers.IntegerField(source="template.max_discount_fen", allow_null=True)
    gift_description = serializers.CharField(source="template.gift_description")
    merchant = serializers.CharField(source="template.merchant.name", allow_null=True, default=None,
                                     help_text="The issuing merchant's name; null for the mall's coupons.")
    stock_left = serializers.IntegerField(allow_null=True, help_text="Coupons left to claim; null: unlimited.")
    per_member_limit = serializers.IntegerField(source="template.per_member_limit", help_text="How many one member may hold.")
    held = serializers.IntegerField(help_text="How many of these the shopper holds already (used or not).")
    can_claim = serializers.BooleanField(help_text="False once the shopper holds per_member_limit of them.")
    valid_from = serializers.DateTimeField(source="template.valid_from", allow_null=True,
                                           help_text="A fixed window: its start; null with valid_days.")
    valid_until = serializers.DateTimeField(source="template.valid_until", allow_null=True,
                                            help_text="A fixed window: its end; null with valid_days.")
    valid_days = serializers.IntegerField(source="template.valid_days", allow_null=True,
                                          help_text="Valid this many days from the claim; null with a window.")


class ShopperCouponClaimableApi(ShopperApiView):
    class OutputSerializer(serializers.Serializer):
        results = ClaimOfferSerializer(many=True)

    @extend_schema(
        operation_id="shopper_coupons_claimable",
        summary="Free coupons the shopper may claim now, oldest first",
        description="Listed, active, free coupons within their window with stock left, each with how many the shopper "
        "holds and whether they may claim another. A coupon reached only by its claim QR is not listed.",
        responses={200: OutputSerializer, **error_responses(**AUTH_ERRORS)},
        tags=["shopper"],
    )
    def get(self, request):
        offers = claims.claimable_templates(member=self.member, at=timezone.now())
        return Response(self.OutputSerializer({"results": offers}).data)


class ShopperCouponClaimApi(ShopperApiView):
    class InputSerializer(serializers.Serializer):
        template_id = StrictIntegerField(required=False, max_value=2**63 - 1, help_text="A coupon of the claimable list.")
        claim_code = StrictCharField(
            required=False, max_length=64,
            help_text="The code of a claim QR: the last part of its link /m/coupons/claim/<claim_code>/.",
        )

        def validate(self, data):
            if ("template_id" in data) == ("claim_code" in data):
                raise serializers.ValidationError("Send template_id or claim_code, one of them.", code="template_or_claim_code")
            return data

    @extend_schema(
        operation_id="shopper_coupon_claim",
        summary="Claim one free coupon: listed (template_id) or from a claim QR (claim_code)",
        description="Issues one coupon to the shopper, within the coupon's quota and per-member limit. Retrying with "
        "the same Idempotency-Key returns the coupon the first request issued (201), so a double tap takes one even "
        "where a shopper may hold several. A claim QR claims its coupon even when it is not listed; a listed coupon's "
        "id claims nothing that is not listed.",
        request=InputSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        examples=[
            OpenApiExample("A listed coupon", request_only=True, value={"template_id": 42}),
            OpenApiExample("From a claim QR", request_only=True, value={"claim_code": "7KQ2MZ4XH9RTB3WNC8PD"}),
        ],
        responses={
            201: ShopperCouponSerializer,
            **error_responses(**{
                "400": "idempotency_key_required: the header is missing or malformed; validation_error: neither or "
                "both of template_id and claim_code (template_or_claim_code), or one of the wrong type",
                "404": "coupon_template_not_found: no such coupon to claim (not listed, or an unknown claim code)",
                "409": "coupon_for_points: sold for points in the points mall, not claimed; coupon_claim_not_open: its "
                "window has not started; coupon_template_paused: not being issued now; coupon_template_ended: its "
                "validity has ended; coupon_quota_exhausted: all claimed; coupon_member_limit_reached: the shopper "
                "holds as many as one may; idempotency_conflict: the key was used for another coupon",
                **AUTH_ERRORS,
                "403": AUTH_ERRORS["403"] + "; member_not_active: banned or merged; merchant_not_active: the "
                "issuing merchant is suspended",
            }),
        },
        tags=["shopper"],
    )
    def post(self, request):
        key = _idempotency_key(request)
        data = validated(self.InputSerializer, request.data)
        if "claim_code" in data:
            template, via_code = claims.template_by_claim_code(data["claim_code"]), True
        else:
            template, via_code = claims.claimable_template(template_id=data["template_id"]), False
        coupon = claims.coupon_claim(member=self.member, template=template, via_code=via_code, at=timezone.now(),
                                     request_key=key)
        coupon = services.member_coupons(member=self.member).get(pk=coupon.pk)  # with its template's stores
        return Response(ShopperCouponSerializer(coupon).data, status=201)
