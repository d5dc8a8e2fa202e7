"""What every JSON API here shares: the error shape, strict integer fields, the 404.

Every error under /api/ is ``{"code": "...", "message": "..."}`` with a stable code;
validation errors add ``errors``: ``{field: [{"code", "message"}]}``.
"""

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.utils import OpenApiExample, OpenApiResponse
from rest_framework import exceptions, serializers
from rest_framework.response import Response
from rest_framework.views import set_rollback

from core.errors import ApplicationError

# DRF's default codes are already ours, but for these.
_RENAMED_CODES = {"parse_error": "malformed_json", "error": "error", "invalid": "invalid_request"}


def exception_handler(exc, context):
    """DRF's exception handler, speaking our error shape."""
    if isinstance(exc, ApplicationError):
        set_rollback()
        return Response(exc.as_dict(), status=exc.status)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    if not isinstance(exc, exceptions.APIException):
        return None  # a bug: let Django log it and answer 500
    set_rollback()
    headers = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    if getattr(exc, "wait", None):
        headers["Retry-After"] = str(int(exc.wait))
    if isinstance(exc, exceptions.ValidationError):
        body = {"code": "validation_error", "message": "The request is not valid.", "errors": _field_errors(exc.get_full_details())}
    else:
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else "error"
        code = _RENAMED_CODES.get(code, code)
        body = {"code": code, "message": str(exc.detail)}
    return Response(body, status=exc.status_code, headers=headers)


def _field_errors(details):
    if isinstance(details, list):
        if details and isinstance(details[0], dict) and set(details[0]) == {"message", "code"}:
            return [{"code": d["code"], "message": str(d["message"])} for d in details]
        return [_field_errors(d) for d in details]
    if isinstance(details, dict):
        if set(details) == {"message", "code"}:
            return [{"code": details["code"], "message": str(details["message"])}]
        return {field: _field_errors(value) for field, value in details.items()}
    return details


@csrf_exempt  # a POS's POST to a wrong path must get the JSON 404, not a CSRF page
def api_not_found(request, *args, **kwargs):
    """Unknown paths under /api/ answer in the API's shape, not Django's HTML."""
    return JsonResponse({"code": "not_found", "message": "No such endpoint."}, status=404)


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer and nothing else: "100", 1.5, 1.0 and true are refused.

    ``max_setting`` names a setting read at validation time (settings are never
    read at import).
    """

    default_error_messages = {
        "not_an_integer": "Must be a JSON integer (not a string, fraction or boolean).",
        "min_value": "Must be at least {min_value}.",
        "max_value": "Must be at most {max_value}.",
    }

    def __init__(self, *, max_setting: str | None = None, **kwargs):
        self.max_setting = max_setting
        kwargs.setdefault("min_value", 1)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if type(data) is not int:
            self.fail("not_an_integer")
        if self.min_value is not None and data < self.min_value:
            self.fail("min_value", min_value=self.min_value)
        maximum = getattr(settings, self.max_setting) if self.max_setting else self.max_value
        if maximum is not None and data > maximum:
            self.fail("max_value", max_value=maximum)
        return data


class StrictCharField(serializers.CharField):
    """A JSON string and nothing else: 42 and true are refused, not turned into "42"."""

    default_error_messages = {"not_a_string": "Must be a JSON string."}

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("not_a_string")
        return super().to_internal_value(data)


def validated(serializer_class, data) -> dict:
    """``data`` through ``serializer_class``; a ValidationError (400) if it does not fit."""
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class ErrorSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable, machine-readable; branch on this.")
    message = serializers.CharField(help_text="For people; may change.")
    errors = serializers.DictField(required=False, help_text="Validation errors by field: [{code, message}].")


def error_responses(**by_status: str) -> dict:
    """OpenAPI responses for errors: ``error_responses(**{"409": "insufficient_points: …"})``."""
    return {
        int(status): OpenApiResponse(
            response=ErrorSerializer,
            description=description,
            examples=[
                OpenApiExample(
                    code.strip(),
                    value={"code": code.strip(), "message": "…"},
                    response_only=True,
                    status_codes=[str(status)],
                )
                for code in _codes_in(description)
            ],
        )
        for status, description in by_status.items()
    }


def _codes_in(description: str) -> list[str]:
    return [part.split(":")[0].strip() for part in description.split(";") if ":" in part]




def server_error(request, *args, **kwargs):
    """500s under /api/ in the API's shape; elsewhere Django's own page."""
    if request.path.startswith("/api/"):
        return JsonResponse({"code": "server_error", "message": "Something went wrong on our side."}, status=500)
    from django.views.defaults import server_error as django_server_error

    return django_server_error(request, *args, **kwargs)


class AutoSchema(SpectacularAutoSchema):
    """Names components after their view for nested serializers.

    Views keep their ``InputSerializer`` / ``OutputSerializer`` beside them (STYLE.md),
    so the bare class names repeat; ``PurchaseCreateApi.InputSerializer`` becomes
    the component ``PurchaseCreateInput``.
    """

    def get_serializer_name(self, serializer, direction):
        qualname = type(serializer).__qualname__
        if "." not in qualname:
            return super().get_serializer_name(serializer, direction)
        outer, inner = qualname.split(".")[-2:]
        return outer.removesuffix("Api") + inner.removesuffix("Serializer")
