"""Shopper API: confirming a spend of points in the app (POST /api/mp/v1/redemption-tokens/).

A scanned member code pays at most REDEEM_CODE_MAX_POINTS at the till. For more, the
shopper confirms the amount here and shows the returned ``redemption_token`` (as a QR
code or the text) to the cashier, whose POS sends it to POST /api/v1/redemptions/.
"""

from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from core.api import StrictCharField, StrictIntegerField, error_responses, validated
from members import spend
from members.api.shopper import AUTH_ERRORS, TAGS, ShopperApiView


class RedemptionTokenCreateApi(ShopperApiView):
    class InputSerializer(serializers.Serializer):
        store_code = StrictCharField(max_length=32, help_text="The shop's code, from its payment QR (/m/pay/<store_code>/).")
        points = StrictIntegerField(max_setting="MAX_POINTS", help_text="The most the shop may take, a JSON integer.")

    class OutputSerializer(serializers.Serializer):
        redemption_token = serializers.CharField(help_text="Show it to the cashier (QR or text); used once.")
        expires_at = serializers.DateTimeField()
        max_points = serializers.IntegerField()
        store_code = serializers.CharField()
        store_name = serializers.CharField()

    @extend_schema(
        operation_id="shopper_redemption_token_create",
        summary="Confirm paying with points at a shop: a single-use token for the cashier",
        description="For spends above what a scanned member code may pay. The token is bound to this member, this shop "
        "and at most `points`; it is valid about two minutes and pays once.",
        request=InputSerializer,
        examples=[OpenApiExample("Confirm 8,000 points", request_only=True, value={"store_code": "sh-starbucks", "points": 8000})],
        responses={
            201: OutputSerializer,
            **error_responses(**{
                **AUTH_ERRORS,
                "400": "validation_error: points is not a positive JSON integer within bounds",
                "403": f"{AUTH_ERRORS['403']}; merchant_not_active: the shop does not take points now",
                "404": "store_not_found: no such shop",
                "409": "insufficient_points: more than the spendable balance",
            }),
        },
        tags=TAGS,
    )
    def post(self, request):
        data = validated(self.InputSerializer, request.data)
        store = spend.spend_store(store_code=data["store_code"])
        issued = spend.spend_token_issue(member=self.member, store=store, max_points=data["points"])
        return Response(self.OutputSerializer({
            "redemption_token": issued.token, "expires_at": issued.expires_at, "max_points": issued.max_points,
            "store_code": store.code, "store_name": store.name,
        }).data, status=201)
