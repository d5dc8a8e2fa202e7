"""Shopper API (/api/mp/v1/): what the WeChat and Alipay mini-programs call.

A shopper logs in (members/api/shopper_login.py) with a code from wx.login (WeChat)
or my.getAuthCode (Alipay) and gets a token; every call here carries it as
``Authorization: Bearer <token>``. Lists are newest first and paged by an opaque
cursor: pass ``next_cursor`` back as ``cursor`` until it is null.
"""

import re
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

from django.db.models import Q
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import CURSOR_PATTERN, QueryIntegerField, StrictCharField, StrictIntegerField, error_responses, validated
from core.errors import ApplicationError
from members import checkin, codes, ledger, pushes, services, shopper
from members.auth import IsShopper, ShopperTokenAuthentication
from members.models import Member
from members.public_notes import transaction_public_description

TAGS = ["shopper"]

AUTH_ERRORS = {
    "401": "not_authenticated: no Authorization header; token_invalid: not a token of ours (forged, malformed, "
    "or signed for another purpose); token_expired: log in again; token_revoked: the membership no longer exists, "
    "log in again (a token of a member merged into another keeps working as that member)",
    "403": "member_banned: this member is banned",
}


class ShopperApiView(APIView):
    """Every shopper endpoint but the logins: a Bearer token of an active member."""

    authentication_classes = [ShopperTokenAuthentication]
    permission_classes = [IsShopper]
    throttle_classes = []

    @property
    def member(self) -> Member:
        return self.request.user.member


# --- cursor pages -----------------------------------------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=dt_timezone.utc)
_CURSOR = re.compile(r"([0-9]{1,17})-([0-9]{1,18})", re.ASCII)  # CURSOR_PATTERN's non-empty form
PAGE_PARAMETERS = [
    OpenApiParameter("cursor", {"type": "string", "maxLength": 36, "pattern": CURSOR_PATTERN}, OpenApiParameter.QUERY,
                     description="next_cursor of the previous page; leave out for the first. 上一页返回的 next_cursor。"),
    OpenApiParameter("limit", {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}, OpenApiParameter.QUERY,
                     description="Entries per page, 1–100 (default 20). 每页条数。"),
]
PAGE_ERRORS = "invalid_cursor: not a cursor this API gave; validation_error: limit is not 1–100"


class PageQuerySerializer(serializers.Serializer):
    cursor = serializers.CharField(required=False, allow_blank=True, default="", max_length=64)
    limit = QueryIntegerField(required=False, default=20, min_value=1, max_value=100)

    def validate(self, data):
        # DRF reads an empty query parameter as a missing one; the schema says it is not.
        if getattr(self, "initial_data", {}).get("limit") == "":
            raise serializers.ValidationError({"limit": ["This field may not be blank."]}, code="blank")
        return data


def _page(queryset, query_params) -> tuple[list, str | None]:
    """One page of ``queryset`` (ordered by -created_at, -id) after the cursor, and the next cursor."""
    query = validated(PageQuerySerializer, query_params)
    if query["cursor"]:
        created_at, pk = _cursor_read(query["cursor"])
        queryset = queryset.filter(Q(created_at__lt=created_at) | Q(created_at=created_at, pk__lt=pk))
    rows = list(queryset[: query["limit"] + 1])
    if len(rows) <= query["limit"]:
        return rows, None
    rows = rows[: query["limit"]]
    last = rows[-1]
    return rows, f"{(last.created_at - _EPOCH) // timedelta(microseconds=1)}-{last.pk}"


def _cursor_read(cursor: str) -> tuple[datetime, int]:
    match = _CURSOR.fullmatch(cursor)
    if match is None:
        raise ApplicationError("This cursor was not given by this API.", code="invalid_cursor")
    try:
        return _EPOCH + timedelta(microseconds=int(match[1])), int(match[2])
    except OverflowError:
        raise ApplicationError("This cursor was not given by this API.", code="invalid_cursor") from None


# --- me ---------------------------------------------------------------------------------------


