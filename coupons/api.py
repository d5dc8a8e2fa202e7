"""Coupons over HTTP: the till redeems (merchant API, /api/v1/coupon-redemptions/), the
shopper lists theirs and shows one's rotating code (shopper API, /api/mp/v1/coupons/).

A coupon is used at a till only with the shopper there (DESIGN.md "The closed loop", 3):
the rotating code the shopper's app shows for that coupon, or the shopper's scanned
member code with the coupon's id. A coupon's static code or a member number is refused
(400 shopper_required): a merchant may know either without the shopper.
"""

import hashlib
import json

from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from core.api import StrictCharField, StrictIntegerField, error_responses, validated
from core.errors import ApplicationError, NotFound
from coupons import codes, services
from coupons.models import Coupon, CouponTemplate
from members import ledger
from members.api.merchant import MEMBER_ERRORS, MerchantApiView, ShopperRequired, member_from, merchant_error_responses
from members.api.shopper import AUTH_ERRORS, PAGE_ERRORS, PAGE_PARAMETERS, ShopperApiView, _page
from members.models import Member, Store

IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key", str, OpenApiParameter.HEADER, required=True,
    description="1–200 printable ASCII characters, unique per operation (a UUID is a good choice). "
    "Retrying with the same key and body returns the first response.",
)


class IdempotencyKeyMissing(ApplicationError):
    """Every POST needs an Idempotency-Key header (1 to 200 printable ASCII characters)."""

    code = "idempotency_key_required"


def _idempotency_key(request) -> str:
    key = (request.headers.get("Idempotency-Key") or "").strip()
    if not key or len(key) > 200 or not key.isascii() or not key.isprintable():
        raise IdempotencyKeyMissing()
    return key


