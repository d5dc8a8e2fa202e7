"""Shopper API (/api/mp/v1/auth/…): logging in from the mini-programs.

Each login answers a token for ``Authorization: Bearer <token>`` on the rest of the
shopper API (members/api/shopper.py). Attempts are throttled per client address.
"""

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import AutoSchema, StrictCharField, api_not_found, error_responses, validated
from members import shopper
from members.api.shopper import TAGS
from members.auth import ShopperLoginThrottle, shopper_token_issue

LOGIN_ERRORS = {
    "403": "member_banned: this member is banned; login_refused: the platform refuses to log this user in",
    "429": "throttled: too many login attempts from this address (see Retry-After)",
    "502": "platform_bad_response: the platform answered something unusable; platform_rejected: the platform "
    "refused our credentials",
    "503": "platform_not_configured: this platform is not configured here; platform_unavailable: the platform "
    "did not answer, try again",
}


class ShopperLoginApiView(APIView):
    """The logins: no token, attempts throttled per client address."""

    authentication_classes = []
    permission_classes = []
    throttle_classes = [ShopperLoginThrottle]


class LoginOutputSerializer(serializers.Serializer):
    token = serializers.CharField(help_text="Send as 'Authorization: Bearer <token>'.")
    member_no = serializers.CharField()
    expires_at = serializers.DateTimeField(help_text="Log in again after this.")
    created = serializers.BooleanField(help_text="Whether this login made a new member.")


def _logged_in(found) -> Response:
    issued = shopper_token_issue(member=found.member)
    body = {"token": issued.token, "member_no": found.member.member_no, "expires_at": issued.expires_at, "created": found.created}
    return Response(LoginOutputSerializer(body).data)


class WeChatLoginApi(ShopperLoginApiView):
    class InputSerializer(serializers.Serializer):
        code = StrictCharField(max_length=128, help_text="The code from wx.login(), valid once, for 5 minutes.")

    @extend_schema(
        operation_id="shopper_auth_wechat",
        summary="Log in from the WeChat mini-program",
        description="Exchanges the wx.login() code through WeChat (jscode2session). A shopper WeChat has not "
        "seen here becomes a member on the spot; one who follows the official account is the same member "
        "(linked by unionid). Nothing is created when WeChat refuses the code or does not answer.",
        request=InputSerializer,
        responses={
            200: LoginOutputSerializer,
            **error_responses(**{
                "400": "login_code_invalid: the code is wrong, expired or used, call wx.login() again; "
                "validation_error: malformed input",
                **LOGIN_ERRORS,
            }),
        },
        tags=TAGS,
    )
    def post(self, request):
        data = validated(self.InputSerializer, request.data)
        return _logged_in(shopper.shopper_login_wechat(code=data["code"]))


class AlipayLoginApi(ShopperLoginApiView):
    class InputSerializer(serializers.Serializer):
        auth_code = StrictCharField(max_length=128, help_text="The authCode from my.getAuthCode().")

    @extend_schema(
        operation_id="shopper_auth_alipay",
        summary="Log in from the Alipay mini-program",
        description="Exchanges the auth code through Alipay (alipay.system.oauth.token) for the user's "
        "user_id, or open_id for apps on Alipay's open_id standard; a new Alipay user becomes a member on the "
        "spot. Nothing is created when Alipay refuses the code or does not answer.",
        request=InputSerializer,
        responses={
            200: LoginOutputSerializer,
            **error_responses(**{
                "400": "login_code_invalid: the auth code is wrong, expired, used or for another app; "
                "validation_error: malformed input",
                **LOGIN_ERRORS,
            }),
        },
        tags=TAGS,
    )
    def post(self, request):
        data = validated(self.InputSerializer, request.data)
        return _logged_in(shopper.shopper_login_alipay(auth_code=data["auth_code"]))


class SandboxOnlySchema(AutoSchema):
    """Outside sandbox mode the operation is left out of the document, as it is of the site."""

    def is_excluded(self) -> bool:
        return not settings.O2O_SANDBOX or super().is_excluded()


class DemoLoginApi(ShopperLoginApiView):
    schema = SandboxOnlySchema()

    class InputSerializer(serializers.Serializer):
        member_no = StrictCharField(
            max_length=16, required=False, allow_blank=True, default="",
            help_text="A demo shopper to log in as (e.g. one seed_demo made); leave out for a new one.",
        )

    def dispatch(self, request, *args, **kwargs):
        # Outside sandbox mode this endpoint does not exist: the answer is the one
        # any unknown /api/ path gets, whatever the method.
        if not settings.O2O_SANDBOX:
            return api_not_found(request)
        return super().dispatch(request, *args, **kwargs)

    @extend_schema(
        operation_id="shopper_auth_demo",
        summary="Sandbox only: log in as a demo shopper",
        description="Exists only in sandbox mode (O2O_SANDBOX); elsewhere it is 404 like any unknown path. "
        "Logs in as the demo shopper with this member number (only members with a demo identity), "
        "or as a new demo shopper.",
        request=InputSerializer,
        responses={
            200: LoginOutputSerializer,
            **error_responses(**{
                "400": "validation_error: malformed input",
                "403": "member_banned: this member is banned",
                "404": "demo_member_not_found: no demo shopper has this number",
                "429": LOGIN_ERRORS["429"],
            }),
        },
        tags=TAGS,
    )
    def post(self, request):
        data = validated(self.InputSerializer, request.data)
        return _logged_in(shopper.shopper_login_demo(member_no=data["member_no"]))
