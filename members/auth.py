"""Credentials: merchant API keys (shopper tokens come with the shopper API)."""

import hashlib
import hmac
import secrets

from django.utils import timezone

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
