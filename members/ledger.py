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

from core.errors import ApplicationError, Conflict, NotFound, PermissionDenied
from members.models import Account, Entry, Lot, Member, Merchant, PointsTransaction, Store

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
    """The lot has not reached its expiry."""

    code = "lot_not_due"


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


def _lock_wallets(member_ids: list[int]) -> dict[int, Account]:
    # Locked in member-id order, so two transfers in opposite directions cannot deadlock.
    wallets = (
        Account.objects.select_for_update(of=("self",))
        .select_related("member__tier")
        .filter(kind=Account.Kind.WALLET, member_id__in=member_ids)
        .order_by("member_id")
    )
    found = {w.member_id: w for w in wallets}
    missing = set(member_ids) - set(found)
    if missing:
        raise NotFound(f"no wallet for member {sorted(missing)}", code="member_not_found")
    return found


def _run(*, key: str, request_hash: str, member_ids: list[int], body) -> PointsTransaction:
    """Lock the wallets, replay or run ``body(wallets, now)``, all in one transaction."""
    if not key or len(key) > MAX_KEY_LENGTH:
        raise ApplicationError(f"idempotency key must be 1 to {MAX_KEY_LENGTH} characters", code="invalid_idempotency_key")
    # Insert first, look up on failure: the unique key tells a replay apart at no cost
    # to the first request (one query fewer on the hot path). A replay either trips the
    # key at INSERT, or fails a check its first run changed (a redemption's balance,
    # a refund's remainder); both end here, and get the first result or a conflict.
    try:
        with transaction.atomic():
            return body(_lock_wallets(member_ids), timezone.now())
    except (IntegrityError, ApplicationError):
        existing = _replayed(key, request_hash)
        if existing is None:
            raise
        return existing


def _ensure_active(wallet: Account) -> None:
    if wallet.member.status != Member.Status.ACTIVE:
        raise MemberNotActive(extra={"member_no": wallet.member.member_no})


def _new_transaction(*, key: str, request_hash: str, kind: str, member_id: int, points: int, now: datetime, **fields) -> PointsTransaction:
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


def _credit(wallet: Account, txn: PointsTransaction, points: int, expires_at: datetime) -> tuple[Account, int, Lot, int]:
    lot = Lot.objects.create(
        account=wallet, member_id=wallet.member_id, transaction=txn, amount=points, remaining=points,
        expires_at=expires_at, created_at=txn.created_at,
    )
    return (wallet, points, lot, wallet.member_id)


def _consume(wallet: Account, txn: PointsTransaction, points: int, *, first_lot_id: int | None = None) -> list[tuple]:
    """Take ``points`` from the wallet's live lots, first-expiring first.

    ``first_lot_id`` is drained before the others (a refund takes back the points its
    own purchase made first). Raises InsufficientPoints if the live lots fall short.
    """
    lots = Lot.objects.filter(account=wallet, remaining__gt=0, expires_at__gt=txn.created_at).order_by("expires_at", "id")
    ordered = list(lots)
    if first_lot_id is not None:
        ordered.sort(key=lambda lot: lot.pk != first_lot_id)
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
    """Points in lots that have not reached their expiry (due lots await the sweep)."""
    due = Lot.objects.filter(account=wallet, remaining__gt=0, expires_at__lte=now).aggregate(s=Sum("remaining"))["s"] or 0
    return wallet.balance - due


def _lifetime_end(now: datetime) -> datetime:
    return now + timedelta(days=settings.POINTS_LIFETIME_DAYS)


# --- services ---------------------------------------------------------------------


def earn_points_for(*, amount_fen: int, earn_rate_bp: int, multiplier_bp: int) -> tuple[int, int]:
    """(merchant-funded, mall-funded) points for a sale (DESIGN.md "Money and points")."""
    base = amount_fen * earn_rate_bp // (10000 * settings.POINT_VALUE_FEN)
    total = base * multiplier_bp // 10000
    return base, total - base


