"""Credentials: merchant API keys (shopper tokens come with the shopper API)."""

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.throttling import SimpleRateThrottle

from members.models import Merchant, MerchantApiKey

KEY_PREFIX = "mk_"


def _hash(raw_key: str) -> str:
    # API keys carry 256 random bits, so a fast hash is enough: no dictionary to guard against.
    return hashlib.sha256(raw_key.encode()).hexdigest()


def merchant_api_key_create(*, merchant: Merchant, name: str = "default") -> tuple[MerchantApiKey, str]:
    """A new key for ``merchant``; the raw key is returned once and never stored."""
    prefix = secrets.token_hex(6)
    raw_key = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    key = MerchantApiKey.objects.create(merchant=merchant, name=name, prefix=prefix, key_hash=_hash(raw_key))
    return key, raw_key


def merchant_api_key_verify(*, raw_key: str) -> MerchantApiKey | None:
    """The live key matching ``raw_key``, or None. Records its last use (at most once a minute)."""
    if not raw_key.startswith(KEY_PREFIX) or raw_key.count("_") < 2:
        return None
    prefix = raw_key[len(KEY_PREFIX):].split("_", 1)[0]
    key = MerchantApiKey.objects.select_related("merchant").filter(prefix=prefix, revoked_at__isnull=True).first()
    if key is None or not hmac.compare_digest(key.key_hash, _hash(raw_key)):
        return None
    now = timezone.now()
    if key.last_used_at is None or (now - key.last_used_at).total_seconds() > 60:
        MerchantApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
    return key


def merchant_api_key_revoke(*, key: MerchantApiKey) -> None:
    MerchantApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())


# --- the merchant API's authentication and throttling (Django REST framework) ---------


@dataclass(frozen=True)
class MerchantCaller:
    """``request.user`` of a merchant API call: the merchant and the key it used."""

    merchant: Merchant
    key: MerchantApiKey
    is_authenticated: bool = True


class MerchantKeyAuthentication(BaseAuthentication):
    """``Authorization: Bearer <api_key>``."""

    keyword = "Bearer"

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        scheme, _, raw_key = header.partition(" ")
        if scheme.lower() != "bearer" or not raw_key.strip():
            raise exceptions.AuthenticationFailed("Use 'Authorization: Bearer <api_key>'.", code="invalid_api_key")
        key = merchant_api_key_verify(raw_key=raw_key.strip())
        if key is None:
            raise exceptions.AuthenticationFailed("The API key is wrong or revoked.", code="invalid_api_key")
        return MerchantCaller(merchant=key.merchant, key=key), key

    def authenticate_header(self, request):
        return 'Bearer realm="merchant-api"'


class IsActiveMerchant(BasePermission):
    def has_permission(self, request, view):
        caller = request.user
        if not isinstance(caller, MerchantCaller):
            raise exceptions.NotAuthenticated("An API key is required: 'Authorization: Bearer <api_key>'.")
        if not caller.merchant.is_active:
            raise exceptions.PermissionDenied("The merchant is suspended or closed.", code="merchant_not_active")
        return True


class MerchantKeyThrottle(SimpleRateThrottle):
    """Requests per API key, counted in the shared cache (all workers see one count)."""

    scope = "merchant_api"

    def get_rate(self):
        return settings.MERCHANT_API_RATE

    def get_cache_key(self, request, view):
        if not isinstance(request.user, MerchantCaller):
            return None
        return f"throttle:merchant-key:{request.user.key.prefix}"


class MerchantKeyScheme(OpenApiAuthenticationExtension):
    target_class = "members.auth.MerchantKeyAuthentication"
    name = "merchantApiKey"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "A merchant API key (mk_…), shown once when issued."}
