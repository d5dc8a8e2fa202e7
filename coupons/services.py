"""Coupons: issue, redeem, void, expire — the only writers of coupons.

Rules that hold however many requests race:
- A template's quota is never oversold: ``issued_count`` moves by one conditional UPDATE
  (``issued_count < total_quota``), the last statement of the issue, so the template row
  is locked only for the moment before commit.
- A member never holds more than ``per_member_limit`` coupons of a template: each coupon
  takes the next ``seq`` and (template, member, seq) is unique, so two racing issues of
  the same seq cannot both commit; the loser counts again and takes the next, or stops.
- A coupon leaves ``issued`` once: redeem, void and expire are conditional UPDATEs on
  ``status = issued``.
Every change appends a CouponEvent.
"""

import base64
import hashlib
import secrets
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from core.errors import ApplicationError, Conflict, NotFound, PermissionDenied
from core.jobs import deadline_check
from coupons.models import Coupon, CouponEvent, CouponRedemption, CouponTemplate
from members import ledger
from members.identity import member_active
from members.models import Member, Merchant, Store

# Crockford's base32 without look-alikes; 16 characters ≈ 80 bits: unguessable.
CODE_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
CODE_LENGTH = 16
EXPIRE_BATCH = 1000


class CouponNotFound(NotFound):
    """No such coupon."""

    code = "coupon_not_found"


class CouponUsed(Conflict):
    """This coupon was already used."""

    code = "coupon_used"


class CouponExpired(Conflict):
    """This coupon has expired."""

    code = "coupon_expired"


class CouponVoid(Conflict):
    """This coupon was cancelled."""

    code = "coupon_void"


class CouponHeld(Conflict):
    """This coupon is being used by another order awaiting payment."""

    code = "coupon_held"


class CouponNotValidYet(Conflict):
    """This coupon is not valid yet."""

    code = "coupon_not_valid_yet"


class StoreNotAccepted(PermissionDenied):
    """This coupon is not accepted at this store."""

    code = "store_not_accepted"


class MinSpendNotMet(ApplicationError):
    """The sale is below this coupon's minimum spend."""

    code = "min_spend_not_met"


class TemplatePaused(Conflict):
    """This coupon is not being issued now."""

    code = "coupon_template_paused"


class TemplateEnded(Conflict):
    """This coupon's validity has ended: no more can be issued."""

    code = "coupon_template_ended"


class QuotaExhausted(Conflict):
    """All coupons of this kind have been issued."""

    code = "coupon_quota_exhausted"


class MemberLimitReached(Conflict):
    """This member already holds as many of these coupons as one member may."""

    code = "coupon_member_limit_reached"


# --- reading ------------------------------------------------------------------------


def coupon_discount_fen(*, template: CouponTemplate, amount_fen: int) -> int:
    """What ``template`` takes off a sale of ``amount_fen``: never more than the sale.

    cash_off: the face value once the sale reaches the minimum spend; percent_off:
    floor(amount × bp / 10000), at most max_discount_fen; voucher: the face value;
    gift: nothing off (the gift is handed over).
    """
    if amount_fen <= 0:
        return 0
    kind = CouponTemplate.Kind
    if template.kind == kind.CASH_OFF:
        discount = template.face_value_fen if amount_fen >= template.min_spend_fen else 0
    elif template.kind == kind.PERCENT_OFF:
        discount = amount_fen * template.percent_off_bp // 10000
        if template.max_discount_fen is not None:
            discount = min(discount, template.max_discount_fen)
    elif template.kind == kind.VOUCHER:
        discount = template.face_value_fen
    else:
        discount = 0
    return min(discount, amount_fen)


def template_accepts_store(*, template: CouponTemplate, store: Store) -> bool:
    """The template's listed stores; none listed: its merchant's stores, or every store for the mall's."""
    if template.stores.exists():
        return template.stores.filter(pk=store.pk).exists()
    return template.merchant_id is None or template.merchant_id == store.merchant_id


def member_coupons(*, member: Member):
    """The member's coupons, newest first."""
    return (
        Coupon.objects.filter(member=member)
        .select_related("template", "template__merchant")
        .prefetch_related("template__stores")
        .order_by("-created_at", "-id")
    )