def points_earn(*, member: Member, store: Store, amount_fen: int, idempotency_key: str, reference: str = "") -> PointsTransaction:
    """A purchase at ``store``: points funded by its merchant, the tier's extra by the mall."""
    _check_amount_fen(amount_fen)
    request_hash = _request_hash(op="earn", member=member.pk, store=store.pk, amount_fen=amount_fen, reference=reference)

    def body(wallets, now):
        wallet = wallets[member.pk]
        _ensure_active(wallet)
        merchant = store.merchant
        if not (merchant.is_active and store.is_active):
            raise MerchantNotActive(extra={"store_code": store.code})
        tier = wallet.member.tier
        base, extra = earn_points_for(
            amount_fen=amount_fen, earn_rate_bp=merchant.earn_rate_bp, multiplier_bp=tier.multiplier_bp if tier else 10000
        )
        txn = _new_transaction(
            key=idempotency_key, request_hash=request_hash, kind=Kind.EARN, member_id=member.pk, points=base + extra,
            now=now, merchant=merchant, store=store, amount_fen=amount_fen, reference=reference,
        )
        legs = []
        if base:
            legs.append((_system_account(Account.Kind.MERCHANT_FUNDING, merchant=merchant), -base, None, member.pk))
        if extra:
            legs.append((_system_account(Account.Kind.PROMOTIONS), -extra, None, member.pk))
        if legs:
            _post(txn, [*legs, _credit(wallet, txn, base + extra, _lifetime_end(now))])
        return txn

    return _run(key=idempotency_key, request_hash=request_hash, member_ids=[member.pk], body=body)


def points_redeem(*, member: Member, store: Store, points: int, idempotency_key: str, reference: str = "") -> PointsTransaction:
    """The member pays ``points`` at ``store``; its merchant accepts them."""
    _check_points(points)
    request_hash = _request_hash(op="redeem", member=member.pk, store=store.pk, points=points, reference=reference)

    def body(wallets, now):
        wallet = wallets[member.pk]
        _ensure_active(wallet)
        merchant = store.merchant
        if not (merchant.is_active and store.is_active):
            raise MerchantNotActive(extra={"store_code": store.code})
        if _spendable(wallet, now) < points:
            raise InsufficientPoints(extra={"points_balance": _spendable(wallet, now)})
        txn = _new_transaction(
            key=idempotency_key, request_hash=request_hash, kind=Kind.REDEEM, member_id=member.pk, points=-points,
            now=now, merchant=merchant, store=store, reference=reference,
        )
        _post(txn, _consume(wallet, txn, points) + [
            (_system_account(Account.Kind.MERCHANT_ACCEPTANCE, merchant=merchant), points, None, member.pk),
        ])
        return txn

    return _run(key=idempotency_key, request_hash=request_hash, member_ids=[member.pk], body=body)


def points_grant(
    *, member: Member, points: int, reason: str, idempotency_key: str, expires_at: datetime | None = None
) -> PointsTransaction:
    """Mall-funded points: check-in, campaign gift, tier bonus."""
    _check_points(points)
    request_hash = _request_hash(op="grant", member=member.pk, points=points, reason=reason, expires_at=expires_at)

    def body(wallets, now):
        wallet = wallets[member.pk]
        _ensure_active(wallet)
        txn = _new_transaction(
            key=idempotency_key, request_hash=request_hash, kind=Kind.GRANT, member_id=member.pk, points=points,
            now=now, reason=reason,
        )
        _post(txn, [
            (_system_account(Account.Kind.PROMOTIONS), -points, None, member.pk),
            _credit(wallet, txn, points, expires_at or _lifetime_end(now)),
        ])
        return txn

    return _run(key=idempotency_key, request_hash=request_hash, member_ids=[member.pk], body=body)


def points_adjust(*, member: Member, points: int, operator, reason: str, idempotency_key: str) -> PointsTransaction:
    """A staff correction, signed: positive credits from promotions, negative debits to it."""
    if not isinstance(points, int) or isinstance(points, bool) or points == 0:
        raise InvalidPoints("points must be a non-zero integer", extra={"field": "points"})
    _check_points(abs(points))
    reason = (reason or "").strip()
    if not reason:
        raise ApplicationError("a staff adjustment needs a reason", code="reason_required")
    if operator is None or not getattr(operator, "pk", None):
        raise ApplicationError("a staff adjustment needs an operator", code="operator_required")
    request_hash = _request_hash(op="adjust", member=member.pk, points=points, operator=operator.pk, reason=reason)

    def body(wallets, now):
        wallet = wallets[member.pk]
        if points < 0 and _spendable(wallet, now) < -points:
            raise InsufficientPoints(extra={"points_balance": _spendable(wallet, now)})
        txn = _new_transaction(
            key=idempotency_key, request_hash=request_hash, kind=Kind.ADJUST, member_id=member.pk, points=points,
            now=now, operator=operator, reason=reason,
        )
        promotions = _system_account(Account.Kind.PROMOTIONS)
        if points > 0:
            legs = [(promotions, -points, None, member.pk), _credit(wallet, txn, points, _lifetime_end(now))]
        else:
            legs = _consume(wallet, txn, -points) + [(promotions, -points, None, member.pk)]
        _post(txn, legs)
        return txn

    return _run(key=idempotency_key, request_hash=request_hash, member_ids=[member.pk], body=body)


