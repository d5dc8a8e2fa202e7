"""Merchant-side sales: POS purchases, redemptions, their refunds, and API replays.

Each service is one transaction around one ledger call, keyed ``api:<merchant>:<key>``,
so a retried request has one effect; the rows here point at the ledger transaction.
"""

import hashlib
import json
from collections.abc import Callable
from datetime import datetime

from django.db import IntegrityError, transaction
from django.db.models import F

from core.errors import ApplicationError, Conflict, NotFound
from members import ledger, pushes, spend, tiers
from members.models import Member, Merchant, Store, Visit
from members.services import visit_record
from payments.models import ApiRequest, Purchase, PurchaseRefund, Redemption, RedemptionRefund


class IdempotencyKeyMissing(ApplicationError):
    """Every POST needs an Idempotency-Key header (1 to 200 printable ASCII characters)."""

    code = "idempotency_key_required"


class DuplicateOrderRef(Conflict):
    """This order was already booked under another idempotency key."""

    code = "duplicate_order_ref"


def ledger_key(merchant: Merchant, idempotency_key: str) -> str:
    return f"api:{merchant.pk}:{idempotency_key}"


# --- replays ------------------------------------------------------------------------


def request_fingerprint(*, method: str, path: str, body) -> str:
    canonical = json.dumps([method, path, body], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def idempotency_key_check(key: str | None) -> str:
    key = (key or "").strip()
    if not key or len(key) > 200 or not key.isascii() or not key.isprintable():
        raise IdempotencyKeyMissing()
    return key


def api_request_replayed(*, merchant: Merchant, key: str, fingerprint: str) -> tuple[int, str] | None:
    """The stored first response to this key, or None; another body is a conflict."""
    record = ApiRequest.objects.filter(merchant=merchant, key=key).first()
    if record is None:
        return None
    if record.request_hash != fingerprint:
        raise ledger.IdempotencyConflict(extra={"idempotency_key": key})
    return record.status_code, record.response


def api_request_once(
    *, merchant: Merchant, key: str, fingerprint: str, run: Callable[[], tuple[int, str]]
) -> tuple[int, str]:
    """Run ``run`` once per (merchant, key): a replay gets the first response back.

    Callers look the key up first (``api_request_replayed``), before they validate;
    here the unique constraint settles a race between two first requests.

    ``run`` returns the status and the rendered body, stored as text so that a replay
    is the first response byte for byte. It is stored in the same transaction as the
    effect. Errors raised by ``run`` are not stored (nothing changed), so a retry after
    an error runs again.
    """
    try:
        with transaction.atomic():
            status, body = run()
            ApiRequest.objects.create(merchant=merchant, key=key, request_hash=fingerprint, status_code=status, response=body)
            return status, body
    except (IntegrityError, ApplicationError):
        # A concurrent request with the same key committed first: answer as it did. (Its
        # effect may also have made this one fail a check, e.g. the scanned code it used
        # up: a retry of a payment that went through must hear that it went through.)
        replay = api_request_replayed(merchant=merchant, key=key, fingerprint=fingerprint)
        if replay is None:
            raise
        return replay


# --- scoping ------------------------------------------------------------------------


def merchant_store(*, merchant: Merchant, store_code: str) -> Store:
    """The caller's own store. Another merchant's store is "not found": nothing leaks."""
    store = Store.objects.select_related("merchant", "plaza").filter(merchant=merchant, code=store_code).first()
    if store is None:
        raise NotFound("no such store for this merchant", code="store_not_found")
    return store


def merchant_purchase(*, merchant: Merchant, purchase_id: int) -> Purchase:
    purchase = Purchase.objects.select_related("earn", "store", "member").filter(merchant=merchant, pk=purchase_id).first()
    if purchase is None:
        raise NotFound("no such purchase for this merchant", code="purchase_not_found")
    return purchase


def merchant_redemption(*, merchant: Merchant, redemption_id: int) -> Redemption:
    redemption = Redemption.objects.select_related("redeem", "store", "member").filter(merchant=merchant, pk=redemption_id).first()
    if redemption is None:
        raise NotFound("no such redemption for this merchant", code="redemption_not_found")
    return redemption


# --- purchases ----------------------------------------------------------------------


def purchase_record(
    *, merchant: Merchant, store: Store, member: Member, amount_fen: int, idempotency_key: str, order_ref: str = "",
    member_present: bool = False, at: datetime | None = None, push: bool = True,
) -> Purchase:
    """Book a POS sale: the member earns points funded by the merchant; the visit is recorded.

    ``member_present``: the shopper's member code was scanned. Only then does the mall
    fund the tier's extra (pending for the refund window) and the sale count toward tiers.
    ``at``: when the sale happened, for internal callers (the demo's history); now by
    default. ``push=False`` books it without telling the shopper (a sale long past).
    """
    if store.merchant_id != merchant.pk:
        raise NotFound(code="store_not_found")
    with transaction.atomic():
        earn = ledger.points_earn(
            member=member, store=store, amount_fen=amount_fen, idempotency_key=ledger_key(merchant, idempotency_key),
            reference=order_ref, member_present=member_present, at=at,
        )
        existing = Purchase.objects.filter(earn=earn).first()
        if existing is not None:
            return existing
        try:
            with transaction.atomic():
                # The earn's member: the survivor, if a merge committed while this waited.
                purchase = Purchase.objects.create(
                    merchant=merchant, store=store, member_id=earn.member_id, amount_fen=amount_fen, order_ref=order_ref,
                    earn=earn, created_at=earn.created_at, member_present=member_present,
                )
        except IntegrityError:
            raise DuplicateOrderRef(extra={"order_ref": order_ref}) from None
        visit_record(member=purchase.member, plaza=store.plaza, store=store, kind=Visit.Kind.PURCHASE, amount_fen=amount_fen, at=earn.created_at)
        if push:
            pushes.push_points_earned(member=purchase.member, store=store, earn=earn, amount_fen=amount_fen)
        if member_present:
            tiers.tier_spend_record(member=purchase.member, amount_fen=amount_fen, at=earn.created_at)
        return purchase


def purchase_refund(
    *, purchase: Purchase, amount_fen: int, idempotency_key: str, at: datetime | None = None
) -> PurchaseRefund:
    """Refund part or all of a purchase; its points go back in proportion (see ledger).
    ``at``: when, for internal callers; now by default."""
    with transaction.atomic():
        reversal = ledger.points_reverse(
            original=purchase.earn, amount_fen=amount_fen, idempotency_key=ledger_key(purchase.merchant, idempotency_key),
            reason="refund", at=at,
        )
        existing = PurchaseRefund.objects.filter(reversal=reversal).first()
        if existing is not None:
            return existing
        refund = PurchaseRefund.objects.create(purchase=purchase, amount_fen=amount_fen, reversal=reversal, created_at=reversal.created_at)
        Purchase.objects.filter(pk=purchase.pk).update(refunded_fen=F("refunded_fen") + amount_fen)
        if purchase.member_present:
            tiers.tier_spend_refund(member=purchase.member, amount_fen=amount_fen, sold_at=purchase.created_at, at=reversal.created_at)
        return refund


# --- redemptions --------------------------------------------------------------------


def redemption_record(
    *, merchant: Merchant, store: Store, member: Member | None, points: int, idempotency_key: str, order_ref: str = "",
    member_code: str = "", redemption_token: str = "", at: datetime | None = None, push: bool = True,
) -> Redemption:
    """The shopper pays ``points`` at the merchant's store; the visit is recorded and pushed.

    Authorised by the shopper (``members.spend``): ``member_code`` scanned now (``member``
    is whom it named) or a ``redemption_token`` they confirmed; used up with the spend.
    ``at`` and ``push`` as for ``purchase_record``.
    """
    if store.merchant_id != merchant.pk:
        raise NotFound(code="store_not_found")
    with transaction.atomic():
        authorization = spend.spend_authorize(
            store=store, points=points, member=member, member_code=member_code, redemption_token=redemption_token, at=at
        )
        member = authorization.member
        redeem = ledger.points_redeem(
            member=member, store=store, points=points, idempotency_key=ledger_key(merchant, idempotency_key), reference=order_ref,
            at=at,
        )
        existing = Redemption.objects.filter(redeem=redeem).first()
        if existing is not None:
            return existing
        redemption = Redemption.objects.create(
            merchant=merchant, store=store, member_id=redeem.member_id, points=points, order_ref=order_ref, redeem=redeem,
            created_at=redeem.created_at, authorization=authorization,
        )
        visit_record(member=redemption.member, plaza=store.plaza, store=store, kind=Visit.Kind.REDEMPTION, at=redeem.created_at)
        if push:
            pushes.push_points_redeemed(member=redemption.member, store=store, redeem=redeem)
        return redemption


def redemption_refund(*, redemption: Redemption, points: int, idempotency_key: str) -> RedemptionRefund:
    """Give back points a redemption took (a cancelled sale), with their original expiry."""
    with transaction.atomic():
        reversal = ledger.points_reverse(
            original=redemption.redeem, points=points, idempotency_key=ledger_key(redemption.merchant, idempotency_key),
            reason="redemption refund",
        )
        existing = RedemptionRefund.objects.filter(reversal=reversal).first()
        if existing is not None:
            return existing
        refund = RedemptionRefund.objects.create(redemption=redemption, points=points, reversal=reversal, created_at=reversal.created_at)
        Redemption.objects.filter(pk=redemption.pk).update(returned_points=F("returned_points") + points)
        return refund
