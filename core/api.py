"""What every JSON API here shares: the error shape, strict integer fields, the 404.

Every error under /api/ is ``{"code": "...", "message": "..."}`` with a stable code;
validation errors add ``errors``: ``{field: [{"code", "message"}]}``.
"""

import re

from django.conf import settings
from django.core.validators import RegexValidator
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse
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

    def __init__(self, *, max_setting: str | None = None, openapi=None, **kwargs):
        self.max_setting = max_setting
        self.openapi = openapi  # a dict, or a function returning one (read when the schema is made)
        kwargs.setdefault("min_value", 1)
        super().__init__(**kwargs)

    @property
    def maximum(self) -> int | None:
        """The largest value accepted now (a setting's value, read when asked)."""
        return getattr(settings, self.max_setting) if self.max_setting else self.max_value

    def to_internal_value(self, data):
        if type(data) is not int:
            self.fail("not_an_integer")
        if self.min_value is not None and data < self.min_value:
            self.fail("min_value", min_value=self.min_value)
        maximum = self.maximum
        if maximum is not None and data > maximum:
            self.fail("max_value", max_value=maximum)
        return data


class StrictCharField(serializers.CharField):
    """A JSON string and nothing else: 42 and true are refused, not turned into "42".

    Taken as sent: surrounding spaces are not trimmed (so that "" is the only blank
    string and max_length counts what was sent); services strip the codes they read.
    ``openapi`` adds to the field's OpenAPI schema what the server checks elsewhere (a
    ``pattern`` a service enforces with its own error code, say), so that the schema
    states every rule: ``StrictCharField(openapi={"pattern": "^[0-9]{23}$"})``.
    """

    default_error_messages = {"not_a_string": "Must be a JSON string."}

    def __init__(self, *, openapi: dict | None = None, **kwargs):
        self.openapi = openapi or {}
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("not_a_string")
        return super().to_internal_value(data)


class QueryIntegerField(serializers.IntegerField):
    """An integer in a query string: ASCII digits only ("20", not "20.0", " 20" or "٢٠")."""

    _shape = re.compile("-?[0-9]{1,19}", re.ASCII)

    def to_internal_value(self, data):
        if not isinstance(data, str) or self._shape.fullmatch(data) is None:
            self.fail("invalid")
        return super().to_internal_value(data)


# The cursors the paged lists give: "<microseconds since 1970>-<id>" (or empty: the first page).
CURSOR_PATTERN = "^(?:[0-9]{1,17}-[0-9]{1,18})?$"


# A day as the reports take it: YYYY-MM-DD in ASCII digits, from 2000 to 2999.
DAY_PATTERN = "^2[0-9]{3}-[0-9]{2}-[0-9]{2}$"
DAY_SCHEMA = {"type": "string", "format": "date", "pattern": DAY_PATTERN}


class StrictDateField(serializers.DateField):
    """YYYY-MM-DD exactly (DRF's DateField also takes "2026-3-1" and non-ASCII digits)."""

    # Any year: the reports refuse those outside 2000–2999 with their own code (invalid_period).
    _shape = re.compile("[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)

    def to_internal_value(self, value):
        if not isinstance(value, str) or self._shape.fullmatch(value) is None:
            self.fail("invalid", format="YYYY-MM-DD")
        return super().to_internal_value(value)


def validated(serializer_class, data) -> dict:
    """``data`` through ``serializer_class``; a ValidationError (400) if it does not fit."""
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


# DRF refuses strings with a NUL character (ProhibitNullCharactersValidator).
NO_NUL_PATTERN = "^[^\\u0000]*$"

# What payments.services.idempotency_key_check accepts: 1–200 printable ASCII characters,
# without surrounding spaces (a header's value never has them).
IDEMPOTENCY_KEY_PATTERN = r"^[!-~](?:[ -~]{0,198}[!-~])?$"


def idempotency_key_parameter(*, required: bool = True, reserved_prefix: str = "", description: str = "") -> OpenApiParameter:
    """The Idempotency-Key header of a POST, as the server checks it."""
    pattern = IDEMPOTENCY_KEY_PATTERN
    if reserved_prefix:
        pattern = f"^(?!{re.escape(reserved_prefix)}){pattern[1:]}"
    return OpenApiParameter(
        "Idempotency-Key", {"type": "string", "minLength": 1, "maxLength": 200, "pattern": pattern},
        OpenApiParameter.HEADER, required=required,
        description=description or "1–200 printable ASCII characters, unique per operation (a UUID is a good choice). "
        "Retrying with the same key and body returns the first response. "
        "幂等键：1–200 个可打印 ASCII 字符，每次操作唯一（建议用 UUID）；用同一个键和同样的内容重试，返回第一次的结果。",
    )


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

    def _map_serializer_field(self, field, direction, bypass_extensions=False):
        """The field's schema, stating the rules this project's fields enforce beyond DRF's own.

        In requests a CharField that refuses "" gets ``minLength: 1`` (drf-spectacular only
        says so with COMPONENT_SPLIT_REQUEST) and, unless it has a pattern of its own, one
        that refuses NUL characters (DRF does, and PostgreSQL could not store them); a
        StrictIntegerField whose maximum is a setting gets that ``maximum``; a field's
        ``openapi`` (a dict, or a function returning one) is merged in.
        """
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        if schema is None or "$ref" in schema:
            return schema
        extra = getattr(field, "openapi", None) or {}
        extra = extra() if callable(extra) else extra
        if direction == "request" and isinstance(field, serializers.CharField) and schema.get("type") == "string":
            if not field.allow_blank:
                schema.setdefault("minLength", 1)
            if not ({"pattern", "enum"} & set(extra)) and not any(isinstance(v, RegexValidator) for v in field.validators):
                # drf-spectacular offers "" beside a pattern of a field that allows blank (oneOf): the two must not overlap.
                schema["pattern"] = NO_NUL_PATTERN.replace("*", "+") if field.allow_blank else NO_NUL_PATTERN
        if isinstance(field, StrictIntegerField) and field.maximum is not None:
            schema["maximum"] = field.maximum
        schema.update(extra)
        return schema

    def _map_basic_serializer(self, serializer, direction):
        """The object's schema with the serializer's ``openapi`` merged in: the rules between
        fields that ``validate()`` enforces (``oneOf`` of the required ones, say)."""
        schema = super()._map_basic_serializer(serializer, direction)
        extra = getattr(serializer, "openapi", None)
        if direction == "request" and extra:
            schema = {**schema, **extra, "properties": {**schema.get("properties", {}), **extra.get("properties", {})}}
        return schema

    def get_serializer_name(self, serializer, direction):
        qualname = type(serializer).__qualname__
        if "." not in qualname:
            return super().get_serializer_name(serializer, direction)
        outer, inner = qualname.split(".")[-2:]
        return outer.removesuffix("Api") + inner.removesuffix("Serializer")
