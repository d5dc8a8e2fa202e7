"""The points services: every change to points goes through one of these.

Each is one atomic unit: it locks the member's wallet row, looks up its idempotency
key under that lock and returns the first result on a replay (or raises
``IdempotencyConflict`` when the same key comes with another request), then writes
one ``PointsTransaction`` whose entries sum to zero. System accounts (merchant
funding and acceptance, promotions, expired, partners) are written but never locked
or updated: their balances are rolled up by ``ledger_rollup``.

The services join the caller's transaction when there is one (a payment
notification marks its order paid and earns points in one commit), and run in their
own otherwise.
"""

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Max, Q, Sum
from django.utils import timezone

from core import audit, metrics
from core.jobs import deadline_check
from core.errors import ApplicationError, Conflict, NotFound, PermissionDenied
from members import ledger_sql
from members.models import Account, Entry, Lot, Member, Merchant, PointsTransaction, ShortfallRecovery, Store

Kind = PointsTransaction.Kind
MAX_KEY_LENGTH = PointsTransaction._meta.get_field("idempotency_key").max_length


class InvalidPoints(ApplicationError):
    """Points and amounts must be positive integers within the configured maximum."""

    code = "invalid_amount"


class InsufficientPoints(Conflict):
    """The member's balance does not cover this."""

    code = "insufficient_points"


class IdempotencyConflict(Conflict):
    """This idempotency key was already used for a different request."""

    code = "idempotency_conflict"


class MemberNotActive(PermissionDenied):
    """The member is banned or merged into another member."""

    code = "member_not_active"


class MerchantNotActive(PermissionDenied):
    """The merchant or store is suspended or closed."""

    code = "merchant_not_active"


class RefundExceedsPurchase(Conflict):
    """The refund is more than what is left of the purchase."""

    code = "refund_exceeds_purchase"


class NotReversible(Conflict):
    """Only earn and redeem transactions can be reversed."""

    code = "not_reversible"


class LotNotDue(Conflict):
    """The lot has not reached its expiry (or its release date)."""

    code = "lot_not_due"


class HoldNotOpen(Conflict):
    """The order's points were captured or released already."""

    code = "points_hold_closed"


class HoldNotCaptured(Conflict):
    """Points of an unpaid order are released, not refunded."""

    code = "points_hold_not_captured"


class SaleAmountOverLimit(ApplicationError):
    """The sale is larger than this merchant may book in one go."""

    code = "sale_amount_over_limit"


# --- validation -------------------------------------------------------------------