class MeApi(ShopperApiView):
    class OutputSerializer(serializers.Serializer):
        member_no = serializers.CharField()
        points_balance = serializers.IntegerField(help_text="Spendable points.")
        points_pending = serializers.IntegerField(
            help_text="Points earned but not spendable yet: the mall's share of a sale waits out the refund window (7 days)."
        )
        points_expiring_30d = serializers.IntegerField(help_text="Points that expire within 30 days.")
        tier = serializers.CharField(allow_null=True, help_text="Tier code, e.g. standard, silver, gold, black.")
        tier_name = serializers.CharField(allow_null=True)
        nickname = serializers.CharField()
        gender = serializers.ChoiceField(choices=Member.Gender.choices, help_text="'' unknown, 'f' or 'm'.")
        birthday = serializers.DateField(allow_null=True)
        phone_masked = serializers.CharField(help_text="138****8000, or empty when no phone is bound.")
        unread_messages = serializers.IntegerField()

    class InputSerializer(serializers.Serializer):
        nickname = StrictCharField(max_length=64, required=False, allow_blank=True, trim_whitespace=True)
        birthday = serializers.DateField(required=False, allow_null=True, help_text="YYYY-MM-DD from 1900 to today; null forgets it.")
        gender = serializers.ChoiceField(choices=Member.Gender.choices, required=False, allow_blank=True)

        def validate_birthday(self, value):
            if value is not None and not shopper.birthday_plausible(value):
                raise serializers.ValidationError("A birthday is a date from 1900-01-01 to today.", code="implausible_birthday")
            return value

        def validate(self, data):
            unknown = sorted(set(self.initial_data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError(
                    {name: ["This field cannot be changed here."] for name in unknown}, code="not_editable"
                )
            return data

    @staticmethod
    def _render(member: Member) -> Response:
        return Response(MeApi.OutputSerializer({
            "member_no": member.member_no,
            "points_balance": ledger.member_points_balance(member=member),
            "points_pending": ledger.member_points_pending(member=member),
            "points_expiring_30d": ledger.member_points_expiring(member=member, within_days=30),
            "tier": member.tier.code if member.tier else None,
            "tier_name": member.tier.name if member.tier else None,
            "nickname": member.nickname,
            "gender": member.gender,
            "birthday": member.birthday,
            "phone_masked": services.mask_phone(member.phone),
            "unread_messages": shopper.member_inbox_unread(member=member),
        }).data)

    @extend_schema(
        operation_id="shopper_me_retrieve",
        summary="The shopper's membership: number, points, tier, profile",
        responses={200: OutputSerializer, **error_responses(**AUTH_ERRORS)},
        tags=TAGS,
    )
    def get(self, request):
        return self._render(self.member)

    @extend_schema(
        operation_id="shopper_me_update",
        summary="Change the shopper's nickname, birthday or gender",
        description="Send only what changes. Other fields (phone, member_no …) are refused, not ignored.",
        request=InputSerializer,
        examples=[OpenApiExample("Birthday and gender", request_only=True, value={"birthday": "1990-05-01", "gender": "f"})],
        responses={
            200: OutputSerializer,
            **error_responses(**{
                "400": "validation_error: a field is malformed, too long, out of range or not editable",
                **AUTH_ERRORS,
            }),
        },
        tags=TAGS,
    )
    def patch(self, request):
        data = validated(self.InputSerializer, request.data)
        return self._render(shopper.member_profile_update(member=self.member, **data))


# --- points -----------------------------------------------------------------------------------


class PointsHistoryEntrySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=ledger.Kind.choices)
    points = serializers.IntegerField(help_text="The change to the shopper's balance: positive gained, negative spent.")
    store_code = serializers.CharField(allow_null=True)
    shop = serializers.CharField(allow_null=True, help_text="The shop's name, for purchases and redemptions.")
    reason = serializers.CharField(
        help_text="What the mall tells the shopper about this entry, in the request's language (e.g. \"Points "
        "adjustment by the service desk\" / 积分调整); may be empty. Staff's internal reasons are never included."
    )
    created_at = serializers.DateTimeField()


class PointsHistoryApi(ShopperApiView):
    class OutputSerializer(serializers.Serializer):
        results = PointsHistoryEntrySerializer(many=True)
        next_cursor = serializers.CharField(allow_null=True, help_text="Pass as cursor for the next page; null on the last.")

    @extend_schema(
        operation_id="shopper_points_history",
        summary="The shopper's points history, newest first",
        parameters=PAGE_PARAMETERS,
        responses={200: OutputSerializer, **error_responses(**{"400": PAGE_ERRORS, **AUTH_ERRORS})},
        tags=TAGS,
    )
    def get(self, request):
        member = self.member
        rows, next_cursor = _page(ledger.member_points_history(member=member), request.query_params)
        entries = [
            {
                "id": txn.pk,
                "kind": txn.kind,
                # A transfer is booked from its source's side; its receiver gained what the source lost.
                "points": txn.points if txn.member_id == member.pk else -txn.points,
                "store_code": txn.store.code if txn.store else None,
                "shop": txn.store.name if txn.store else None,
                "reason": transaction_public_description(txn),
                "created_at": txn.created_at,
            }
            for txn in rows
        ]
        return Response(self.OutputSerializer({"results": entries, "next_cursor": next_cursor}).data)


class MemberCodeApi(ShopperApiView):
    class OutputSerializer(serializers.Serializer):
        code = serializers.CharField(help_text="23 digits for a QR or barcode; the POS scans it.")
        expires_at = serializers.DateTimeField(help_text="Show the next code from this moment (codes rotate every minute).")

    @extend_schema(
        operation_id="shopper_member_code",
        summary="The dynamic member code to show at the till",
        responses={200: OutputSerializer, **error_responses(**AUTH_ERRORS)},
        tags=TAGS,
    )
    def get(self, request):
        issued = codes.member_code_issue(member=self.member)
        return Response(self.OutputSerializer({"code": issued.code, "expires_at": issued.expires_at}).data)


class CheckinPlazaSerializer(serializers.Serializer):
    code = serializers.CharField()
    name = serializers.CharField()
    notice = serializers.CharField(help_text="What is on today, or empty.")


class CheckinApi(ShopperApiView):
    class InputSerializer(serializers.Serializer):
        token = StrictCharField(
            max_length=500,
            help_text="The token of the plaza's check-in QR (/m/checkin/<token>/): a printed poster's, or the rotating "
            "one on the plaza's check-in screen.",
        )
        # The phone reports its own location: a weaker proof than the screen's code, taken
        # only by plazas that accept a location inside their geofence (members.checkin).
        latitude = serializers.FloatField(
            required=False, min_value=-90, max_value=90,
            help_text="Where the phone says it is (wx.getLocation / my.getLocation), for plazas that check a geofence. "
            "Reported by the phone itself: a weaker proof than the rotating code.",
        )
        longitude = serializers.FloatField(required=False, min_value=-180, max_value=180)
        coordinate_system = serializers.ChoiceField(
            choices=["wgs84", "gcj02"], required=False,
            help_text="With latitude and longitude: 'wgs84' (GPS; wx.getLocation's default) or 'gcj02' "
            "(wx.getLocation({type: 'gcj02'}), Alipay's my.getLocation).",
        )

        def validate(self, data):
            for name in ("latitude", "longitude"):
                value = self.initial_data.get(name)
                if name in self.initial_data and (isinstance(value, bool) or not isinstance(value, (int, float))):
                    raise serializers.ValidationError({name: ["Must be a JSON number."]}, code="not_a_number")
            given = {"latitude", "longitude", "coordinate_system"} & set(data)
            if given and len(given) != 3:
                raise serializers.ValidationError(
                    "latitude, longitude and coordinate_system come together.", code="incomplete_location"
                )
            return data

    class OutputSerializer(serializers.Serializer):
        points = serializers.IntegerField(help_text="Points this check-in gave (0 when already checked in today).")
        bonus = serializers.IntegerField(help_text="Streak bonus this check-in gave.")
        streak = serializers.IntegerField(help_text="Consecutive days with a check-in anywhere in the group.")
        already = serializers.BooleanField(help_text="Already checked in at this plaza today: nothing was given.")
        balance = serializers.IntegerField(help_text="The points balance after the check-in.")
        plaza = CheckinPlazaSerializer()

    @extend_schema(
        operation_id="shopper_checkin",
        summary="Check in at a plaza by its QR code",
        description="Once per plaza a day; repeating it answers already=true and gives nothing. The code must prove "
        "the shopper is at the plaza as the plaza asks: a refusal carries `accepts`, the proofs it takes (`screen`: "
        "the rotating code on its check-in screen; `printed`: a poster's link before its expiry; `location`: any of "
        "its codes with a location inside its geofence; `permanent`: a link without expiry).",
        request=InputSerializer,
        responses={
            200: OutputSerializer,
            **error_responses(**{
                "400": "checkin_token_invalid: not a check-in QR of ours; checkin_token_expired: the code has expired, "
                "scan the current one; validation_error: malformed input",
                "403": "checkin_proof_required: the plaza does not take this kind of code; checkin_location_required: "
                "the plaza takes this code only with a location; checkin_out_of_range: the location is outside the "
                "plaza's geofence (distance_m says how far); member_banned: this member is banned",
                "404": "plaza_not_found: the plaza is closed",
                "401": AUTH_ERRORS["401"],
            }),
        },
        tags=TAGS,
    )
    def post(self, request):
        data = validated(self.InputSerializer, request.data)
        location = None
        if "latitude" in data:
            location = checkin.checkin_location(
                latitude=data["latitude"], longitude=data["longitude"], datum=data["coordinate_system"]
            )
        code = checkin.checkin_token_read(data["token"])
        result = checkin.checkin_attempt(member=self.member, code=code, location=location)
        return Response(self.OutputSerializer({
            "points": result.points,
            "bonus": result.bonus_points,
            "streak": result.streak,
            "already": result.already,
            "balance": result.points_balance,
            "plaza": result.plaza,
        }).data)


# --- the phone ----------------------------------------------------------------------------------


class PhoneApi(ShopperApiView):
    class InputSerializer(serializers.Serializer):
        encrypted_data = StrictCharField(max_length=4096, help_text="encryptedData from the getPhoneNumber button.")
        iv = StrictCharField(max_length=64, help_text="iv from the getPhoneNumber button.")

    class OutputSerializer(serializers.Serializer):
        phone_masked = serializers.CharField()

    @extend_schema(
        operation_id="shopper_phone_bind",
        summary="Bind the phone number WeChat vouches for (getPhoneNumber)",
        description="Decrypted with the session of the shopper's latest WeChat login: call wx.login() and log "
        "in before showing the getPhoneNumber button.",
        request=InputSerializer,
        responses={
            200: OutputSerializer,
            **error_responses(**{
                "400": "phone_data_invalid: cannot be decrypted with this shopper's WeChat session; "
                "phone_data_wrong_app: issued to another mini-program; invalid_phone: not a number we can reach; "
                "validation_error: malformed input",
                **AUTH_ERRORS,
                "409": "wechat_session_expired: no WeChat session for this shopper, log in with wx.login() again; "
                "phone_taken: another member has this number",
                "503": "platform_not_configured: WeChat mini-program login is not configured here",
            }),
        },
        tags=TAGS,
    )
    def post(self, request):
        data = validated(self.InputSerializer, request.data)
        member = shopper.member_phone_bind_wechat(member=self.member, encrypted_data=data["encrypted_data"], iv=data["iv"])
        return Response(self.OutputSerializer({"phone_masked": services.mask_phone(member.phone)}).data)


# --- the inbox ----------------------------------------------------------------------------------


class InboxMessageSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    title = serializers.CharField()
    body = serializers.CharField()
    link = serializers.CharField(help_text="Where the message leads in the mini-program, or empty.")
    read = serializers.BooleanField()
    created_at = serializers.DateTimeField()


class InboxApi(ShopperApiView):
    class OutputSerializer(serializers.Serializer):
        results = InboxMessageSerializer(many=True)
        next_cursor = serializers.CharField(allow_null=True, help_text="Pass as cursor for the next page; null on the last.")
        unread = serializers.IntegerField(help_text="Unread messages in the whole inbox.")

    @extend_schema(
        operation_id="shopper_inbox",
        summary="The shopper's messages, newest first",
        parameters=PAGE_PARAMETERS,
        responses={200: OutputSerializer, **error_responses(**{"400": PAGE_ERRORS, **AUTH_ERRORS})},
        tags=TAGS,
    )
    def get(self, request):
        member = self.member
        rows, next_cursor = _page(shopper.member_inbox(member=member), request.query_params)
        messages = [
            {"id": m.pk, "title": m.title, "body": m.body, "link": m.link, "read": m.read_at is not None, "created_at": m.created_at}
            for m in rows
        ]
        return Response(self.OutputSerializer({
            "results": messages, "next_cursor": next_cursor, "unread": shopper.member_inbox_unread(member=member),
        }).data)


class InboxReadApi(ShopperApiView):
    class InputSerializer(serializers.Serializer):
        ids = serializers.ListField(
            child=StrictIntegerField(max_value=2**63 - 1), required=False, max_length=500,
            help_text="The messages to mark read; leave out to mark the whole inbox read.",
        )

    class OutputSerializer(serializers.Serializer):
        marked = serializers.IntegerField(help_text="Messages that were unread and are now read.")
        unread = serializers.IntegerField(help_text="Unread messages left.")

    @extend_schema(
        operation_id="shopper_inbox_read",
        summary="Mark messages read",
        description="Ids of messages that are not the shopper's, or already read, are passed over.",
        request=InputSerializer,
        responses={200: OutputSerializer, **error_responses(**{"400": "validation_error: ids is not a list of message ids", **AUTH_ERRORS})},
        tags=TAGS,
    )
    def post(self, request):
        data = validated(self.InputSerializer, request.data)
        marked = pushes.inbox_mark_read(member=self.member, message_ids=data.get("ids"))
        return Response(self.OutputSerializer({"marked": marked, "unread": shopper.member_inbox_unread(member=self.member)}).data)
