"""Merchant API (/api/v1/) over members: the shared base view and the member lookup."""

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import StrictCharField, error_responses
from core.errors import ApplicationError, NotFound
from core.ratelimit import guesses_counted
from members import codes, ledger, services, spend
from members.identity import member_active
from members.auth import IsActiveMerchant, MerchantCaller, MerchantKeyAuthentication, MerchantKeyThrottle
from members.models import Member


# Errors any merchant call can get, merged into each operation's own.
COMMON_ERRORS = {
    "401": "not_authenticated: no Authorization header; invalid_api_key: the key is wrong or revoked",
    "403": "merchant_not_active: the merchant is suspended or closed",
    "429": "throttled: too many requests for this key (see Retry-After)",
}


def merchant_error_responses(**by_status: str) -> dict:
    """OpenAPI error responses for a merchant operation: its own plus COMMON_ERRORS."""
    merged = dict(by_status)
    for status, common in COMMON_ERRORS.items():
        merged[status] = f"{merged[status]}; {common}" if status in merged else common
    return error_responses(**merged)


class MerchantApiView(APIView):
    """Every merchant endpoint: a Bearer API key, an active merchant, a per-key throttle."""

    authentication_classes = [MerchantKeyAuthentication]
    permission_classes = [IsActiveMerchant]
    throttle_classes = [MerchantKeyThrottle]


# The shapes members.codes and the member numbers have; a code of the right shape may
# still be wrong or expired (400 member_code_invalid / member_code_expired).
MEMBER_CODE_SCHEMA = {"pattern": "^[0-9]{23}$", "example": "87408045666652830219846"}
MEMBER_NO_SCHEMA = {"pattern": "^[0-9]{12}$", "example": "100000000017"}
MEMBER_NO_REFUSED = {
    "not": {}, "description": "Refused (400 shopper_required): spending needs the shopper, a member number proves nothing. "
    "不接受会员号：使用积分/优惠券须顾客本人在场。",
}


class MemberRefSerializer(serializers.Serializer):
    """Who the shopper is: the scanned dynamic code, or the member number they say (exactly one)."""

    openapi = {"oneOf": [{"required": ["member_code"]}, {"required": ["member_no"]}]}

    member_code = StrictCharField(
        required=False, max_length=64, openapi=MEMBER_CODE_SCHEMA,
        help_text="The 23-digit code from the member card (scanned). Only a sale booked with a scanned code earns the "
        "mall-funded tier extra. 扫描顾客会员卡上的 23 位动态码。",
    )
    member_no = StrictCharField(
        required=False, max_length=16, openapi=MEMBER_NO_SCHEMA,
        help_text="The 12-digit member number: the sale earns this merchant's points only (no mall-funded extra, no tier "
        "spend). 12 位会员号（仅积本商户的分）。",
    )

    def validate(self, data):
        if bool(data.get("member_code")) == bool(data.get("member_no")):
            raise serializers.ValidationError("Send exactly one of member_code and member_no.", code="member_required")
        return data


class ShopperRefSerializer(serializers.Serializer):
    """Who pays with points: the shopper, by a scanned code or a redemption they confirmed (exactly one)."""

    openapi = {
        "oneOf": [{"required": ["member_code"]}, {"required": ["redemption_token"]}],
        "properties": {"member_no": MEMBER_NO_REFUSED},
    }

    member_code = StrictCharField(
        required=False, max_length=64, openapi=MEMBER_CODE_SCHEMA,
        help_text="The 23-digit code from the member card, scanned now: pays once, up to the per-spend limit (5,000 points by default). "
        "扫描顾客的 23 位会员动态码。",
    )
    redemption_token = StrictCharField(
        required=False, max_length=100, openapi={"pattern": "^rt_[A-Za-z0-9_-]{32}$"},
        help_text="rt_…: a redemption the shopper confirmed in the app for this store and up to a number of points; "
        "single use, valid about two minutes.",
    )

    def validate(self, data):
        if bool(data.get("member_code")) == bool(data.get("redemption_token")):
            raise serializers.ValidationError(
                "Send exactly one of member_code and redemption_token.", code="shopper_required"
            )
        return data