def member_coupon(*, member: Member, coupon_id: int) -> Coupon:
    """One of the member's own coupons; anyone else's is "not found"."""
    if not 0 < coupon_id < 2**63:
        raise CouponNotFound()
    coupon = Coupon.objects.select_related("template").filter(member=member, pk=coupon_id).first()
    if coupon is None:
        raise CouponNotFound()
    return coupon


def coupon_usable_check(*, coupon: Coupon, at: datetime) -> None:
    """Refuse a coupon that cannot be used at ``at`` (status and validity)."""
    if coupon.status == Coupon.Status.REDEEMED:
        raise CouponUsed()
    if coupon.status == Coupon.Status.HELD:
        raise CouponHeld()
    if coupon.status == Coupon.Status.VOID:
        raise CouponVoid()
    if coupon.status == Coupon.Status.EXPIRED or at >= coupon.valid_until:
        raise CouponExpired(extra={"valid_until": coupon.valid_until.isoformat()})
    if at < coupon.valid_from:
        raise CouponNotValidYet(extra={"valid_from": coupon.valid_from.isoformat()})


# --- issue --------------------------------------------------------------------------


# Base32 spells 5 bits a character; mapped onto CODE_ALPHABET (also 32 characters).
_FROM_BASE32 = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", CODE_ALPHABET)


