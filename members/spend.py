"""Spending a member's points needs the shopper: a scanned member code or a redemption
the shopper confirmed in the app — never a bare member number, which a merchant may
know without the shopper being there (DESIGN.md "The closed loop", 3).

- A member code scanned at the till authorises **one** spend of at most
  REDEEM_CODE_MAX_POINTS at the store that scanned it. The code is already proof of
  presence (signed, rotating every minute); using it is recorded, so a second spend
  with the same code is refused.
- Above that limit the shopper confirms in the mini-program or the H5 page: that makes
  a ``redemption_token`` bound to the member, the store and a maximum of points,
  single use, valid REDEMPTION_TOKEN_TTL_SECONDS (about two minutes).

``spend_authorize`` runs inside the caller's transaction, beside the ledger's redeem:
if the spend fails (not enough points), the authorisation is not used up.
"""

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.errors import ApplicationError, Conflict, NotFound, PermissionDenied
from members import codes, ledger
from members.models import Member, MemberCodeScan, SpendAuthorization, Store

TOKEN_PREFIX = "rt_"


class ShopperConfirmationRequired(PermissionDenied):
    """A scanned member code pays at most REDEEM_CODE_MAX_POINTS: for more, the shopper confirms in the app."""

    code = "shopper_confirmation_required"


class MemberCodeUsed(Conflict):
    """This member code was used already: ask the shopper to show a fresh one."""

    code = "member_code_used"


def member_code_claim(*, code: str, member: Member, merchant, at: datetime | None = None) -> None:
    """The first merchant to scan a member code holds it for the code's short life.

    A code is shown at one till: another merchant presenting it (a photo of the screen,
    a code passed on between shops) is refused with ``member_code_used``, whatever it
    wants to do with it. Call outside any transaction (one autocommitted insert).
    """
    now = at or timezone.now()
    key_hash = _hash(code.strip())
    try:
        with transaction.atomic():
            MemberCodeScan.objects.create(
                key_hash=key_hash, merchant=merchant, member=member, created_at=now,
                expires_at=now + timedelta(seconds=codes.STEP_SECONDS + codes.GRACE_SECONDS),
            )
        return
    except IntegrityError:
        pass
    holder = MemberCodeScan.objects.filter(key_hash=key_hash).values_list("merchant_id", flat=True).first()
    if holder != merchant.pk:
        raise MemberCodeUsed("This member code was scanned at another shop: ask the shopper to show a fresh one.")


class RedemptionTokenInvalid(ApplicationError):
    """This redemption token is not valid for this store."""

    code = "redemption_token_invalid"


class RedemptionTokenExpired(ApplicationError):
    """This redemption token has expired: ask the shopper to confirm again."""

    code = "redemption_token_expired"


class RedemptionTokenUsed(Conflict):
    """This redemption token was already used."""

    code = "redemption_token_used"


class RedemptionTokenExceeded(PermissionDenied):
    """More points than the shopper confirmed."""

    code = "redemption_token_exceeded"


@dataclass(frozen=True)
class IssuedToken:
    token: str  # shown once, to the shopper, who shows it to the cashier
    expires_at: datetime
    max_points: int
    store: Store


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def code_spend_limit() -> int:
    return settings.REDEEM_CODE_MAX_POINTS


def spend_store(*, store_code: str) -> Store:
    """The shop a shopper confirms a spend at, if it takes points now."""
    store = Store.objects.select_related("merchant", "plaza").filter(code=store_code).first()
    if store is None:
        raise NotFound("no such shop", code="store_not_found")
    if not (store.is_active and store.merchant.is_active and store.plaza.is_active):
        raise PermissionDenied("this shop does not take points now", code="merchant_not_active")
    return store