def points_reverse(
    *, original: PointsTransaction, idempotency_key: str, amount_fen: int | None = None, points: int | None = None,
    reason: str = "refund",
) -> PointsTransaction:
    """Undo part of an earn (a refund of ``amount_fen``) or of a redeem (``points`` given back).

    Earn: takes back the purchase's points in proportion to the amount refunded, so
    partial refunds add up exactly to the points earned. Never below zero: what the
    member has already spent is the ``shortfall``, borne by the funding merchant (its
    funding account is not credited for it); the mall's share is made whole first.
    Redeem: gives ``points`` back, as new lots with the expiry dates they were taken from.
    """
    if original.kind == Kind.EARN:
        _check_amount_fen(amount_fen)
        request_hash = _request_hash(op="reverse", original=original.pk, amount_fen=amount_fen, reason=reason)
        body = _reverse_earn_body(original, idempotency_key, request_hash, amount_fen, reason)
    elif original.kind == Kind.REDEEM:
        _check_points(points)
        request_hash = _request_hash(op="reverse", original=original.pk, points=points, reason=reason)
        body = _reverse_redeem_body(original, idempotency_key, request_hash, points, reason)
    else:
        raise NotReversible(extra={"kind": original.kind})
    return _run(key=idempotency_key, request_hash=request_hash, member_ids=[original.member_id], body=body)


def _reverse_earn_body(original, key, request_hash, amount_fen, reason):
    def body(wallets, now):
        wallet = wallets[original.member_id]
        previous = original.reversals.aggregate(fen=Sum("amount_fen"), pts=Sum("points"), short=Sum("shortfall"))
        refunded_before = previous["fen"] or 0
        if refunded_before + amount_fen > original.amount_fen:
            raise RefundExceedsPurchase(extra={"refundable_fen": original.amount_fen - refunded_before})
        # Cumulative rounding: the targets of all partial refunds sum to the points earned.
        target = (
            original.points * (refunded_before + amount_fen) // original.amount_fen
            - original.points * refunded_before // original.amount_fen
        )
        take = min(target, _spendable(wallet, now))
        txn = _new_transaction(
            key=key, request_hash=request_hash, kind=Kind.REVERSE, member_id=original.member_id, points=-take,
            now=now, merchant=original.merchant, store=original.store, amount_fen=amount_fen,
            shortfall=target - take, reverses=original, reason=reason, reference=original.reference,
        )
        if take:
            promotions = _system_account(Account.Kind.PROMOTIONS)
            mall_funded = -(original.entries.filter(account=promotions).aggregate(s=Sum("amount"))["s"] or 0)
            mall_returned = Entry.objects.filter(transaction__reverses=original, account=promotions).aggregate(s=Sum("amount"))["s"] or 0
            to_mall = min(take, mall_funded - mall_returned)
            own_lot = original.lots.values_list("pk", flat=True).first()
            _post(txn, _consume(wallet, txn, take, first_lot_id=own_lot) + [
                (promotions, to_mall, None, original.member_id),
                (_system_account(Account.Kind.MERCHANT_FUNDING, merchant=original.merchant), take - to_mall, None, original.member_id),
            ])
        return txn

    return body


