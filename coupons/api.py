"""Coupons over HTTP: the till redeems (merchant API, /api/v1/coupon-redemptions/). The
shopper's endpoints (/api/mp/v1/coupons/) are in coupons/api_shopper.py.

A coupon is used at a till only with the shopper there (DESIGN.md "The closed loop", 3):
the rotating code the shopper's app shows for that coupon, or the shopper's scanned
member code with the coupon's id. A coupon's static code or a member number is refused
(400 shopper_required): a merchant may know either without the shopper.
"""

import hashlib
import json

from django.http import HttpResponse
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.renderers import JSONRenderer

from core.api import StrictCharField, StrictIntegerField, idempotency_key_parameter, validated
from core.errors import ApplicationError, NotFound
from coupons import codes, holds, services
from coupons.holds import ORDER_KEY_PREFIX
from coupons.models import Coupon, CouponTemplate
from members import ledger
from members.api.merchant import (
    MEMBER_CODE_SCHEMA,
    MEMBER_ERRORS,
    MEMBER_NO_REFUSED,
    MerchantApiView,
    ShopperRequired,
    member_from,
    merchant_error_responses,
)
from members.models import Member, Store

IDEMPOTENCY_HEADER = idempotency_key_parameter(
    reserved_prefix=ORDER_KEY_PREFIX,
    description="1–200 printable ASCII characters, unique per operation (a UUID is a good choice), not beginning with "
    f"{ORDER_KEY_PREFIX!r} (kept for paid orders). Retrying with the same key and body returns the first response. "
    "幂等键：1–200 个可打印 ASCII 字符，每次操作唯一（建议用 UUID），不能以 order: 开头。",
)


class IdempotencyKeyMissing(ApplicationError):
    """Every POST needs an Idempotency-Key header (1 to 200 printable ASCII characters)."""

    code = "idempotency_key_required"


def _idempotency_key(request) -> str:
    key = (request.headers.get("Idempotency-Key") or "").strip()
    if not key or len(key) > 200 or not key.isascii() or not key.isprintable():
        raise IdempotencyKeyMissing()
    if key.startswith(ORDER_KEY_PREFIX):
        # The redemptions of paid orders are keyed so (coupons.holds): a till's key must
        # not take an order's place.
        raise ApplicationError(f"an Idempotency-Key may not begin with {ORDER_KEY_PREFIX!r}", code="invalid_idempotency_key")
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
    reversed_at = serializers.DateTimeField(
        allow_null=True, help_text="When the sale was cancelled or refunded in full: the coupon was given back. Null: in force.",
    )


class CouponRedemptionCreateApi(MerchantApiView):
    class InputSerializer(serializers.Serializer):
        # coupon_code alone, or member_code with coupon_id; never a member_no.
        openapi = {
            "oneOf": [
                {"required": ["coupon_code"], "not": {"anyOf": [{"required": ["member_code"]}, {"required": ["coupon_id"]}]}},
                {"required": ["member_code", "coupon_id"], "not": {"required": ["coupon_code"]}},
            ],
            "properties": {"member_no": MEMBER_NO_REFUSED},
        }

        coupon_code = StrictCharField(
            required=False, max_length=64, openapi={"pattern": "^[0-9]{24}$", "example": "000000000004231234567890"},
            help_text="The 24-digit rotating code the shopper's app shows for one coupon (scanned): valid about a minute. "
            "A coupon's printed static code (with letters) is refused: 400 shopper_required. 顾客 App 中优惠券的 24 位动态码。",
        )
        member_code = StrictCharField(
            required=False, max_length=64, openapi=MEMBER_CODE_SCHEMA,
            help_text="The shopper's scanned 23-digit member code, with coupon_id. 顾客的 23 位会员动态码（与 coupon_id 一起）。",
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
        summary="Redeem a coupon at the till · 核销优惠券",
        description="Use a shopper's coupon on a sale at this merchant's store. The shopper must be there: scan the rotating code their app shows for the coupon (coupon_code), or "
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
                "400": MEMBER_ERRORS + "; idempotency_key_required: the header is missing or malformed; invalid_idempotency_key: the key begins with \"order:\" (kept for paid orders); shopper_required: "
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


CANCEL_KEY_HEADER = OpenApiParameter(
    "Idempotency-Key", str, OpenApiParameter.HEADER, required=False,
    description="Accepted like on every POST, and not needed: cancelling twice answers the same.",
)


class CouponRedemptionCancelApi(MerchantApiView):
    @extend_schema(
        operation_id="coupon_redemptions_cancel",
        summary="Cancel a coupon redemption · 撤销核销（退回优惠券）",
        description="Cancel a sale a coupon was used on: the shopper gets the coupon back. For a sale cancelled or refunded in full at the till. The coupon is issued again (within its "
        "validity the shopper can use it again) and its discount leaves the settlement. A coupon used on an order "
        "(paid by scanning the shop's QR) is given back by refunding the order in full instead. Cancelling twice "
        "answers the same.\n\n撤销使用了优惠券的交易（整单取消或全额退款）：优惠券退回给顾客，优惠金额不再计入结算。",
        request=None,
        parameters=[CANCEL_KEY_HEADER],
        responses={200: CouponRedemptionOutputSerializer, **merchant_error_responses(**{
            "404": "coupon_redemption_not_found: not one of this merchant's coupon redemptions",
            "409": "coupon_redemption_of_an_order: used on an order; refund the order instead",
        })},
        tags=["coupons"],
    )
    def post(self, request, redemption_id: int):
        redemption = holds.coupon_redemption_cancel(merchant=request.user.merchant, redemption_id=redemption_id)
        return HttpResponse(JSONRenderer().render(CouponRedemptionOutputSerializer(redemption).data), content_type="application/json")


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