def _code_new() -> str:
    """CODE_LENGTH characters of CODE_ALPHABET, 5 random bits each (a campaign makes thousands)."""
    raw = secrets.token_bytes(CODE_LENGTH * 5 // 8)
    return base64.b32encode(raw).decode().translate(_FROM_BASE32)


def _validity(template: CouponTemplate, now: datetime) -> tuple[datetime, datetime]:
    if template.valid_days:
        return now, now + timedelta(days=template.valid_days)
    return template.valid_from, template.valid_until


def coupon_issue(
    *, template: CouponTemplate, member: Member, via: str, idempotency_key: str = "", operator=None,
    detail: dict | None = None, at: datetime | None = None,
) -> Coupon:
    """Give ``member`` one coupon of ``template``.

    With ``idempotency_key`` (a campaign's ``campaign:<id>:<member>``, the points mall's
    transaction …) a repeat returns the coupon issued the first time. Runs in its own
    transaction, or in the caller's (the points mall debits points in the same one).
    """
    now = at or timezone.now()
    key = idempotency_key or None
    if key is not None:
        existing = _issued_under(key, template, member)
        if existing is not None:
            return existing
    member = member_active(member)
    if member.status != Member.Status.ACTIVE:
        raise ledger.MemberNotActive()
    if template.status != CouponTemplate.Status.ACTIVE:
        raise TemplatePaused()
    valid_from, valid_until = _validity(template, now)
    if valid_until <= now:
        raise TemplateEnded()
    try:
        with transaction.atomic():
            coupon = _coupon_insert(template, member, via, key, valid_from, valid_until, now)
            CouponEvent.objects.create(
                coupon=coupon, kind=CouponEvent.Kind.ISSUED, operator=operator, created_at=now,
                detail={"via": via, **(detail or {})},
            )
            # Last, so the template row is locked only for the moment before commit.
            taken = CouponTemplate.objects.filter(pk=template.pk).filter(
                Q(total_quota__isnull=True) | Q(issued_count__lt=F("total_quota"))
            ).update(issued_count=F("issued_count") + 1)
            if not taken:
                raise QuotaExhausted()
    except IntegrityError:
        # Only the issue key is left to collide: the same issue, raced.
        existing = _issued_under(key, template, member) if key is not None else None
        if existing is None:
            raise
        return existing
    return coupon


def _issued_under(key: str, template: CouponTemplate, member: Member) -> Coupon | None:
    coupon = Coupon.objects.filter(issue_key=key).first()
    if coupon is not None and coupon.template_id != template.pk:
        raise ledger.IdempotencyConflict(extra={"idempotency_key": key})
    return coupon


def _coupon_insert(template, member, via, key, valid_from, valid_until, now) -> Coupon:
    """Insert the member's next coupon of ``template``, within the per-member limit.

    Two racing issues may pick the same seq: the unique (template, member, seq) lets one
    commit; the other (on PostgreSQL, after waiting for it) counts again.
    """
    for _ in range(template.per_member_limit + 1):
        held = Coupon.objects.filter(template=template, member=member).count()
        if held >= template.per_member_limit:
            raise MemberLimitReached(extra={"per_member_limit": template.per_member_limit})
        try:
            with transaction.atomic():
                return Coupon.objects.create(
                    template=template, member=member, seq=held + 1, code=_code_new(), valid_from=valid_from,
                    valid_until=valid_until, issued_via=via, issue_key=key, created_at=now,
                )
        except IntegrityError:
            if key is not None and Coupon.objects.filter(issue_key=key).exists():
                raise
            continue  # another issue took this seq: count again
    raise MemberLimitReached(extra={"per_member_limit": template.per_member_limit})


# --- redeem -------------------------------------------------------------------------


def coupon_redemption_replayed(*, merchant: Merchant, idempotency_key: str, request_hash: str) -> CouponRedemption | None:
    """The redemption booked under this key, or None; the key with another body is a conflict."""
    redemption = (
        CouponRedemption.objects.select_related("coupon__template", "store")
        .filter(merchant=merchant, idempotency_key=idempotency_key)
        .first()
    )
    if redemption is not None and redemption.request_hash != request_hash:
        raise ledger.IdempotencyConflict(extra={"idempotency_key": idempotency_key})
    return redemption


def coupon_redeem(
    *, coupon: Coupon, merchant: Merchant, store: Store, amount_fen: int, idempotency_key: str, request_hash: str = "",
    order_ref: str = "", authorised_by: str, at: datetime | None = None,
) -> CouponRedemption:
    """Use ``coupon`` on a sale of ``amount_fen`` at ``store`` (one of ``merchant``'s).

    The caller has established that the shopper is there (``authorised_by``: the
    rotating coupon code or a scanned member code). Once per coupon however many race:
    the status moves issued → redeemed by a conditional UPDATE; a replay of the same
    merchant's key returns the first redemption.
    """
    now = at or timezone.now()
    replay = coupon_redemption_replayed(merchant=merchant, idempotency_key=idempotency_key, request_hash=request_hash)
    if replay is not None:
        return replay
    try:
        with transaction.atomic():
            return _redeem(coupon, merchant, store, amount_fen, idempotency_key, request_hash, order_ref, authorised_by, now)
    except (IntegrityError, ApplicationError):
        # A concurrent request with the same key won: answer as it did.
        replay = coupon_redemption_replayed(merchant=merchant, idempotency_key=idempotency_key, request_hash=request_hash)
        if replay is None:
            raise
        return replay


def _redeem(coupon, merchant, store, amount_fen, idempotency_key, request_hash, order_ref, authorised_by, now):
    if store.merchant_id != merchant.pk:
        raise NotFound("no such store for this merchant", code="store_not_found")
    template = coupon.template
    if not template_accepts_store(template=template, store=store):
        raise StoreNotAccepted()
    coupon_usable_check(coupon=coupon, at=now)
    if amount_fen < template.min_spend_fen:
        raise MinSpendNotMet(extra={"min_spend_fen": template.min_spend_fen})
    won = Coupon.objects.filter(pk=coupon.pk, status=Coupon.Status.ISSUED).update(
        status=Coupon.Status.REDEEMED, redeemed_at=now, redeemed_store=store
    )
    if not won:
        coupon.refresh_from_db(fields=["status"])
        coupon_usable_check(coupon=coupon, at=now)
        raise CouponUsed()
    discount_fen = coupon_discount_fen(template=template, amount_fen=amount_fen)
    redemption = CouponRedemption.objects.create(
        coupon=coupon, merchant=merchant, store=store, idempotency_key=idempotency_key, request_hash=request_hash,
        amount_fen=amount_fen, discount_fen=discount_fen, funded_by=template.funded_by, order_ref=order_ref,
        authorised_by=authorised_by, created_at=now,
    )
    CouponEvent.objects.create(
        coupon=coupon, kind=CouponEvent.Kind.REDEEMED, created_at=now,
        detail={"store": store.code, "merchant_id": merchant.pk, "amount_fen": amount_fen, "discount_fen": discount_fen,
                "order_ref": order_ref, "authorised_by": authorised_by, "funded_by": template.funded_by},
    )
    coupon.status, coupon.redeemed_at, coupon.redeemed_store = Coupon.Status.REDEEMED, now, store
    return redemption


# --- void and expire ----------------------------------------------------------------


def coupon_void(*, coupon: Coupon, reason: str, operator=None, at: datetime | None = None) -> Coupon:
    """Cancel an unused coupon (staff, or a refunded points-mall purchase)."""
    now = at or timezone.now()
    with transaction.atomic():
        won = Coupon.objects.filter(pk=coupon.pk, status=Coupon.Status.ISSUED).update(status=Coupon.Status.VOID)
        if not won:
            coupon.refresh_from_db(fields=["status"])
            if coupon.status == Coupon.Status.REDEEMED:
                raise CouponUsed()
            if coupon.status == Coupon.Status.HELD:
                raise CouponHeld()
            if coupon.status == Coupon.Status.EXPIRED:
                raise CouponExpired()
            raise CouponVoid()
        CouponEvent.objects.create(coupon=coupon, kind=CouponEvent.Kind.VOIDED, operator=operator, created_at=now,
                                   detail={"reason": reason})
    coupon.status = Coupon.Status.VOID
    return coupon


def coupons_expire_due(*, now: datetime | None = None, batch_size: int = EXPIRE_BATCH, progress=None, deadline=None) -> int:
    """Mark every issued coupon past its validity expired, a batch per transaction; how many.

    Each batch is one UPDATE of the rows it locked (on PostgreSQL, skipping rows a
    redemption holds right now: the next run takes them if they are still issued) and
    one bulk insert of their events. Safe to run twice. ``progress(done, total)`` after
    each batch, when given (the total costs a count).
    """
    now = now or timezone.now()
    total = Coupon.objects.filter(status=Coupon.Status.ISSUED, valid_until__lte=now).count() if progress else 0
    expired = 0
    while True:
        with transaction.atomic():
            ids = list(
                Coupon.objects.filter(status=Coupon.Status.ISSUED, valid_until__lte=now)
                .select_for_update(skip_locked=True)
                .order_by("valid_until", "pk")
                .values_list("pk", flat=True)[:batch_size]
            )
            if not ids:
                return expired
            Coupon.objects.filter(pk__in=ids, status=Coupon.Status.ISSUED).update(status=Coupon.Status.EXPIRED)
            CouponEvent.objects.bulk_create(
                [CouponEvent(coupon_id=pk, kind=CouponEvent.Kind.EXPIRED, created_at=now, detail={}) for pk in ids]
            )
        expired += len(ids)
        if progress is not None:
            progress(expired, max(total, expired))
        deadline_check(deadline)


# --- the points mall ----------------------------------------------------------------
# Templates with a points price are for sale in the mini-program and the H5 pages. An
# exchange issues the coupon and debits its points in one transaction: both or neither.


class TemplateNotFound(NotFound):
    """No such coupon in the points mall."""

    code = "coupon_template_not_found"


class NotOnSaleYet(Conflict):
    """This coupon is not on sale yet."""

    code = "coupon_not_on_sale_yet"


class NotForPoints(Conflict):
    """This coupon is not for sale in the points mall."""

    code = "coupon_not_for_points"


def coupon_catalogue(*, at: datetime | None = None):
    """Templates for sale now: active, with a points price and stock left, within their
    window (or valid for days from issue), of the mall or an active merchant; cheapest first."""
    now = at or timezone.now()
    return (
        CouponTemplate.objects.filter(status=CouponTemplate.Status.ACTIVE, points_price__isnull=False)
        .filter(Q(total_quota__isnull=True) | Q(issued_count__lt=F("total_quota")))
        .filter(Q(valid_days__isnull=False) | Q(valid_from__lte=now, valid_until__gt=now))
        .filter(Q(merchant__isnull=True) | Q(merchant__status=Merchant.Status.ACTIVE))
        .select_related("merchant")
        .order_by("points_price", "id")
    )


def catalogue_template(*, template_id: int) -> CouponTemplate:
    """A template by id, for an exchange; none such is "not found" (its rules are checked by the exchange)."""
    if not 0 < template_id < 2**63:
        raise TemplateNotFound()
    template = CouponTemplate.objects.select_related("merchant").filter(pk=template_id).first()
    if template is None:
        raise TemplateNotFound()
    return template


def exchange_key(member: Member, idempotency_key: str) -> str:
    """The key of an exchange's coupon (``Coupon.issue_key``) and of its points transaction.

    ``exchange:<member>:<key>``: a shopper's keys are their own (another shopper sending
    the same header value makes another exchange). A key too long for ``issue_key`` with
    its prefix (the API takes 200 characters) is replaced by its SHA-256, the same on
    every retry.
    """
    key = f"exchange:{member.pk}:{idempotency_key}"
    if len(key) <= Coupon._meta.get_field("issue_key").max_length:
        return key
    return f"exchange:{member.pk}:sha256:" + hashlib.sha256(idempotency_key.encode()).hexdigest()


def coupon_exchange(*, member: Member, template: CouponTemplate, idempotency_key: str, at: datetime | None = None) -> Coupon:
    """``member`` buys one coupon of ``template`` for its points price.

    One transaction: the points leave the wallet (``ledger.points_exchange``, to the
    template's funder) and the coupon is issued (``coupon_issue``, quota and per-member
    limit enforced by its conditional UPDATE and unique seq), or neither happens. The
    quota UPDATE is the last statement, so the template row is locked only from then to
    the commit. A replay of the key returns the coupon issued the first time; the key
    used by another member or for another template is ``idempotency_conflict``.
    """
    now = at or timezone.now()
    key = exchange_key(member, idempotency_key)
    replay = _exchanged_under(key, template, member)
    if replay is not None:
        return replay
    if template.points_price is None:
        raise NotForPoints()
    if template.status != CouponTemplate.Status.ACTIVE:
        raise TemplatePaused()
    if template.merchant_id is not None and not template.merchant.is_active:
        # Whoever funds it, its stores are the merchant's: nowhere to use it.
        raise ledger.MerchantNotActive(extra={"merchant": template.merchant_id})
    if template.valid_from is not None and now < template.valid_from:
        raise NotOnSaleYet(extra={"valid_from": template.valid_from.isoformat()})
    if template.total_quota is not None and template.issued_count >= template.total_quota:
        raise QuotaExhausted()  # sold out already: spare the wallet's lock (the UPDATE below decides)
    merchant = template.merchant if template.funded_by == CouponTemplate.FundedBy.MERCHANT else None
    try:
        with transaction.atomic():
            txn = ledger.points_exchange(
                member=member, points=template.points_price, idempotency_key=key, merchant=merchant,
                reason=f"points mall: coupon template {template.pk}", at=now,
            )
            return coupon_issue(
                template=template, member=member, via=Coupon.Via.POINTS, idempotency_key=key, at=now,
                detail={"points": template.points_price, "points_transaction": txn.pk},
            )
    except ApplicationError:
        # The same exchange, raced and committed meanwhile: answer as it did.
        replay = _exchanged_under(key, template, member)
        if replay is None:
            raise
        return replay


def _exchanged_under(key: str, template: CouponTemplate, member: Member) -> Coupon | None:
    coupon = Coupon.objects.filter(issue_key=key).first()
    if coupon is not None and (coupon.template_id != template.pk or coupon.member_id != member.pk):
        raise ledger.IdempotencyConflict(extra={"idempotency_key": key})
    return coupon


def member_coupons_usable(*, member: Member, at: datetime | None = None):
    """The member's coupons that can be used now or later: issued and not past their end; soonest end first."""
    now = at or timezone.now()
    return (
        Coupon.objects.filter(member=member, status=Coupon.Status.ISSUED, valid_until__gt=now)
        .select_related("template", "template__merchant")
        .order_by("valid_until", "id")
    )
