"""Credentials: merchant API keys, and the shopper tokens of the mini-program API."""

import hashlib
import hmac
import secrets
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core import signing
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission

from core.ratelimit import AtomicRateThrottle
from members.models import Member, Merchant, MerchantApiKey

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


class MerchantKeyThrottle(AtomicRateThrottle):
    """Requests per API key, one atomic count that all workers share."""

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


# --- shopper tokens (the mini-program API, /api/mp/v1/) --------------------------------

# The audience of a shopper token. Signatures under any other salt (a check-in link, a
# session cookie, anything else signed with SECRET_KEY) never verify as one.
SHOPPER_TOKEN_SALT = "members.auth.shopper-token"
# The layout of the payload; a token of another layout is refused, not misread.
SHOPPER_TOKEN_FORMAT = 1


@dataclass(frozen=True)
class ShopperToken:
    token: str
    expires_at: datetime


def _shopper_signer() -> signing.Signer:
    # SECRET_KEY_FALLBACKS verify too, so rotating SECRET_KEY does not log everyone out at once.
    return signing.Signer(salt=SHOPPER_TOKEN_SALT, algorithm="sha256")


def shopper_token_issue(*, member: Member, now: datetime | None = None) -> ShopperToken:
    """A bearer token for ``member``, valid SHOPPER_TOKEN_TTL_SECONDS from ``now``.

    Stateless: nothing is stored. What a token must not outlive (a ban, a merge) is
    checked against the member on every request, not baked into the token.
    """
    now = now or timezone.now()
    expires_at = now + timedelta(seconds=_shopper_token_ttl())
    payload = {"m": member.pk, "v": SHOPPER_TOKEN_FORMAT, "exp": int(expires_at.timestamp())}
    return ShopperToken(token=_shopper_signer().sign_object(payload), expires_at=expires_at.replace(microsecond=0))


class ShopperTokenInvalid(exceptions.AuthenticationFailed):
    default_detail = "The token is not valid: log in again."
    default_code = "token_invalid"


class ShopperTokenExpired(exceptions.AuthenticationFailed):
    default_detail = "The token has expired: log in again."
    default_code = "token_expired"


class ShopperTokenRevoked(exceptions.AuthenticationFailed):
    default_detail = "This membership no longer exists: log in again."
    default_code = "token_revoked"


class ShopperBanned(exceptions.PermissionDenied):
    default_detail = "This member is banned."
    default_code = "member_banned"


def shopper_token_read(*, token: str, now: datetime | None = None) -> Member:
    """The active member a token was issued to, or a 401 (403 for a banned member)."""
    try:
        payload = _shopper_signer().unsign_object(token)
    except (signing.BadSignature, ValueError, UnicodeError, zlib.error):
        raise ShopperTokenInvalid() from None
    if not isinstance(payload, dict) or payload.get("v") != SHOPPER_TOKEN_FORMAT:
        raise ShopperTokenInvalid()
    member_id, expires = payload.get("m"), payload.get("exp")
    if type(member_id) is not int or type(expires) is not int:
        raise ShopperTokenInvalid()
    if (now or timezone.now()).timestamp() >= expires:
        raise ShopperTokenExpired()
    member = Member.objects.select_related("tier").filter(pk=member_id).first()
    if member is None:
        raise ShopperTokenInvalid()
    if member.status == Member.Status.MERGED:
        # One person, one member: the token now speaks for the member it was merged into
        # (the shopper is not logged out because we learned who they are).
        member = _merge_survivor(member)
        if member is None:
            raise ShopperTokenRevoked()
    if member.status != Member.Status.ACTIVE:
        raise ShopperBanned()
    return member


def _merge_survivor(member: Member) -> Member | None:
    seen = set()
    while member.status == Member.Status.MERGED and member.merged_into_id and member.pk not in seen:
        seen.add(member.pk)
        member = Member.objects.select_related("tier").filter(pk=member.merged_into_id).first()
        if member is None:
            return None
    return None if member.status == Member.Status.MERGED else member


def _shopper_token_ttl() -> int:
    return settings.SHOPPER_TOKEN_TTL_SECONDS


@dataclass(frozen=True)
class ShopperCaller:
    """``request.user`` of a shopper API call."""

    member: Member
    is_authenticated: bool = True


class ShopperTokenAuthentication(BaseAuthentication):
    """``Authorization: Bearer <token>`` with a token from POST /api/mp/v1/auth/…/."""

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ShopperTokenInvalid("Use 'Authorization: Bearer <token>'.")
        member = shopper_token_read(token=token.strip())
        return ShopperCaller(member=member), token.strip()

    def authenticate_header(self, request):
        return 'Bearer realm="shopper-api"'


class IsShopper(BasePermission):
    def has_permission(self, request, view):
        if not isinstance(request.user, ShopperCaller):
            raise exceptions.NotAuthenticated("A token is required: 'Authorization: Bearer <token>'.")
        return True


class ShopperLoginThrottle(AtomicRateThrottle):
    """Login attempts per client IP, one atomic count that all workers share.

    Generous by default: a plaza's guest Wi-Fi puts many shoppers behind one address.
    Its purpose is to stop one client from spending our platform quota on made-up codes.
    """

    scope = "shopper_login"

    def get_rate(self):
        return settings.SHOPPER_LOGIN_RATE

    def get_cache_key(self, request, view):
        return f"throttle:shopper-login:{self.get_ident(request)}"


class ShopperTokenScheme(OpenApiAuthenticationExtension):
    target_class = "members.auth.ShopperTokenAuthentication"
    name = "shopperToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A shopper token from POST /api/mp/v1/auth/wechat/ (or alipay/, or demo/ in sandbox mode); "
            "valid for 7 days by default.",
        }