def _check_positive(value, *, name: str, maximum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidPoints(f"{name} must be an integer", extra={"field": name})
    if value <= 0:
        raise InvalidPoints(f"{name} must be positive", extra={"field": name})
    if value > maximum:
        raise InvalidPoints(f"{name} must be at most {maximum}", extra={"field": name})


def _check_amount_fen(amount_fen) -> None:
    _check_positive(amount_fen, name="amount_fen", maximum=settings.MAX_AMOUNT_FEN)


def _check_points(points) -> None:
    _check_positive(points, name="points", maximum=settings.MAX_POINTS)


def _request_hash(**fields) -> str:
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


# --- system accounts --------------------------------------------------------------


def _system_account(kind: str, *, merchant: Merchant | None = None, partner_code: str | None = None) -> Account:
    """The account of a merchant, a partner, or the mall; created on first use.

    Read-only on the hot path: system accounts are never locked or updated here.
    """
    lookup = {"kind": kind, "merchant": merchant}
    if partner_code is not None:
        lookup["partner_code"] = partner_code
    account = next(iter(Account.objects.filter(**lookup)[:1]), None)  # no ORDER BY: the lookup is unique
    if account is not None:
        return account
    try:
        with transaction.atomic():
            return Account.objects.create(**lookup)
    except IntegrityError:  # created concurrently
        return Account.objects.get(**lookup)


def merchant_accounts_create(*, merchant: Merchant) -> None:
    for kind in (Account.Kind.MERCHANT_FUNDING, Account.Kind.MERCHANT_ACCEPTANCE):
        _system_account(kind, merchant=merchant)


def wallet_create(*, member: Member) -> Account:
    return Account.objects.create(kind=Account.Kind.WALLET, member=member)


# --- the unit of work -------------------------------------------------------------


def _replayed(key: str, request_hash: str) -> PointsTransaction | None:
    existing = next(iter(PointsTransaction.objects.filter(idempotency_key=key)[:1]), None)
    if existing is not None and existing.request_hash != request_hash:
        raise IdempotencyConflict(extra={"idempotency_key": key})
    return existing


def _survivor_id(member_id: int) -> int:
    """The member whose wallet holds ``member_id``'s points: itself, or where it was merged."""
    seen = set()
    while member_id not in seen:
        seen.add(member_id)
        row = Member.objects.filter(pk=member_id).values_list("status", "merged_into_id").first()
        if row is None or row[0] != Member.Status.MERGED or row[1] is None:
            return member_id
        member_id = row[1]
    return member_id


def _survivor_ids(member_ids: list[int]) -> dict[int, int]:
    """{asked: the member holding its points}: one query for all, merges followed one by one."""
    merged = {
        pk: target for pk, status, target in Member.objects.filter(pk__in=member_ids).values_list("pk", "status", "merged_into_id")
        if status == Member.Status.MERGED and target is not None
    }
    return {asked: _survivor_id(asked) if asked in merged else asked for asked in member_ids}


def _lock_wallets(member_ids: list[int]) -> dict[int, Account]:
    """Lock the wallets of ``member_ids``, following merges: {asked id: the wallet that holds its points}.

    A merged member's points live with the member it was merged into, so every service
    acts on the survivor. The status is read again after the locks are granted (a merge
    that committed while this waited is seen then), and the survivors looked up anew.
    """
    for _ in range(5):
        survivors = _survivor_ids(member_ids)
        wanted = sorted(set(survivors.values()))
        # Locked in member-id order, so two transfers in opposite directions cannot deadlock.
        wallets = (
            Account.objects.select_for_update(of=("self",))
            .select_related("member__tier")
            .filter(kind=Account.Kind.WALLET, member_id__in=wanted)
            .order_by("member_id")
        )
        found = {w.member_id: w for w in wallets}
        missing = set(wanted) - set(found)
        if missing:
            raise NotFound(f"no wallet for member {sorted(missing)}", code="member_not_found")
        # A new statement, so a new snapshot: a merge that committed while we waited shows.
        fresh = dict(Member.objects.filter(pk__in=wanted).values_list("pk", "status"))
        if all(fresh[pk] != Member.Status.MERGED for pk in wanted):
            for wallet in found.values():
                wallet.member.status = fresh[wallet.member_id]
            return {asked: found[survivor] for asked, survivor in survivors.items()}
    raise Conflict("the member is being merged; try again", code="member_merging")


def _run(*, key: str, request_hash: str, member_ids: list[int], body, at: datetime | None = None) -> PointsTransaction:
    """Lock the wallets, replay or run ``body(wallets, now)``, all in one transaction.

    ``at`` is the time the operation happens at, for internal callers (seeding, jobs);
    everything else runs at the present.
    """
    if not key or len(key) > MAX_KEY_LENGTH:
        raise ApplicationError(f"idempotency key must be 1 to {MAX_KEY_LENGTH} characters", code="invalid_idempotency_key")
    # Insert first, look up on failure: the unique key tells a replay apart at no cost
    # to the first request (one query fewer on the hot path). A replay either trips the
    # key at INSERT, or fails a check its first run changed (a redemption's balance,
    # a refund's remainder); both end here, and get the first result or a conflict.
    try:
        with transaction.atomic():
            return body(_lock_wallets(member_ids), at or timezone.now())
    except (IntegrityError, ApplicationError):
        existing = _replayed(key, request_hash)
        if existing is None:
            raise
        return existing


def _ensure_active(wallet: Account) -> None:
    if wallet.member.status != Member.Status.ACTIVE:
        raise MemberNotActive(extra={"member_no": wallet.member.member_no})


def _new_transaction(*, key: str, request_hash: str, kind: str, member_id: int, points: int, now: datetime, **fields) -> PointsTransaction:
    metrics.points_moved(kind=kind, points=points)  # counted if and when the transaction commits
    return PointsTransaction.objects.create(
        idempotency_key=key, request_hash=request_hash, kind=kind, member_id=member_id, points=points, created_at=now, **fields
    )


def _post(txn: PointsTransaction, legs: list[tuple[Account, int, Lot | None, int]]) -> None:
    """Write the legs (account, amount, lot, member_id) and move wallet balances.

    Zero legs are dropped; the rest must sum to zero.
    """
    legs = [leg for leg in legs if leg[1] != 0]
    if sum(amount for _, amount, _, _ in legs) != 0:
        raise AssertionError(f"unbalanced transaction {txn.idempotency_key}: {legs}")
    Entry.objects.bulk_create(
        Entry(transaction=txn, account=account, amount=amount, lot=lot, member_id=member_id, created_at=txn.created_at)
        for account, amount, lot, member_id in legs
    )
    wallet_deltas: dict[int, int] = {}
    for account, amount, _, _ in legs:
        if account.kind == Account.Kind.WALLET:
            wallet_deltas[account.pk] = wallet_deltas.get(account.pk, 0) + amount
    for account_id, delta in wallet_deltas.items():
        if delta:
            Account.objects.filter(pk=account_id).update(balance=F("balance") + delta)


def _credit(
    wallet: Account, txn: PointsTransaction, points: int, expires_at: datetime, *, moved_from: Lot | None = None
) -> tuple[Account, int, Lot, int]:
    lot = Lot.objects.create(
        account=wallet, member_id=wallet.member_id, transaction=txn, amount=points, remaining=points,
        expires_at=expires_at, created_at=txn.created_at, moved_from=moved_from,
    )
    return (wallet, points, lot, wallet.member_id)


def _credit_pending(
    wallet: Account, txn: PointsTransaction, points: int, *, expires_at: datetime, releases_at: datetime,
    merchant: Merchant | None, status: str = Lot.Status.PENDING, moved_from: Lot | None = None,
) -> tuple[Account, int, Lot, int]:
    """A lot of the wallet's that is not spendable yet: its leg is on the mall's pending account."""
    lot = Lot.objects.create(
        account=wallet, member_id=wallet.member_id, transaction=txn, amount=points, remaining=points,
        expires_at=expires_at, created_at=txn.created_at, status=status, releases_at=releases_at, merchant=merchant,
        moved_from=moved_from,
    )
    return (_system_account(Account.Kind.PENDING), points, lot, wallet.member_id)


def _consume(wallet: Account, txn: PointsTransaction, points: int, *, first_lot_ids: tuple[int, ...] = ()) -> list[tuple]:
    """Take ``points`` from the wallet's live available lots, first-expiring first.

    ``first_lot_ids`` are drained before the others (a refund takes back the points its
    own purchase made first). Raises InsufficientPoints if the live lots fall short.
    """
    lots = Lot.objects.filter(
        account=wallet, status=Lot.Status.AVAILABLE, remaining__gt=0, expires_at__gt=txn.created_at
    ).order_by("expires_at", "id")
    ordered = list(lots)
    if first_lot_ids:
        ordered.sort(key=lambda lot: lot.pk not in first_lot_ids)
    legs, left = [], points
    for lot in ordered:
        if left == 0:
            break
        take = min(lot.remaining, left)
        Lot.objects.filter(pk=lot.pk).update(remaining=F("remaining") - take)
        legs.append((wallet, -take, lot, wallet.member_id))
        left -= take
    if left:
        raise InsufficientPoints(extra={"points_balance": points - left})
    return legs


def _spendable(wallet: Account, now: datetime) -> int:
    """Points in available lots that have not reached their expiry (due lots await the sweep)."""
    due = Lot.objects.filter(
        account=wallet, status=Lot.Status.AVAILABLE, remaining__gt=0, expires_at__lte=now
    ).aggregate(s=Sum("remaining"))["s"] or 0
    return wallet.balance - due


def _lifetime_end(now: datetime) -> datetime:
    return now + timedelta(days=settings.POINTS_LIFETIME_DAYS)


def _merchant_max_sale_fen(merchant: Merchant) -> int:
    return merchant.max_sale_fen or settings.MERCHANT_MAX_SALE_FEN


def _merchant_daily_cap(merchant: Merchant) -> int:
    cap = merchant.mall_points_daily_cap
    return settings.MERCHANT_MALL_POINTS_DAILY_CAP if cap is None else cap


# --- services ---------------------------------------------------------------------


def earn_points_for(*, amount_fen: int, earn_rate_bp: int, multiplier_bp: int) -> tuple[int, int]:
    """(merchant-funded, mall-funded) points for a sale (DESIGN.md "Money and points")."""
    base = amount_fen * earn_rate_bp // (10000 * settings.POINT_VALUE_FEN)
    total = base * multiplier_bp // 10000
    return base, total - base


def points_earn(
    *, member: Member, store: Store, amount_fen: int, idempotency_key: str, reference: str = "",
    member_present: bool = False, at: datetime | None = None,
) -> PointsTransaction:
    """A purchase at ``store``: points funded by its merchant, the tier's extra by the mall.

    The mall funds the extra only when the shopper proved they were there
    (``member_present``: a scanned member code, a payment they made); a sale booked by a
    bare member number earns the merchant's points alone. The extra is *pending* for
    MALL_POINTS_HOLD_DAYS (the refund window) before it can be spent.
    """
    _check_amount_fen(amount_fen)
    request_hash = _request_hash(
        op="earn", member=member.pk, store=store.pk, amount_fen=amount_fen, reference=reference, present=member_present
    )

    def body(wallets, now):
        wallet = wallets[member.pk]
        _ensure_active(wallet)
        merchant = store.merchant
        if not (merchant.is_active and store.is_active):
            raise MerchantNotActive(extra={"store_code": store.code})
        if amount_fen > _merchant_max_sale_fen(merchant):
            raise SaleAmountOverLimit(extra={"max_sale_fen": _merchant_max_sale_fen(merchant)})
        tier = wallet.member.tier
        base, extra = earn_points_for(
            amount_fen=amount_fen, earn_rate_bp=merchant.earn_rate_bp,
            multiplier_bp=tier.multiplier_bp if tier and member_present else 10000,
        )
        txn = _new_transaction(
            key=idempotency_key, request_hash=request_hash, kind=Kind.EARN, member_id=wallet.member_id,
            points=base + extra, now=now, merchant=merchant, store=store, amount_fen=amount_fen, reference=reference,
        )
        legs = []
        if base:
            legs += [
                (_system_account(Account.Kind.MERCHANT_FUNDING, merchant=merchant), -base, None, wallet.member_id),
                _credit(wallet, txn, base, _lifetime_end(now)),
            ]
        if extra:
            legs += [
                (_system_account(Account.Kind.PROMOTIONS), -extra, None, wallet.member_id),
                _credit_pending(
                    wallet, txn, extra, expires_at=_lifetime_end(now), merchant=merchant,
                    releases_at=now + timedelta(days=settings.MALL_POINTS_HOLD_DAYS),
                ),
            ]
        if legs:
            _post(txn, legs)
        return txn

    return _run(key=idempotency_key, request_hash=request_hash, member_ids=[member.pk], body=body, at=at)


def _spend_at_store(
    wallet: Account, store: Store, points: int, now: datetime, *, kind: str, to: Account, key: str, request_hash: str,
    reference: str,
) -> PointsTransaction:
    """``points`` out of the wallet (first-expiring first) into ``to``, at an active shop."""
    _ensure_active(wallet)
    merchant = store.merchant
    if not (merchant.is_active and store.is_active):
        raise MerchantNotActive(extra={"store_code": store.code})
    spendable = _spendable(wallet, now)
    if spendable < points:
        raise InsufficientPoints(extra={"points_balance": spendable})
    txn = _new_transaction(
        key=key, request_hash=request_hash, kind=kind, member_id=wallet.member_id, points=-points,
        now=now, merchant=merchant, store=store, reference=reference,
    )
    _post(txn, _consume(wallet, txn, points) + [(to, points, None, wallet.member_id)])
    return txn


def points_redeem(
    *, member: Member, store: Store, points: int, idempotency_key: str, reference: str = "", at: datetime | None = None
) -> PointsTransaction:
    """The member pays ``points`` at ``store``; its merchant accepts them.

    Callers authorise the spend with the shopper first (``members.spend``): never on a
    bare member number.
    """
    _check_points(points)
    request_hash = _request_hash(op="redeem", member=member.pk, store=store.pk, points=points, reference=reference)

    def body(wallets, now):
        acceptance = _system_account(Account.Kind.MERCHANT_ACCEPTANCE, merchant=store.merchant)
        return _spend_at_store(wallets[member.pk], store, points, now, kind=Kind.REDEEM, to=acceptance,
                               key=idempotency_key, request_hash=request_hash, reference=reference)

    return _run(key=idempotency_key, request_hash=request_hash, member_ids=[member.pk], body=body, at=at)


def points_exchange(
    *, member: Member, points: int, idempotency_key: str, reason: str, merchant: Merchant | None = None,
    at: datetime | None = None,
) -> PointsTransaction:
    """The member pays ``points`` for something the mall or ``merchant`` gives (a coupon of the points mall).

    A REDEEM, like paying at a till, but without a store: the points go to whoever funds
    what was bought — ``merchant``'s acceptance account (its settlement pays it for them,
    as for points taken at its till) or, for the mall's own, back to promotions (merchant
    empty). Spendable points only, first-expiring first. Callers authorise the spend with
    the shopper first (the points mall: the shopper's own token).
    """
    _check_points(points)
    reason = (reason or "").strip()
    if not reason:
        raise ApplicationError("an exchange needs a reason", code="reason_required")
    request_hash = _request_hash(
        op="exchange", member=member.pk, points=points, merchant=merchant.pk if merchant else None, reason=reason
    )

    def body(wallets, now):
        wallet = wallets[member.pk]
        _ensure_active(wallet)
        if merchant is not None and not merchant.is_active:
            raise MerchantNotActive(extra={"merchant": merchant.pk})
        spendable = _spendable(wallet, now)
        if spendable < points:
            raise InsufficientPoints(extra={"points_balance": spendable})
        txn = _new_transaction(
            key=idempotency_key, request_hash=request_hash, kind=Kind.REDEEM, member_id=wallet.member_id, points=-points,
            now=now, merchant=merchant, reason=reason[:200],
        )
        funder = (
            _system_account(Account.Kind.MERCHANT_ACCEPTANCE, merchant=merchant) if merchant is not None
            else _system_account(Account.Kind.PROMOTIONS)
        )
        _post(txn, _consume(wallet, txn, points) + [(funder, points, None, wallet.member_id)])
        return txn

    return _run(key=idempotency_key, request_hash=request_hash, member_ids=[member.pk], body=body, at=at)


def points_grant(
    *, member: Member, points: int, reason: str, idempotency_key: str, expires_at: datetime | None = None,
    at: datetime | None = None,
) -> PointsTransaction:
    """Mall-funded points: check-in, campaign gift, tier bonus."""
    _check_points(points)
    request_hash = _request_hash(op="grant", member=member.pk, points=points, reason=reason, expires_at=expires_at)

    def body(wallets, now):
        wallet = wallets[member.pk]
        _ensure_active(wallet)
        txn = _new_transaction(
            key=idempotency_key, request_hash=request_hash, kind=Kind.GRANT, member_id=wallet.member_id, points=points,
            now=now, reason=reason,
        )
        _post(txn, [
            (_system_account(Account.Kind.PROMOTIONS), -points, None, wallet.member_id),
            _credit(wallet, txn, points, expires_at or _lifetime_end(now)),
        ])
        return txn

    return _run(key=idempotency_key, request_hash=request_hash, member_ids=[member.pk], body=body, at=at)


def points_adjust(
    *, member: Member, points: int, operator, reason: str, idempotency_key: str, public_note: str = "",
    at: datetime | None = None,
) -> PointsTransaction:
    """A staff correction, signed: positive credits from promotions, negative debits to it.

    ``reason`` is for staff (and the audit log); ``public_note`` is what the shopper's
    history says (members.public_notes). Each adjustment writes an audit entry on the
    member in the same transaction. The transaction returned has ``replayed`` set: True
    when ``idempotency_key`` had already been used for this adjustment (nothing moved).
    """
    if not isinstance(points, int) or isinstance(points, bool) or points == 0:
        raise InvalidPoints("points must be a non-zero integer", extra={"field": "points"})
    _check_points(abs(points))
    reason = (reason or "").strip()
    if not reason:
        raise ApplicationError("a staff adjustment needs a reason", code="reason_required")
    if operator is None or not getattr(operator, "pk", None):
        raise ApplicationError("a staff adjustment needs an operator", code="operator_required")
    public_note = (public_note or "").strip()
    if len(public_note) > PointsTransaction._meta.get_field("public_note").max_length:
        raise ApplicationError("the description for the shopper is too long", code="public_note_too_long")
    hashed = {"public_note": public_note} if public_note else {}
    request_hash = _request_hash(op="adjust", member=member.pk, points=points, operator=operator.pk, reason=reason, **hashed)
    applied = []

    def body(wallets, now):
        wallet = wallets[member.pk]
        balance = _spendable(wallet, now)
        if points < 0 and balance < -points:
            raise InsufficientPoints(extra={"points_balance": balance})
        txn = _new_transaction(
            key=idempotency_key, request_hash=request_hash, kind=Kind.ADJUST, member_id=wallet.member_id, points=points,
            now=now, operator=operator, reason=reason, public_note=public_note,
        )
        promotions = _system_account(Account.Kind.PROMOTIONS)
        if points > 0:
            legs = [(promotions, -points, None, wallet.member_id), _credit(wallet, txn, points, _lifetime_end(now))]
        else:
            legs = _consume(wallet, txn, -points) + [(promotions, -points, None, wallet.member_id)]
        _post(txn, legs)
        changes = {"points": [balance, balance + points], "transaction": [None, txn.pk]}
        if public_note:
            changes["public_note"] = [None, public_note]
        audit.audit_record(actor=operator, action=audit.Action.ADJUST, obj=wallet.member, changes=changes, reason=reason, at=now)
        applied.append(txn.pk)
        return txn

    txn = _run(key=idempotency_key, request_hash=request_hash, member_ids=[member.pk], body=body, at=at)
    txn.replayed = txn.pk not in applied
    return txn


def points_adjustments_recent(
    *, member_ids: list[int], points: int, reason: str, since: datetime, exclude_keys: list[str] = ()
) -> list[PointsTransaction]:
    """Adjustments of these members by ``points`` with ``reason`` since ``since`` (the member-and-time index)."""
    return list(
        PointsTransaction.objects.filter(
            member_id__in=member_ids, kind=Kind.ADJUST, points=points, reason=(reason or "").strip(), created_at__gte=since
        )
        .exclude(idempotency_key__in=list(exclude_keys))
        .select_related("member")
        .order_by("member_id", "-created_at")
    )


def points_reverse(
    *, original: PointsTransaction, idempotency_key: str, amount_fen: int | None = None, points: int | None = None,
    reason: str = "refund", at: datetime | None = None,
) -> PointsTransaction:
    """Undo part of an earn (a refund of ``amount_fen``) or of a redeem (``points`` given back).

    Earn: takes back the purchase's points in proportion to the amount refunded, so
    partial refunds add up exactly to the points earned. Mall-funded points still
    pending are cancelled first; then what is left of the purchase's own lots, never
    below zero: what the member has already spent of them is the ``shortfall``, borne
    by the funding merchant (its funding account is not credited for it); the mall's
    share is made whole first. Other points of the member are not touched.
    Redeem: gives ``points`` back, as new lots with the expiry dates they were taken from.
    Hold: the same for points a paid order used (after ``points_hold_capture``).
    A merged member's purchase or redemption acts on the member it was merged into.
    """
    if original.kind == Kind.EARN:
        _check_amount_fen(amount_fen)
        request_hash = _request_hash(op="reverse", original=original.pk, amount_fen=amount_fen, reason=reason)
        body = _reverse_earn_body(original, idempotency_key, request_hash, amount_fen, reason)
    elif original.kind in (Kind.REDEEM, Kind.HOLD):
        _check_points(points)
        request_hash = _request_hash(op="reverse", original=original.pk, points=points, reason=reason)
        body = _reverse_redeem_body(original, idempotency_key, request_hash, points, reason)
    else:
        raise NotReversible(extra={"kind": original.kind})
    return _run(key=idempotency_key, request_hash=request_hash, member_ids=[original.member_id], body=body, at=at)


def _lots_descending_from(lots: list[Lot]) -> list[Lot]:
    """``lots`` and the lots transfers (merges) carried them over to, however many times."""
    found, frontier = list(lots), [lot.pk for lot in lots]
    while frontier:
        moved = list(Lot.objects.filter(moved_from_id__in=frontier))
        found += moved
        frontier = [lot.pk for lot in moved]
    return found


def _reverse_earn_body(original, key, request_hash, amount_fen, reason):
    def body(wallets, now):
        wallet = wallets[original.member_id]
        member_id = wallet.member_id
        previous = original.reversals.aggregate(fen=Sum("amount_fen"))
        refunded_before = previous["fen"] or 0
        if refunded_before + amount_fen > original.amount_fen:
            raise RefundExceedsPurchase(extra={"refundable_fen": original.amount_fen - refunded_before})
        # Cumulative rounding: the targets of all partial refunds sum to the points earned.
        target = (
            original.points * (refunded_before + amount_fen) // original.amount_fen
            - original.points * refunded_before // original.amount_fen
        )
        promotions = _system_account(Account.Kind.PROMOTIONS)
        mall_funded = -(original.entries.filter(account=promotions).aggregate(s=Sum("amount"))["s"] or 0)
        mall_returned = Entry.objects.filter(transaction__reverses=original, account=promotions).aggregate(s=Sum("amount"))["s"] or 0
        mall_open = mall_funded - mall_returned
        own_lots = _lots_descending_from(list(original.lots.all()))
        # The mall's points not yet spendable are cancelled first: nothing was spent of them.
        pending_legs, cancelled = [], 0
        for lot in own_lots:
            if lot.status == Lot.Status.AVAILABLE or lot.member_id != member_id or lot.remaining == 0:
                continue
            give = min(lot.remaining, target - cancelled, mall_open - cancelled)
            if give <= 0:
                break
            Lot.objects.filter(pk=lot.pk).update(remaining=F("remaining") - give)
            pending_legs.append((_system_account(Account.Kind.PENDING), -give, lot, member_id))
            cancelled += give
        rest = target - cancelled
        # Only what is left of the purchase's own points (wherever a merge carried them):
        # the rest was spent, and is the shortfall. Taking other points would tell the
        # refunding merchant the shopper's balance (it would be what was taken).
        own_available = sum(
            lot.remaining for lot in own_lots
            if lot.status == Lot.Status.AVAILABLE and lot.member_id == member_id and lot.expires_at > now
        )
        take = min(rest, own_available)
        txn = _new_transaction(
            key=key, request_hash=request_hash, kind=Kind.REVERSE, member_id=member_id, points=-(cancelled + take),
            now=now, merchant=original.merchant, store=original.store, amount_fen=amount_fen,
            shortfall=rest - take, reverses=original, reason=reason, reference=original.reference,
        )
        legs = pending_legs + [(promotions, cancelled, None, member_id)]
        if take:
            to_mall = min(take, mall_open - cancelled)
            first = tuple(lot.pk for lot in own_lots if lot.status == Lot.Status.AVAILABLE)
            legs += _consume(wallet, txn, take, first_lot_ids=first) + [
                (promotions, to_mall, None, member_id),
                (_system_account(Account.Kind.MERCHANT_FUNDING, merchant=original.merchant), take - to_mall, None, member_id),
            ]
        _post(txn, legs)
        return txn

    return body


def _reverse_redeem_body(original, key, request_hash, points, reason, *, counter: Account | None = None):
    """Give back ``points`` a redeem (or an order's hold) took, from ``counter`` (unless
    told otherwise: the merchant's acceptance account, or promotions for the mall's own
    points-mall exchange)."""
    def body(wallets, now):
        wallet = wallets[original.member_id]
        # Captures move no wallet points (0); releases and refunds count.
        returned_before = original.reversals.aggregate(s=Sum("points"))["s"] or 0
        if returned_before + points > -original.points:
            raise RefundExceedsPurchase(extra={"refundable_points": -original.points - returned_before})
        if original.kind == Kind.HOLD and counter is None and _hold_open(original) > 0:
            raise HoldNotCaptured(extra={"hold": original.idempotency_key})
        # What the redemption took, latest expiry first; earlier reversals gave back the head.
        taken = original.entries.filter(lot__isnull=False).select_related("lot").order_by("-lot__expires_at", "-lot_id")
        chunks, skip, left = [], returned_before, points
        for entry in taken:
            size = -entry.amount
            used = min(skip, size)
            skip, size = skip - used, size - used
            give = min(size, left)
            if give:
                chunks.append((entry.lot, give))
                left -= give
        recoveries = _shortfall_recoveries(chunks)
        recovered = sum(points for _, _, points in recoveries)
        txn = _new_transaction(
            key=key, request_hash=request_hash, kind=Kind.REVERSE, member_id=wallet.member_id, points=points - recovered,
            now=now, merchant=original.merchant, store=original.store, reverses=original, reason=reason,
            reference=original.reference,
        )
        legs = []
        for lot, give in chunks:
            back = give - sum(points for chunk_lot, _, points in recoveries if chunk_lot.pk == lot.pk)
            if back:
                # The same points back, so a later refund of the purchase that earned them
                # finds them among its own (``_lots_descending_from``).
                legs.append(_credit(wallet, txn, back, lot.expires_at, moved_from=lot))
        for _, earn, points_recovered in recoveries:
            legs.append((_system_account(Account.Kind.MERCHANT_FUNDING, merchant=earn.merchant), points_recovered, None, wallet.member_id))
            ShortfallRecovery.objects.create(
                earn=earn, transaction=txn, member_id=wallet.member_id, points=points_recovered, created_at=now
            )
        if counter is not None:
            source = counter
        elif original.merchant_id is not None:
            source = _system_account(Account.Kind.MERCHANT_ACCEPTANCE, merchant=original.merchant)
        else:
            # The mall's own points-mall item: the points went back to promotions.
            source = _system_account(Account.Kind.PROMOTIONS)
        legs.append((source, -points, None, wallet.member_id))
        _post(txn, legs)
        return txn

    return body


def _root_earn(lot: Lot) -> PointsTransaction | None:
    """The purchase whose points ``lot`` is (following give-backs and merges to the first lot)."""
    seen = set()
    while lot.moved_from_id is not None and lot.pk not in seen:
        seen.add(lot.pk)
        lot = Lot.objects.select_related("transaction").get(pk=lot.moved_from_id)
    txn = lot.transaction
    return txn if txn.kind == Kind.EARN else None


def _shortfall_recoveries(chunks: list[tuple[Lot, int]]) -> list[tuple[Lot, PointsTransaction, int]]:
    """Of the points a refunded spend gives back, those its purchase's refund could not take
    back (the shortfall, borne by the funding merchant): they go back to that merchant, not
    to the wallet. Otherwise refunding a purchase, then the spend of its points, would leave
    the shopper the points of a purchase that no longer exists."""
    outstanding: dict[int, int] = {}
    recoveries = []
    for lot, give in chunks:
        earn = _root_earn(lot)
        if earn is None:
            continue
        if earn.pk not in outstanding:
            shortfall = earn.reversals.aggregate(s=Sum("shortfall"))["s"] or 0
            recovered = earn.shortfall_recoveries.aggregate(s=Sum("points"))["s"] or 0
            outstanding[earn.pk] = shortfall - recovered
        take = min(give, outstanding[earn.pk])
        if take > 0:
            outstanding[earn.pk] -= take
            recoveries.append((lot, earn, take))
    return recoveries


# --- order holds --------------------------------------------------------------------
# An order paid partly with points sets them aside when it is created (HOLD: wallet →
# the mall's escrow account), then either hands them to the shop's merchant when it is
# paid (CAPTURE: escrow → acceptance) or gives them back when it is not (a REVERSE of the
# hold: escrow → wallet, with the lots' own expiry dates). A refund of a paid order gives
# them back from the merchant's acceptance account (``points_reverse`` of the hold).


def _hold_open(hold: PointsTransaction) -> int:
    """Points of ``hold`` still in escrow: neither captured nor released."""
    escrow = _system_account(Account.Kind.ESCROW)
    return Entry.objects.filter(
        Q(transaction=hold) | Q(transaction__reverses=hold), account=escrow
    ).aggregate(s=Sum("amount"))["s"] or 0


def points_hold(
    *, member: Member, store: Store, points: int, idempotency_key: str, reference: str = "", at: datetime | None = None
) -> PointsTransaction:
    """Set ``points`` aside for an order at ``store`` (first-expiring first).

    The shopper authorised it (they are the one paying); the spend rules of
    ``points_redeem`` apply: active member and shop, spendable points only.
    """
    _check_points(points)
    request_hash = _request_hash(op="hold", member=member.pk, store=store.pk, points=points, reference=reference)

    def body(wallets, now):
        return _spend_at_store(wallets[member.pk], store, points, now, kind=Kind.HOLD, to=_system_account(Account.Kind.ESCROW),
                               key=idempotency_key, request_hash=request_hash, reference=reference)

    return _run(key=idempotency_key, request_hash=request_hash, member_ids=[member.pk], body=body, at=at)


def points_hold_capture(*, hold: PointsTransaction, idempotency_key: str, at: datetime | None = None) -> PointsTransaction:
    """The order was paid: its held points become the shop's merchant's (as a redeem would)."""
    if hold.kind != Kind.HOLD:
        raise NotReversible(extra={"kind": hold.kind})
    request_hash = _request_hash(op="capture", hold=hold.pk)

    def body(wallets, now):
        open_points = _hold_open(hold)
        if open_points != -hold.points:
            raise HoldNotOpen(extra={"hold": hold.idempotency_key})
        member_id = wallets[hold.member_id].member_id
        txn = _new_transaction(
            key=idempotency_key, request_hash=request_hash, kind=Kind.CAPTURE, member_id=member_id, points=0, now=now,
            merchant=hold.merchant, store=hold.store, reverses=hold, reference=hold.reference,
        )
        _post(txn, [
            (_system_account(Account.Kind.ESCROW), -open_points, None, member_id),
            (_system_account(Account.Kind.MERCHANT_ACCEPTANCE, merchant=hold.merchant), open_points, None, member_id),
        ])
        return txn

    return _run(key=idempotency_key, request_hash=request_hash, member_ids=[hold.member_id], body=body, at=at)


def points_hold_release(
    *, hold: PointsTransaction, idempotency_key: str, reason: str = "order not paid", at: datetime | None = None
) -> PointsTransaction:
    """The order was not paid: its held points go back with their own expiry dates."""
    if hold.kind != Kind.HOLD:
        raise NotReversible(extra={"kind": hold.kind})
    points = -hold.points
    request_hash = _request_hash(op="release_hold", hold=hold.pk, reason=reason)
    escrow = _system_account(Account.Kind.ESCROW)
    reverse = _reverse_redeem_body(hold, idempotency_key, request_hash, points, reason, counter=escrow)

    def body(wallets, now):
        if _hold_open(hold) != points:
            raise HoldNotOpen(extra={"hold": hold.idempotency_key})
        return reverse(wallets, now)

    return _run(key=idempotency_key, request_hash=request_hash, member_ids=[hold.member_id], body=body, at=at)


def expire_key(lot: Lot) -> str:
    return _expire_key(lot.pk, lot.expires_at)


def _expire_key(lot_id: int, expires_at: datetime) -> str:
    return f"expire:{lot_id}:{timezone.localdate(expires_at).isoformat()}"


def points_expire_lot(*, lot: Lot, at: datetime | None = None) -> PointsTransaction | None:
    """Move what is left of a due lot to the expired sink. Safe to run twice."""
    key = expire_key(lot)
    request_hash = _request_hash(op="expire", lot=lot.pk)

    def body(wallets, now):
        fresh = Lot.objects.get(pk=lot.pk)
        if fresh.expires_at > now:
            raise LotNotDue(extra={"expires_at": fresh.expires_at.isoformat()})
        if fresh.remaining == 0:
            return _replayed(key, request_hash)  # expired already (this key), or spent
        wallet = wallets[lot.member_id]
        # A lot still pending (or held) expires from the pending account, not the wallet.
        holder = wallet if fresh.status == Lot.Status.AVAILABLE else _system_account(Account.Kind.PENDING)
        txn = _new_transaction(
            key=key, request_hash=request_hash, kind=Kind.EXPIRE, member_id=fresh.member_id, points=-fresh.remaining,
            now=now, reason=f"lot {lot.pk} expired",
        )
        Lot.objects.filter(pk=lot.pk).update(remaining=0)
        _post(txn, [
            (holder, -fresh.remaining, fresh, fresh.member_id),
            (_system_account(Account.Kind.EXPIRED), fresh.remaining, None, fresh.member_id),
        ])
        return txn

    # The lot's own member: a merged member's lots were moved away (and are empty).
    return _run(key=key, request_hash=request_hash, member_ids=[lot.member_id], body=body, at=at)


def points_expire_due(*, at: datetime | None = None, batch_size: int = 500, progress=None, deadline=None) -> int:
    """Expire every lot due at ``at`` (now), ``batch_size`` lots a transaction; how many.

    ``progress(done, total)`` is told after each batch (the management command's bar);
    past ``deadline`` (core.jobs) it stops after a batch with DeadlinePassed.
    A batch that meets a member being merged stops the run: the next run sees the truth.
    """
    now = at or timezone.now()
    total = lots_due(now=now).count() if progress is not None else 0
    expired = 0
    while True:
        try:
            done = points_expire_due_batch(at=now, limit=batch_size)
        except ApplicationError:
            return expired
        if done == 0:
            return expired
        expired += done
        if progress is not None:
            progress(expired, max(total, expired))
        deadline_check(deadline)


def points_expire_due_batch(*, at: datetime | None = None, limit: int = 500) -> int:
    """Expire up to ``limit`` due lots in one transaction, set-based: the wallets of their
    members locked in one statement, then one statement each for the transactions, the
    entries, the lots and the balances (``members.ledger_sql``). Returns how many lots
    were expired.

    The same keys as ``points_expire_lot`` (``expire:<lot>:<date>``), so the two never
    expire a lot twice; killed half-way, a batch is rolled back whole, and the next run
    takes its lots again.
    """
    now = at or timezone.now()
    # By expiry (the partial index lot_due): no scan over lots already emptied or not yet due.
    due = list(lots_due(now=now).order_by("expires_at", "pk").values_list("pk", "member_id")[:limit])
    if not due:
        return 0
    with transaction.atomic():
        # A lot's points are in its member's wallet (a merge empties the merged member's
        # lots under both wallets' locks): locking those wallets is enough, in member order.
        list(
            Account.objects.select_for_update().filter(kind=Account.Kind.WALLET, member_id__in={m for _, m in due})
            .order_by("member_id").values_list("pk", flat=True)
        )
        # Read again under the locks: a spend or a merge may have emptied some meanwhile.
        lots = list(
            Lot.objects.filter(pk__in=[pk for pk, _ in due], remaining__gt=0, expires_at__lte=now)
            .order_by("pk").values_list("pk", "member_id", "account_id", "remaining", "status", "expires_at")
        )
        if not lots:
            return 0
        keys = {pk: _expire_key(pk, expires_at) for pk, _, _, _, _, expires_at in lots}
        taken = set(PointsTransaction.objects.filter(idempotency_key__in=list(keys.values())).values_list("idempotency_key", flat=True))
        lots = [lot for lot in lots if keys[lot[0]] not in taken]
        ids = ledger_sql.transactions_insert(at=now, rows=[
            (keys[pk], _request_hash(op="expire", lot=pk), Kind.EXPIRE, member_id, -remaining, f"lot {pk} expired")
            for pk, member_id, _, remaining, _, _ in lots
        ])
        pending, expired = _system_account(Account.Kind.PENDING), _system_account(Account.Kind.EXPIRED)
        entries, wallet_deltas = [], {}
        for pk, member_id, account_id, remaining, status, _ in lots:
            if status == Lot.Status.AVAILABLE:
                holder_id = account_id
                wallet_deltas[holder_id] = wallet_deltas.get(holder_id, 0) - remaining
            else:
                holder_id = pending.pk  # a lot still pending (or held) expires from the pending account
            txn_id = ids[keys[pk]]
            entries += [(txn_id, holder_id, -remaining, pk, member_id), (txn_id, expired.pk, remaining, None, member_id)]
        ledger_sql.entries_insert(rows=entries, at=now)
        ledger_sql.lots_empty(lot_ids=[lot[0] for lot in lots])
        ledger_sql.balances_add(deltas=wallet_deltas)
        metrics.points_moved(kind=Kind.EXPIRE, points=sum(lot[3] for lot in lots), transactions=len(lots))
    return len(lots)


def release_key(lot: Lot) -> str:
    return f"release:{lot.pk}"


def _released_today(merchant_id: int, now: datetime) -> int:
    """Mall-funded points released today for ``merchant_id``'s sales (for its daily cap)."""
    start = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    return Entry.objects.filter(
        account__kind=Account.Kind.PENDING, amount__lt=0, transaction__kind=Kind.RELEASE,
        transaction__merchant_id=merchant_id, created_at__gte=start,
    ).aggregate(s=Sum("amount"))["s"] or 0


def points_release_lot(*, lot: Lot, operator=None, at: datetime | None = None) -> PointsTransaction | None:
    """Make a pending lot spendable: it moves from the pending account into the wallet.

    A lot whose merchant has had MERCHANT_MALL_POINTS_DAILY_CAP (or its own cap)
    released today is *held* for staff instead; staff release a held lot by passing
    ``operator``. Returns None when the lot is held, or was emptied (a refund cancelled
    it, a merge moved it). Safe to run twice.
    """
    key = release_key(lot)
    request_hash = _request_hash(op="release", lot=lot.pk)

    def body(wallets, now):
        fresh = Lot.objects.select_related("merchant").get(pk=lot.pk)
        if fresh.status == Lot.Status.AVAILABLE or fresh.remaining == 0:
            return _replayed(key, request_hash)
        if operator is None:
            if fresh.status == Lot.Status.HELD:
                return None
            if fresh.releases_at > now:
                raise LotNotDue(extra={"releases_at": fresh.releases_at.isoformat()})
            if fresh.merchant is not None and -_released_today(fresh.merchant_id, now) + fresh.remaining > _merchant_daily_cap(fresh.merchant):
                Lot.objects.filter(pk=fresh.pk).update(status=Lot.Status.HELD)
                return None
        wallet = wallets[fresh.member_id]
        txn = _new_transaction(
            key=key, request_hash=request_hash, kind=Kind.RELEASE, member_id=fresh.member_id, points=0, now=now,
            merchant=fresh.merchant, operator=operator,
            reason=f"lot {fresh.pk} released" + (" by staff" if operator is not None else ""),
        )
        Lot.objects.filter(pk=fresh.pk).update(status=Lot.Status.AVAILABLE)
        _post(txn, [
            (_system_account(Account.Kind.PENDING), -fresh.remaining, fresh, fresh.member_id),
            (wallet, fresh.remaining, fresh, fresh.member_id),
        ])
        return txn

    return _run(key=key, request_hash=request_hash, member_ids=[lot.member_id], body=body, at=at)


def points_cancel_lot(*, lot: Lot, operator, reason: str, at: datetime | None = None) -> PointsTransaction | None:
    """Staff cancel a pending or held lot (a sale found fake): its points go back to the mall."""
    reason = (reason or "").strip()
    if not reason:
        raise ApplicationError("a cancellation needs a reason", code="reason_required")
    key = f"cancel:{lot.pk}"
    request_hash = _request_hash(op="cancel", lot=lot.pk)

    def body(wallets, now):
        fresh = Lot.objects.get(pk=lot.pk)
        if fresh.status == Lot.Status.AVAILABLE:
            raise ApplicationError("the points were released already; adjust the member instead", code="lot_released")
        if fresh.remaining == 0:
            return _replayed(key, request_hash)
        txn = _new_transaction(
            key=key, request_hash=request_hash, kind=Kind.CANCEL, member_id=fresh.member_id, points=-fresh.remaining,
            now=now, merchant=fresh.merchant, operator=operator, reason=reason[:200],
        )
        Lot.objects.filter(pk=fresh.pk).update(remaining=0)
        _post(txn, [
            (_system_account(Account.Kind.PENDING), -fresh.remaining, fresh, fresh.member_id),
            (_system_account(Account.Kind.PROMOTIONS), fresh.remaining, None, fresh.member_id),
        ])
        return txn

    return _run(key=key, request_hash=request_hash, member_ids=[lot.member_id], body=body, at=at)


def points_transfer(
    *, source: Member, target: Member, idempotency_key: str, reason: str, points: int | None = None,
    at: datetime | None = None,
) -> PointsTransaction:
    """Move points from one member to another, keeping each lot's expiry (merging duplicates).

    ``points=None`` moves everything the source holds, pending and held lots included
    (they stay pending until their own release date).
    """
    if source.pk == target.pk:
        raise ApplicationError("cannot transfer to the same member", code="same_member")
    if points is not None:
        _check_points(points)
    request_hash = _request_hash(op="transfer", source=source.pk, target=target.pk, points=points, reason=reason)

    def body(wallets, now):
        src, dst = wallets[source.pk], wallets[target.pk]
        if src.pk == dst.pk:
            raise ApplicationError("cannot transfer to the same member", code="same_member")
        # A banned member may still receive (a merge folds a duplicate into them); a
        # merged-away member never does: their points live with the survivor.
        if dst.member.status == Member.Status.MERGED:
            raise MemberNotActive(extra={"member_no": dst.member.member_no})
        if points is not None and _spendable(src, now) < points:
            raise InsufficientPoints(extra={"points_balance": _spendable(src, now)})
        # Everything (a merge) includes lots past their expiry that the nightly sweep has
        # not reached: they move as they are, and expire with the survivor.
        amount = src.balance if points is None else points
        txn = _new_transaction(
            key=idempotency_key, request_hash=request_hash, kind=Kind.TRANSFER, member_id=src.member_id, points=-amount,
            now=now, counterparty_id=dst.member_id, reason=reason,
        )
        legs = []
        if points is None:
            for lot in Lot.objects.filter(account=src, status=Lot.Status.AVAILABLE, remaining__gt=0).order_by("expires_at", "id"):
                Lot.objects.filter(pk=lot.pk).update(remaining=0)
                legs += [(src, -lot.remaining, lot, src.member_id), _credit(dst, txn, lot.remaining, lot.expires_at, moved_from=lot)]
        elif amount:
            taken = _consume(src, txn, amount)
            legs += taken + [_credit(dst, txn, -leg[1], leg[2].expires_at, moved_from=leg[2]) for leg in taken]
        if points is None:
            pending = _system_account(Account.Kind.PENDING)
            for lot in Lot.objects.filter(account=src, remaining__gt=0).exclude(status=Lot.Status.AVAILABLE).order_by("id"):
                Lot.objects.filter(pk=lot.pk).update(remaining=0)
                legs += [
                    (pending, -lot.remaining, lot, src.member_id),
                    _credit_pending(
                        dst, txn, lot.remaining, expires_at=lot.expires_at, releases_at=lot.releases_at,
                        merchant=lot.merchant, status=lot.status, moved_from=lot,
                    ),
                ]
        if legs:
            _post(txn, legs)
        return txn

    return _run(key=idempotency_key, request_hash=request_hash, member_ids=sorted([source.pk, target.pk]), body=body, at=at)


# --- reads ------------------------------------------------------------------------


def member_points_balance(*, member: Member) -> int:
    return Account.objects.filter(kind=Account.Kind.WALLET, member=member).values_list("balance", flat=True).first() or 0


def member_points_spendable(*, member: Member) -> int:
    """The balance less points past their expiry that the nightly sweep has not reached."""
    wallet = Account.objects.filter(kind=Account.Kind.WALLET, member=member).first()
    return _spendable(wallet, timezone.now()) if wallet else 0


def member_points_pending(*, member: Member) -> int:
    """Points earned but not yet spendable (pending the refund window, or held for review)."""
    return (
        Lot.objects.filter(member=member, remaining__gt=0)
        .exclude(status=Lot.Status.AVAILABLE)
        .aggregate(s=Sum("remaining"))["s"]
        or 0
    )


def member_points_expiring(*, member: Member, within_days: int = 30) -> int:
    horizon = timezone.now() + timedelta(days=within_days)
    return Lot.objects.filter(
        member=member, status=Lot.Status.AVAILABLE, remaining__gt=0, expires_at__lte=horizon
    ).aggregate(s=Sum("remaining"))["s"] or 0


def member_points_history(*, member: Member):
    """The member's transactions, newest first, with their shop."""
    return (
        PointsTransaction.objects.filter(Q(member=member) | Q(counterparty=member))
        .select_related("store", "merchant")
        .order_by("-created_at", "-id")
    )


def lots_due(*, now: datetime | None = None):
    return Lot.objects.filter(remaining__gt=0, expires_at__lte=now or timezone.now())


def lots_release_due(*, now: datetime | None = None):
    """Pending lots whose hold is over (held lots wait for staff)."""
    return Lot.objects.filter(status=Lot.Status.PENDING, releases_at__lte=now or timezone.now(), remaining__gt=0)


@dataclass(frozen=True)
class Settlement:
    merchant_id: int
    start: datetime
    end: datetime
    funded_points: int  # points the merchant issued, net of refunds taken back
    accepted_points: int  # points the merchant took as payment, net of those given back
    funded_fen: int
    accepted_fen: int
    net_fen: int  # positive: the pool owes the merchant; negative: the merchant owes the pool


def merchant_settlement(*, merchant: Merchant, start: datetime, end: datetime) -> Settlement:
    """What a merchant owes the pool and is owed for entries in [start, end)."""
    sums = dict(
        Entry.objects.filter(
            account__merchant=merchant,
            account__kind__in=[Account.Kind.MERCHANT_FUNDING, Account.Kind.MERCHANT_ACCEPTANCE],
            created_at__gte=start,
            created_at__lt=end,
        )
        .values_list("account__kind")
        .annotate(s=Sum("amount"))
    )
    funded = -(sums.get(Account.Kind.MERCHANT_FUNDING) or 0)
    accepted = sums.get(Account.Kind.MERCHANT_ACCEPTANCE) or 0
    value = settings.POINT_VALUE_FEN
    return Settlement(
        merchant_id=merchant.pk, start=start, end=end, funded_points=funded, accepted_points=accepted,
        funded_fen=funded * value, accepted_fen=accepted * value, net_fen=(accepted - funded) * value,
    )


# Entries younger than this are left to the next roll-up: an id is taken at INSERT but
# becomes visible at COMMIT, so a lower id may still be in flight for a few moments.
ROLLUP_SETTLE_SECONDS = 300


def ledger_rollup(*, now: datetime | None = None) -> int:
    """Fold settled entries into the cached balances of system accounts. Safe to run twice.

    Returns the number of accounts whose balance moved.
    """
    cutoff = (now or timezone.now()) - timedelta(seconds=ROLLUP_SETTLE_SECONDS)
    high = Entry.objects.filter(created_at__lt=cutoff).aggregate(m=Max("id"))["m"]
    if high is None:
        return 0
    system = Account.objects.exclude(kind=Account.Kind.WALLET)
    with transaction.atomic():
        # NO KEY UPDATE: entries keep inserting (their foreign-key check takes KEY SHARE,
        # which this lock does not block), while a second roll-up waits here.
        list(system.select_for_update(no_key=True).filter(rolled_up_entry_id__lt=high).values_list("pk", flat=True))
        deltas = (
            Entry.objects.filter(
                account__in=system, id__lte=high, id__gt=F("account__rolled_up_entry_id")
            )
            .values_list("account_id")
            .annotate(s=Sum("amount"))
        )
        rolled_at = timezone.now()
        moved = 0
        for account_id, delta in deltas:
            Account.objects.filter(pk=account_id).update(balance=F("balance") + delta)
            moved += 1
        system.filter(rolled_up_entry_id__lt=high).update(rolled_up_entry_id=high, rolled_up_at=rolled_at)
    return moved
