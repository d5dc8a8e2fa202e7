"""A merchant's campaigns over the merchant API (/api/v1/campaigns/): ask for one, follow
it, cancel it. The merchant sees counts and results, rounded, and never a member
(coupons.merchant_campaigns says how).
"""

from django.conf import settings
from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from core.api import StrictCharField, StrictIntegerField, validated
from coupons import merchant_campaigns
from coupons.api import IDEMPOTENCY_HEADER, _idempotency_key
from coupons.campaigns import AUDIENCE_SEGMENTS
from coupons.models import Campaign
from members.api.merchant import MerchantApiView, merchant_error_responses
from members.api.shopper import PAGE_ERRORS, PAGE_PARAMETERS, _page

TAGS = ["campaigns"]
# The API spells "any member" as "any"; the model stores it as "".
SCOPES = {"any": Campaign.MerchantScope.ANY, "customers": Campaign.MerchantScope.CUSTOMERS,
          "non_customers": Campaign.MerchantScope.NON_CUSTOMERS}
SCOPE_NAMES = {value: name for name, value in SCOPES.items()}
STATUS_HELP = ("pending (awaiting the mall's approval), active (runs nightly within its window), paused, ended (by its "
               "end, or cancelled) or rejected (review_note says why).")
ROUNDING = ("Counts are rounded down to tens (above 1,000 to two significant figures), money to ¥100 (above ¥10,000 "
            "to two significant figures); a figure of fewer than `minimum` members is null.")


class CampaignEstimateSerializer(serializers.Serializer):
    value = serializers.FloatField()
    low = serializers.FloatField(help_text="95 % confidence interval, lower end.")
    high = serializers.FloatField(help_text="95 % confidence interval, upper end.")


class CampaignMoneyEstimateSerializer(serializers.Serializer):
    """Money is integer fen: the estimate in fen, each end rounded to the whole yuan."""

    value = serializers.IntegerField()
    low = serializers.IntegerField(help_text="95 % confidence interval, lower end.")
    high = serializers.IntegerField(help_text="95 % confidence interval, upper end.")


class CampaignGroupSerializer(serializers.Serializer):
    targeted = serializers.IntegerField()
    pushed = serializers.IntegerField(help_text="Sent the message (treated group; 0 for the holdout).")
    opened = serializers.IntegerField(help_text="Read the message in their inbox.")
    redeemed = serializers.IntegerField(help_text="Used the coupon.")
    came_back = serializers.IntegerField(help_text="Checked in or bought anywhere in the mall within window_days of being targeted.")
    comeback_rate = serializers.FloatField(help_text="came_back / targeted, from the exact counts, to 0.001.")
    spend_fen = serializers.IntegerField(help_text="What they spent in the mall within the window, rounded.")
    spend_per_member_fen = serializers.IntegerField(help_text="spend / targeted, to the yuan.")


class CampaignResultsSerializer(serializers.Serializer):
    window_days = serializers.IntegerField(help_text="Days after targeting a comeback counts.")
    targeted = serializers.IntegerField(allow_null=True, help_text="Members targeted so far, both groups.")
    treated = CampaignGroupSerializer(allow_null=True, help_text="Got the coupon and the message; null while fewer than `minimum`.")
    holdout = CampaignGroupSerializer(allow_null=True, help_text="Drawn at random, got nothing: the comparison. Null while fewer than `minimum`.")
    incremental_comeback = CampaignEstimateSerializer(
        allow_null=True, help_text="Treated minus holdout comeback rate: what the campaign added. Null unless both groups are shown."
    )
    incremental_spend_per_member_fen = CampaignMoneyEstimateSerializer(
        allow_null=True, help_text="Treated minus holdout spend per member, in fen, to the yuan. Null unless both groups are shown."
    )


class MerchantCampaignSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="campaign.pk")
    name = serializers.CharField(source="campaign.name")
    status = serializers.CharField(source="campaign.status", help_text=STATUS_HELP)
    template_id = serializers.IntegerField(source="campaign.template_id")
    segments = serializers.ListField(child=serializers.CharField(), source="campaign.segments")
    merchant_scope = serializers.SerializerMethodField(help_text="any, customers or non_customers.")
    lapsed_min_days = serializers.IntegerField(source="campaign.lapsed_min_days", allow_null=True)
    message_title = serializers.CharField(source="campaign.message_title")
    message_body = serializers.CharField(source="campaign.message_body")
    starts_at = serializers.DateTimeField(source="campaign.starts_at")
    ends_at = serializers.DateTimeField(source="campaign.ends_at", allow_null=True)
    max_targets = serializers.IntegerField(source="campaign.max_targets", help_text="At most this many members, holdout included (the mall may lower it).")
    cooldown_days = serializers.IntegerField(source="campaign.cooldown_days")
    holdout_pct = serializers.IntegerField(source="campaign.holdout_pct", help_text="Percent of the audience held out.")
    review_note = serializers.CharField(source="campaign.review_note", help_text="The mall's note on approval or rejection.")
    reviewed_at = serializers.DateTimeField(source="campaign.reviewed_at", allow_null=True)
    created_at = serializers.DateTimeField(source="campaign.created_at")
    minimum = serializers.IntegerField(help_text="The smallest audience and group whose figures are shown.")
    audience_requested = serializers.IntegerField(
        allow_null=True, help_text="Members who matched when asked, rounded; counted up to 100,000 (100000: at least that many)."
    )

    def get_merchant_scope(self, report) -> str:
        return SCOPE_NAMES[report.campaign.merchant_scope]


class MerchantCampaignDetailSerializer(MerchantCampaignSerializer):
    results = CampaignResultsSerializer(allow_null=True, help_text="Null while pending or rejected. " + ROUNDING)


RESULT_EXAMPLE = OpenApiExample("A campaign that ran", response_only=True, status_codes=["200"], value={
    "id": 17, "name": "Autumn comeback", "status": "active", "template_id": 42, "segments": ["lapsed"],
    "merchant_scope": "customers", "lapsed_min_days": None, "message_title": "好久不见",
    "message_body": "回来喝一杯：满 100 减 20，本月有效。", "starts_at": "2026-09-01T10:00:00+08:00",
    "ends_at": "2026-09-30T22:00:00+08:00", "max_targets": 2000, "cooldown_days": 90, "holdout_pct": 10,
    "review_note": "", "reviewed_at": "2026-08-30T15:12:00+08:00", "created_at": "2026-08-29T09:30:00+08:00",
    "minimum": 50, "audience_requested": 1800,
    "results": {
        "window_days": 30, "targeted": 1800,
        "treated": {"targeted": 1600, "pushed": 1600, "opened": 710, "redeemed": 180, "came_back": 320,
                    "comeback_rate": 0.198, "spend_fen": 3_900_000, "spend_per_member_fen": 2400},
        "holdout": {"targeted": 180, "pushed": 0, "opened": 0, "redeemed": 0, "came_back": 20,
                    "comeback_rate": 0.117, "spend_fen": 250_000, "spend_per_member_fen": 1300},
        "incremental_comeback": {"value": 0.081, "low": 0.029, "high": 0.133},
        "incremental_spend_per_member_fen": {"value": 1100, "low": 200, "high": 2000},
    },
})