def spend_token_issue(*, member: Member, store: Store, max_points: int, at: datetime | None = None) -> IssuedToken:
    """The shopper confirms a spend of up to ``max_points`` at ``store``: no more than they
    can spend now (the till would refuse it anyway), told to the shopper themself."""
    if not (store.is_active and store.merchant.is_active):
        raise PermissionDenied("this shop does not take points now", code="merchant_not_active")
    spendable = ledger.member_points_spendable(member=member)
    if max_points > spendable:
        raise ledger.InsufficientPoints(extra={"points_balance": spendable})
    now = at or timezone.now()
    token = TOKEN_PREFIX + secrets.token_urlsafe(24)
    expires_at = now + timedelta(seconds=settings.REDEMPTION_TOKEN_TTL_SECONDS)
    SpendAuthorization.objects.create(
        kind=SpendAuthorization.Kind.TOKEN, key_hash=_hash(token), member=member, store=store, max_points=max_points,
        expires_at=expires_at, created_at=now,
    )
    return IssuedToken(token=token, expires_at=expires_at.replace(microsecond=0), max_points=max_points, store=store)


def spend_token_member(*, token: str, store: Store, at: datetime | None = None) -> Member:
    """Who a redemption token speaks for, if it is good at ``store`` now (nothing is used up)."""
    return _token_row(token, store, at or timezone.now()).member


def _token_row(token: str, store: Store, now: datetime) -> SpendAuthorization:
    token = (token or "").strip()
    if not token.startswith(TOKEN_PREFIX) or len(token) > 100:
        raise RedemptionTokenInvalid()
    row = (
        SpendAuthorization.objects.select_related("member__tier")
        .filter(kind=SpendAuthorization.Kind.TOKEN, key_hash=_hash(token))
        .first()
    )
    # Another store's token is "invalid", as if it did not exist: nothing about it leaks.
    if row is None or row.store_id != store.pk:
        raise RedemptionTokenInvalid()
    if row.used_at is not None:
        raise RedemptionTokenUsed()
    if row.expires_at <= now:
        raise RedemptionTokenExpired()
    return row


def spend_authorize(
    *, store: Store, points: int, member: Member | None = None, member_code: str = "", redemption_token: str = "",
    at: datetime | None = None,
) -> SpendAuthorization:
    """Use up the shopper's authorisation for a spend of ``points`` at ``store``.

    With ``member_code`` (already checked by ``codes.member_code_check``, which named
    ``member``): one spend per code, up to the code limit. With ``redemption_token``:
    the token's own store and maximum. Call inside the spend's transaction.
    """
    now = at or timezone.now()
    if redemption_token:
        row = _token_row(redemption_token, store, now)
        if points > row.max_points:
            raise RedemptionTokenExceeded(extra={"max_points": row.max_points})
        used = SpendAuthorization.objects.filter(pk=row.pk, used_at__isnull=True).update(used_at=now)
        if not used:  # a concurrent spend took it first
            raise RedemptionTokenUsed()
        return row
    if not member_code or member is None:
        raise ApplicationError("a scanned member_code or a redemption_token is required", code="shopper_required")
    limit = code_spend_limit()
    if points > limit:
        raise ShopperConfirmationRequired(extra={"max_points": limit})
    try:
        with transaction.atomic():
            return SpendAuthorization.objects.create(
                kind=SpendAuthorization.Kind.MEMBER_CODE, key_hash=_hash(member_code.strip()), member=member,
                store=store, max_points=limit, used_at=now, created_at=now,
                expires_at=now + timedelta(seconds=codes.STEP_SECONDS + codes.GRACE_SECONDS),
            )
    except IntegrityError:
        raise MemberCodeUsed() from None


def spend_authorizations_purge(*, before: datetime | None = None) -> int:
    """Drop authorisations that can no longer be used and were never used (tokens the
    shopper did not spend), and the scans of codes long expired. Used authorisations
    stay: a redemption points at its own."""
    cutoff = before or timezone.now() - timedelta(days=1)
    deleted, _ = SpendAuthorization.objects.filter(used_at__isnull=True, expires_at__lt=cutoff).delete()
    scans, _ = MemberCodeScan.objects.filter(expires_at__lt=cutoff).delete()
    return deleted + scans