class TooManyInvalidMemberNumbers(ApplicationError):
    """Too many unknown member numbers from this key; try again later."""

    code = "too_many_invalid_member_numbers"
    status = 429


class ShopperRequired(ApplicationError):
    """Spending points needs the shopper: a scanned member_code or a redemption_token, never a member number."""

    code = "shopper_required"


def member_from(*, caller: MerchantCaller, data: dict) -> Member:
    """The active member a scanned code or a member number names (a merged one: its survivor)."""
    if data.get("member_code"):
        member = codes.member_code_check(code=data["member_code"], caller=caller.key.prefix)
        spend.member_code_claim(code=data["member_code"], member=member, merchant=caller.merchant)
    else:
        # Member numbers are printed and shown in many places, so they are not secret, but
        # trying numbers at random is still counted and stopped, like wrong codes.
        member = guesses_counted(
            name="member-no-guesses", caller=caller.key.prefix, limit=codes.GUESS_LIMIT,
            window_seconds=codes.GUESS_WINDOW_SECONDS, attempt=lambda: services.member_by_no(member_no=data["member_no"]),
            wrong=(NotFound,), refused=TooManyInvalidMemberNumbers,
        )
    member = member_active(member)
    if member.status != Member.Status.ACTIVE:
        raise ledger.MemberNotActive()
    return member


MEMBER_ERRORS = (
    "member_code_invalid: not a member code; member_code_expired: ask the shopper to refresh the card; "
    "validation_error: malformed input"
)


class MemberLookupApi(MerchantApiView):
    class OutputSerializer(serializers.Serializer):
        member_no = serializers.CharField()
        tier = serializers.CharField(allow_null=True, help_text="Tier code, e.g. standard, silver, gold, black.")
        tier_name = serializers.CharField(allow_null=True)
        points_balance = serializers.IntegerField()
        name_masked = serializers.CharField(help_text="Nickname with all but the first character masked.")
        phone_masked = serializers.CharField(help_text="138****8000, or empty.")

    @extend_schema(
        operation_id="members_lookup",
        summary="Look up a scanned member code · 扫码查询会员",
        description="Look up the shopper behind a scanned member code. What a cashier needs and no more. Wrong codes count against the key: past 20 in 10 minutes "
        "every code is refused with 429 too_many_invalid_codes. A code belongs to the first merchant that scans it "
        "(for its 90 seconds): another merchant gets 409 member_code_used.",
        parameters=[OpenApiParameter(
            "code", {"type": "string", "minLength": 1, "maxLength": 64, **MEMBER_CODE_SCHEMA}, OpenApiParameter.QUERY,
            required=True, description="The scanned 23-digit member code. A code of this shape may still be wrong or "
            "expired: 400 member_code_invalid / member_code_expired. 扫描到的 23 位会员动态码。",
        )],
        responses={
            200: OutputSerializer,
            **merchant_error_responses(
                **{"400": MEMBER_ERRORS, "403": "member_not_active: banned or merged",
                   "404": "member_not_found: no such member",
                   "409": "member_code_used: another merchant scanned this code; ask the shopper for a fresh one",
                   "429": "too_many_invalid_codes: too many wrong member codes"}
            ),
        },
        examples=[OpenApiExample("A gold member", response_only=True, status_codes=["200"], value={
            "member_no": "100000000017", "tier": "gold", "tier_name": "金卡", "points_balance": 1283,
            "name_masked": "王**", "phone_masked": "138****8000"})],
        tags=["lookup"],
    )
    def get(self, request):
        code = request.query_params.get("code", "")
        if not code:
            raise ApplicationError("the code query parameter is required", code="member_code_invalid")
        member = member_from(caller=request.user, data={"member_code": code})
        return Response(
            self.OutputSerializer(
                {
                    "member_no": member.member_no,
                    "tier": member.tier.code if member.tier else None,
                    "tier_name": member.tier.name if member.tier else None,
                    "points_balance": ledger.member_points_balance(member=member),
                    "name_masked": services.mask_name(member.nickname),
                    "phone_masked": services.mask_phone(member.phone),
                }
            ).data
        )