class CampaignListApi(MerchantApiView):
    """GET lists the merchant's campaigns; POST asks for a new one."""

    class InputSerializer(serializers.Serializer):
        name = StrictCharField(max_length=100, help_text="For the merchant and the mall's staff; shoppers do not see it.")
        template_id = StrictIntegerField(
            max_value=2**63 - 1, help_text="One of this merchant's own coupon templates, funded by the merchant and active."
        )
        segments = serializers.ListField(
            child=StrictCharField(max_length=32, openapi=lambda: {"enum": sorted(AUDIENCE_SEGMENTS)}),
            max_length=len(AUDIENCE_SEGMENTS), required=False, default=list,
            help_text="Lifecycle segments, any of them: " + ", ".join(sorted(AUDIENCE_SEGMENTS - {"high_value"}))
            + "; with high_value, only the high-value members of those. Empty: every member.",
        )
        merchant_scope = serializers.ChoiceField(
            choices=list(SCOPES), default="any",
            help_text="customers: only members who bought at one of this merchant's stores; non_customers: only those who "
            "never did; any: both.",
        )
        lapsed_min_days = StrictIntegerField(
            required=False, allow_null=True, default=None, max_value=merchant_campaigns.MAX_LAPSED_DAYS,
            help_text="Only members not seen anywhere in the mall for at least this many days.",
        )
        message_title = StrictCharField(max_length=100, help_text="The push's title, sent with the coupon.")
        message_body = StrictCharField(max_length=500)
        starts_at = serializers.DateTimeField(help_text="Runs from here (after approval), nightly.")
        ends_at = serializers.DateTimeField(required=False, allow_null=True, default=None, help_text="Null: until cancelled.")
        max_targets = StrictIntegerField(
            required=False, allow_null=True, default=None, max_value=2**31 - 1, openapi=lambda: {
                "minimum": merchant_campaigns.minimum_audience(), "maximum": settings.MERCHANT_CAMPAIGN_MAX_TARGETS},
            help_text="At most this many members, holdout included: from the minimum audience (50) to "
            "MERCHANT_CAMPAIGN_MAX_TARGETS (10,000); null: the largest.",
        )
        cooldown_days = StrictIntegerField(
            required=False, allow_null=True, default=None, max_value=merchant_campaigns.MAX_LAPSED_DAYS,
            openapi=lambda: {"minimum": Campaign._meta.get_field("cooldown_days").default},
            help_text="Leave out members any campaign reached within this many days: at least the mall's (90).",
        )

    class OutputSerializer(serializers.Serializer):
        results = MerchantCampaignSerializer(many=True)
        next_cursor = serializers.CharField(allow_null=True, help_text="Pass as cursor for the next page; null on the last.")

    @extend_schema(
        operation_id="campaigns_list",
        summary="List campaigns · 营销活动列表",
        description="This merchant's campaigns, newest first. Each campaign's request and state; its results are in the campaign's own page. "
        "本商户的营销活动（最新在前）。",
        parameters=PAGE_PARAMETERS,
        responses={200: OutputSerializer, **merchant_error_responses(**{"400": PAGE_ERRORS})},
        tags=TAGS,
    )
    def get(self, request):
        rows, next_cursor = _page(merchant_campaigns.merchant_campaigns(merchant=request.user.merchant), request.query_params)
        reports = [merchant_campaigns.merchant_campaign_report(campaign=c, with_results=False) for c in rows]
        return Response(self.OutputSerializer({"results": reports, "next_cursor": next_cursor}).data)

    @extend_schema(
        operation_id="campaigns_create",
        summary="Request a campaign · 申请营销活动",
        description="Ask the mall for a coupon campaign to a segment of its members. The mall sends one of this merchant's own coupons with a message to the members who match, keeping "
        "a random holdout (10 %) that gets nothing so that the results are what the campaign added. The merchant never "
        "sees who they are: the audience is counted now and must reach the minimum (50 members; fewer is refused "
        "without saying how many), every figure shown is rounded, and a group of fewer than the minimum shows null. "
        "The campaign awaits the mall's approval (status pending); the mall may lower max_targets. Each request counts "
        "against a daily allowance (10), refused ones too. Retrying with the same Idempotency-Key and body returns the "
        "campaign as it is now (201).\n\n"
        "商户向一个会员分群申请优惠券营销：只看到人数和效果，看不到任何会员；人数不足 50 人的申请会被拒绝（不告知具体人数），"
        "所有数字均经取整；经商场审核后按计划发送，并保留 10% 的对照组。",
        request=InputSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        examples=[OpenApiExample("Wake up lapsed customers", request_only=True, value={
            "name": "Autumn comeback", "template_id": 42, "segments": ["lapsed"], "merchant_scope": "customers",
            "message_title": "好久不见", "message_body": "回来喝一杯：满 100 减 20，本月有效。",
            "starts_at": "2026-09-01T10:00:00+08:00", "ends_at": "2026-09-30T22:00:00+08:00", "max_targets": 2000})],
        responses={
            201: MerchantCampaignDetailSerializer,
            **merchant_error_responses(**{
                "400": "idempotency_key_required: the header is missing or malformed; validation_error: malformed input; "
                "invalid_segments: not a list of known segments; invalid_campaign: ends_at not after starts_at and now, "
                "max_targets, cooldown_days or lapsed_min_days out of range",
                "404": "coupon_template_not_found: not one of this merchant's coupon templates",
                "409": "audience_too_small: fewer members than the minimum match; coupon_template_not_merchant_funded: "
                "the coupon is funded by the mall; coupon_template_paused: the coupon is not being issued; "
                "coupon_template_ended: the coupon's validity has ended; idempotency_conflict: the key was used with "
                "another body",
                "429": "too_many_campaigns: as many campaigns pending or running as allowed (3); "
                "too_many_campaign_requests: as many requests today as allowed",
            }),
        },
        tags=TAGS,
    )
    def post(self, request):
        key = _idempotency_key(request)
        data = validated(self.InputSerializer, request.data)
        campaign = merchant_campaigns.merchant_campaign_request(
            merchant=request.user.merchant, idempotency_key=key, at=timezone.now(),
            **{**data, "merchant_scope": SCOPES[data["merchant_scope"]]},
        )
        return Response(MerchantCampaignDetailSerializer(merchant_campaigns.merchant_campaign_report(campaign=campaign)).data, status=201)