def _fingerprint(request) -> str:
    canonical = json.dumps([request.method, request.path, request.data], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


KIND_HELP = "cash_off (face value off a sale of at least min_spend), percent_off (capped), voucher (face value) or gift."


# --- merchant: redeem at the till ---------------------------------------------------------


class CouponRedemptionOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    coupon_id = serializers.IntegerField()
    kind = serializers.CharField(source="coupon.template.kind", help_text=KIND_HELP)
    discount_fen = serializers.IntegerField(help_text="Take this off the sale (0 for a gift coupon: hand over the gift).")
    gift_description = serializers.CharField(source="coupon.template.gift_description", help_text="What to hand over, for a gift coupon.")
    amount_fen = serializers.IntegerField()
    combines_with_points = serializers.BooleanField(
        source="coupon.template.combines_with_points", help_text="Whether the shopper may also pay part of this sale with points."
    )
    funded_by = serializers.ChoiceField(
        choices=CouponTemplate.FundedBy.choices, source="coupon.template.funded_by",
        help_text="Who bears the discount in settlement: this merchant or the mall.",
    )
    store_code = serializers.CharField(source="store.code")
    order_ref = serializers.CharField()
    redeemed_at = serializers.DateTimeField(source="created_at")


class CouponRedemptionCreateApi(MerchantApiView):
    class InputSerializer(serializers.Serializer):
        coupon_code = StrictCharField(
            required=False, max_length=64,
            help_text="The 24-digit rotating code the shopper's app shows for one coupon (scanned): valid about a minute.",
        )
        member_code = StrictCharField(
            required=False, max_length=64, help_text="The shopper's scanned 23-digit member code, with coupon_id."
        )
        coupon_id = StrictIntegerField(required=False, max_value=2**63 - 1, help_text="Which of the shopper's coupons, with member_code.")
        store_code = StrictCharField(max_length=32)
        amount_fen = StrictIntegerField(max_setting="MAX_AMOUNT_FEN", help_text="The sale before the coupon, in fen.")
        order_ref = StrictCharField(max_length=64, required=False, allow_blank=True, default="")

        def validate(self, data):
            by_code = bool(data.get("coupon_code"))
            by_member = bool(data.get("member_code")) and data.get("coupon_id") is not None
            if by_code == by_member or (by_code and (data.get("member_code") or data.get("coupon_id") is not None)):
                raise serializers.ValidationError(
                    "Send coupon_code, or member_code with coupon_id.", code="shopper_required"
                )
            return data

    @extend_schema(
        operation_id="coupon_redemptions_create",
        summary="Use a shopper's coupon on a sale at this merchant's store",
        description="The shopper must be there: scan the rotating code their app shows for the coupon (coupon_code), or "
        "their member code (member_code) with the coupon's id. A coupon's static code or a member_no is refused "
        "(shopper_required). A coupon is used once, within its validity, at a store its template accepts; the answer "
        "says how much to take off (discount_fen). Wrong codes count against the key like wrong member codes.",
        request=InputSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        examples=[OpenApiExample("By the coupon's code", request_only=True, value={
            "coupon_code": "000000000004231234567890", "store_code": "sh-starbucks", "amount_fen": 12000, "order_ref": "POS-0003"})],
        responses={
            201: CouponRedemptionOutputSerializer,
            **merchant_error_responses(**{
                "400": MEMBER_ERRORS + "; idempotency_key_required: the header is missing or malformed; shopper_required: "
                "a member_no, a coupon's static code, or neither coupon_code nor member_code with coupon_id; "
                "coupon_code_invalid: not a coupon code; coupon_code_expired: ask the shopper to refresh it; "
                "min_spend_not_met: the sale is below the coupon's minimum spend",
                "403": "member_not_active: banned; store_not_accepted: this coupon is not accepted at this store",
                "404": "store_not_found: not one of this merchant's stores; coupon_not_found: no such coupon of this shopper; "
                "member_not_found: no such member",
                "409": "coupon_used: already used; coupon_expired: past its validity; coupon_not_valid_yet: before its "
                "validity; coupon_void: cancelled; member_code_used: another merchant scanned this code; "
                "idempotency_conflict: the key was used with another body",
                "429": "too_many_invalid_codes: too many wrong coupon or member codes",
            }),
        },
        tags=["coupons"],
    )
    def post(self, request):
        if isinstance(request.data, dict) and "member_no" in request.data:
            raise ShopperRequired()
        caller = request.user
        key = _idempotency_key(request)
        fingerprint = _fingerprint(request)
        replay = services.coupon_redemption_replayed(merchant=caller.merchant, idempotency_key=key, request_hash=fingerprint)
        if replay is None:
            data = validated(self.InputSerializer, request.data)
            store = Store.objects.select_related("merchant").filter(merchant=caller.merchant, code=data["store_code"]).first()
            if store is None:
                raise NotFound("no such store for this merchant", code="store_not_found")
            coupon, authorised_by = _coupon_presented(caller, data)
            replay = services.coupon_redeem(
                coupon=coupon, merchant=caller.merchant, store=store, amount_fen=data["amount_fen"], idempotency_key=key,
                request_hash=fingerprint, order_ref=data["order_ref"], authorised_by=authorised_by,
            )
        body = JSONRenderer().render(CouponRedemptionOutputSerializer(replay).data)
        return HttpResponse(body, status=201, content_type="application/json")


def _coupon_presented(caller, data: dict) -> tuple[Coupon, str]:
    """The coupon the shopper at the till presented, and how."""
    if data.get("coupon_code"):
        if not codes.coupon_code_looks_rotating(data["coupon_code"]):
            raise ShopperRequired("A coupon's printed code is not accepted at the till: scan the code the shopper's app shows.")
        coupon = codes.coupon_code_check(code=data["coupon_code"], caller=caller.key.prefix)
        if coupon.member.status == Member.Status.BANNED:
            raise ledger.MemberNotActive()
        return coupon, "coupon_code"
    member = member_from(caller=caller, data={"member_code": data["member_code"]})
    coupon = Coupon.objects.select_related("template").filter(member=member, pk=data["coupon_id"]).first()
    if coupon is None:
        raise services.CouponNotFound()
    return coupon, "member_code"


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
                "not for sale for points; coupon_template_paused: not being issued now; coupon_template_ended: its "
                "validity has ended; idempotency_conflict: the key was used for another coupon or by another shopper",
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
