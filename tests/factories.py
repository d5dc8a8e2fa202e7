"""Test data, built through the services (never by writing ledger rows)."""

import itertools

from django.db.models import Q, Sum

from members import services
from members.models import Account, Entry, Lot, Member, PointsTransaction, Tier

_seq = itertools.count(1)


def make_plaza(code: str | None = None):
    n = next(_seq)
    return services.plaza_create(code=code or f"plaza-{n}", name=f"Plaza {n}")


def make_store(*, plaza=None, earn_rate_bp: int = 100):
    """A new merchant with one store; returns the store (its merchant is store.merchant)."""
    n = next(_seq)
    _, store, _, _ = services.merchant_create(
        name=f"Shop {n}", plaza=plaza or make_plaza(), earn_rate_bp=earn_rate_bp, store_code=f"store-{n}"
    )
    return store


def make_member(*, tier_code: str | None = None, **fields) -> Member:
    member = services.member_create(join_channel=fields.pop("join_channel", Member.Channel.WECHAT), **fields)
    if tier_code:
        member.tier = Tier.objects.get(code=tier_code)
        member.save(update_fields=["tier"])
    return member


def assert_ledger_invariants() -> None:
    """Every invariant of DESIGN.md "The points ledger" that the data can show."""
    unbalanced = Entry.objects.values("transaction_id").annotate(s=Sum("amount")).exclude(s=0)
    assert not list(unbalanced), f"transactions whose entries do not sum to zero: {list(unbalanced)}"
    for wallet in Account.objects.filter(kind=Account.Kind.WALLET):
        entries = wallet.entries.aggregate(s=Sum("amount"))["s"] or 0
        lots = wallet.lots.filter(status=Lot.Status.AVAILABLE).aggregate(s=Sum("remaining"))["s"] or 0
        assert wallet.balance >= 0, f"negative wallet {wallet.pk}"
        assert wallet.balance == entries == lots, f"wallet {wallet.pk}: balance {wallet.balance}, entries {entries}, lots {lots}"
        # Pending (and held) points sit beside the balance, on the mall's pending account.
        pending_entries = Entry.objects.filter(account__kind=Account.Kind.PENDING, member_id=wallet.member_id).aggregate(
            s=Sum("amount"))["s"] or 0
        pending_lots = wallet.lots.exclude(status=Lot.Status.AVAILABLE).aggregate(s=Sum("remaining"))["s"] or 0
        assert pending_entries == pending_lots, f"member {wallet.member_id}: pending entries {pending_entries}, lots {pending_lots}"
    # A merged member holds nothing: everything went to the member it was merged into.
    for merged in Account.objects.filter(kind=Account.Kind.WALLET, member__status=Member.Status.MERGED):
        assert merged.balance == 0, f"merged member {merged.member_id} still holds {merged.balance}"
        assert not merged.lots.filter(remaining__gt=0).exists(), f"merged member {merged.member_id} still has lots"
    assert not Lot.objects.filter(remaining__lt=0).exists()
    # Every wallet entry names a lot, and each lot's entries sum to what is left of it.
    assert not Entry.objects.filter(account__kind=Account.Kind.WALLET, lot__isnull=True).exists()
    for lot in Lot.objects.annotate(s=Sum("entries__amount")):
        assert lot.s == lot.remaining, f"lot {lot.pk}: entries {lot.s}, remaining {lot.remaining}"
    # Each transaction's headline points equal the net change of the member's points,
    # spendable and pending together (a release moves points between the two: 0).
    # Points of unpaid orders sit in escrow: each hold is wholly open, or closed (captured or released).
    for hold in PointsTransaction.objects.filter(kind=PointsTransaction.Kind.HOLD):
        open_points = Entry.objects.filter(
            Q(transaction=hold) | Q(transaction__reverses=hold), account__kind=Account.Kind.ESCROW
        ).aggregate(s=Sum("amount"))["s"] or 0
        assert open_points in (0, -hold.points), f"hold {hold.idempotency_key}: {open_points} open of {-hold.points}"
    member_kinds = [Account.Kind.WALLET, Account.Kind.PENDING]
    for txn in PointsTransaction.objects.exclude(kind=PointsTransaction.Kind.TRANSFER):
        net = txn.entries.filter(account__kind__in=member_kinds).aggregate(s=Sum("amount"))["s"] or 0
        assert net == txn.points, f"{txn.idempotency_key}: points {txn.points}, member net {net}"