def _reverse_redeem_body(original, key, request_hash, points, reason):
    def body(wallets, now):
        wallet = wallets[original.member_id]
        returned_before = original.reversals.aggregate(s=Sum("points"))["s"] or 0
        if returned_before + points > -original.points:
            raise RefundExceedsPurchase(extra={"refundable_points": -original.points - returned_before})
        txn = _new_transaction(
            key=key, request_hash=request_hash, kind=Kind.REVERSE, member_id=original.member_id, points=points,
            now=now, merchant=original.merchant, store=original.store, reverses=original, reason=reason,
            reference=original.reference,
        )
        # What the redemption took, latest expiry first; earlier reversals gave back the head.
        taken = original.entries.filter(lot__isnull=False).select_related("lot").order_by("-lot__expires_at", "-lot_id")
        legs, skip, left = [], returned_before, points
        for entry in taken:
            size = -entry.amount
            used = min(skip, size)
            skip, size = skip - used, size - used
            give = min(size, left)
            if give:
                legs.append(_credit(wallet, txn, give, entry.lot.expires_at))
                left -= give
        legs.append((_system_account(Account.Kind.MERCHANT_ACCEPTANCE, merchant=original.merchant), -points, None, original.member_id))
        _post(txn, legs)
        return txn

    return body


def expire_key(lot: Lot) -> str:
    return f"expire:{lot.pk}:{timezone.localdate(lot.expires_at).isoformat()}"


def points_expire_lot(*, lot: Lot) -> PointsTransaction | None:
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
        txn = _new_transaction(
            key=key, request_hash=request_hash, kind=Kind.EXPIRE, member_id=lot.member_id, points=-fresh.remaining,
            now=now, reason=f"lot {lot.pk} expired",
        )
        Lot.objects.filter(pk=lot.pk).update(remaining=0)
        _post(txn, [
            (wallet, -fresh.remaining, fresh, lot.member_id),
            (_system_account(Account.Kind.EXPIRED), fresh.remaining, None, lot.member_id),
        ])
        return txn

    return _run(key=key, request_hash=request_hash, member_ids=[lot.member_id], body=body)


def points_transfer(
    *, source: Member, target: Member, idempotency_key: str, reason: str, points: int | None = None
) -> PointsTransaction:
    """Move points from one member to another, keeping each lot's expiry (merging duplicates).

    ``points=None`` moves everything the source holds.
    """
    if source.pk == target.pk:
        raise ApplicationError("cannot transfer to the same member", code="same_member")
    if points is not None:
        _check_points(points)
    request_hash = _request_hash(op="transfer", source=source.pk, target=target.pk, points=points, reason=reason)

    def body(wallets, now):
        src, dst = wallets[source.pk], wallets[target.pk]
        # A banned member may still receive (a merge folds a duplicate into them); a
        # merged-away member never does: their points live with the survivor.
        if dst.member.status == Member.Status.MERGED:
            raise MemberNotActive(extra={"member_no": dst.member.member_no})
        amount = _spendable(src, now) if points is None else points
        if points is not None and _spendable(src, now) < points:
            raise InsufficientPoints(extra={"points_balance": _spendable(src, now)})
        txn = _new_transaction(
            key=idempotency_key, request_hash=request_hash, kind=Kind.TRANSFER, member_id=source.pk, points=-amount,
            now=now, counterparty=target, reason=reason,
        )
        if amount:
            taken = _consume(src, txn, amount)
            _post(txn, taken + [_credit(dst, txn, -leg[1], leg[2].expires_at) for leg in taken])
        return txn

    return _run(key=idempotency_key, request_hash=request_hash, member_ids=sorted([source.pk, target.pk]), body=body)


# --- reads ------------------------------------------------------------------------


def member_points_balance(*, member: Member) -> int:
    return Account.objects.filter(kind=Account.Kind.WALLET, member=member).values_list("balance", flat=True).first() or 0


def member_points_expiring(*, member: Member, within_days: int = 30) -> int:
    horizon = timezone.now() + timedelta(days=within_days)
    return Lot.objects.filter(member=member, remaining__gt=0, expires_at__lte=horizon).aggregate(s=Sum("remaining"))["s"] or 0


def member_points_history(*, member: Member):
    """The member's transactions, newest first, with their shop."""
    return (
        PointsTransaction.objects.filter(Q(member=member) | Q(counterparty=member))
        .select_related("store", "merchant")
        .order_by("-created_at", "-id")
    )


def lots_due(*, now: datetime | None = None):
    return Lot.objects.filter(remaining__gt=0, expires_at__lte=now or timezone.now())


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