class CampaignDetailApi(MerchantApiView):
    @extend_schema(
        operation_id="campaigns_retrieve",
        summary="One campaign with its results · 营销活动详情与效果",
        description="One of this merchant's campaigns, with its results. Counts only, never a member. " + ROUNDING + " The incremental figures compare the treated group with "
        "the holdout (95 % confidence interval) and show only when both groups are shown.\n\n"
        "营销活动详情与效果：仅显示取整后的人数与金额，人数少于下限的分组不显示。",
        responses={200: MerchantCampaignDetailSerializer, **merchant_error_responses(**{
            "404": "campaign_not_found: not one of this merchant's campaigns"})},
        examples=[RESULT_EXAMPLE],
        tags=TAGS,
    )
    def get(self, request, campaign_id: int):
        campaign = merchant_campaigns.merchant_campaign(merchant=request.user.merchant, campaign_id=campaign_id)
        return Response(MerchantCampaignDetailSerializer(merchant_campaigns.merchant_campaign_report(campaign=campaign)).data)


CANCEL_KEY_HEADER = OpenApiParameter(
    "Idempotency-Key", str, OpenApiParameter.HEADER, required=False,
    description="Accepted like on every POST, and not needed: cancelling twice answers the same.",
)


class CampaignCancelApi(MerchantApiView):
    @extend_schema(
        operation_id="campaigns_cancel",
        summary="Cancel a campaign · 取消营销活动",
        description="Cancel a campaign: a pending one never runs, a running one reaches no one more. Coupons already issued stay valid. Cancelling again answers the same (no Idempotency-Key needed). "
        "\n\n取消营销活动：待审核的不再执行，进行中的不再发送；已发出的优惠券仍然有效。",
        request=None,
        parameters=[CANCEL_KEY_HEADER],
        responses={200: MerchantCampaignDetailSerializer, **merchant_error_responses(**{
            "404": "campaign_not_found: not one of this merchant's campaigns",
            "409": "campaign_not_cancellable: the campaign was rejected"})},
        tags=TAGS,
    )
    def post(self, request, campaign_id: int):
        campaign = merchant_campaigns.merchant_campaign_cancel(merchant=request.user.merchant, campaign_id=campaign_id)
        return Response(MerchantCampaignDetailSerializer(merchant_campaigns.merchant_campaign_report(campaign=campaign)).data)
