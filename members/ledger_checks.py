"""Checks that the books agree: the ledger's invariants (DESIGN.md "The points ledger") over
the whole database, and a merchant's daily report against the ledger's own figures.

For the demo commands (``seed_demo``, ``simulate``) and the tests: each check returns a
list of violations, empty when all hold. Aggregates in the database, a few queries a
check, never a loop over wallets (the demo has thousands).
"""

from datetime import date, datetime, time, timedelta

from django.db.models import Count, F, OuterRef, Q, Subquery, Sum
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from members.models import Account, Entry, Lot, Merchant, PointsTransaction

SHOWN = 10  # violations listed per invariant; a last line counts the rest


def _listed(rows, describe, what: str) -> list[str]:
    rows = list(rows[: SHOWN + 1])
    found = [describe(row) for row in rows[:SHOWN]]
    if len(rows) > SHOWN:
        found.append(f"… and more {what}")
    return found


def _sum_per(model, field: str, value: str, **only):
    # One correlated sum per row: two joined Sum()s would multiply each other's rows.
    rows = model.objects.filter(**{field: OuterRef("pk")}, **only).order_by().values(field).annotate(s=Sum(value)).values("s")
    return Coalesce(Subquery(rows), 0)


def ledger_violations() -> list[str]:
    """Every ledger invariant the data can show:

    - each transaction's entries sum to zero (double entry);
    - each transaction's points are its member's net change (wallet and pending legs);
    - each wallet's balance is the sum of its entries and of its available lots' remaining,
      and never negative;
    - each lot's remaining is the sum of its entries, between 0 and its amount;
    - every wallet entry names a lot;
    - pending points: the pending account's entries per member equal that member's lots
      not available.
    """
    violations = []
    unbalanced = Entry.objects.values("transaction_id").annotate(s=Sum("amount")).exclude(s=0).order_by("transaction_id")
    violations += _listed(unbalanced, lambda r: f"transaction #{r['transaction_id']}: entries sum to {r['s']}, not 0",
                          "unbalanced transactions")

    mine = Q(entries__account__kind=Account.Kind.WALLET, entries__account__member=F("member")) | Q(
        entries__account__kind=Account.Kind.PENDING, entries__member=F("member")
    )
    mismatched = (
        PointsTransaction.objects.exclude(kind=PointsTransaction.Kind.TRANSFER)
        .annotate(net=Coalesce(Sum("entries__amount", filter=mine), 0))
        .exclude(net=F("points")).order_by("pk").values_list("idempotency_key", "points", "net")
    )
    violations += _listed(mismatched, lambda r: f"transaction {r[0]}: points {r[1]}, the member's legs {r[2]}",
                          "transactions whose points differ from their member's legs")

    wallets = Account.objects.filter(kind=Account.Kind.WALLET).annotate(
        entries_sum=_sum_per(Entry, "account", "amount"),
        lots_sum=_sum_per(Lot, "account", "remaining", status=Lot.Status.AVAILABLE),
    )
    wrong = wallets.filter(~Q(balance=F("entries_sum")) | ~Q(balance=F("lots_sum")) | Q(balance__lt=0)).order_by("pk")
    violations += _listed(
        wrong, lambda w: f"wallet #{w.pk} (member #{w.member_id}): balance {w.balance}, Σ entries {w.entries_sum}, "
        f"Σ available lots {w.lots_sum}", "wallets out of balance",
    )

    lots = Lot.objects.annotate(entries_sum=_sum_per(Entry, "lot", "amount")).filter(
        ~Q(remaining=F("entries_sum")) | Q(remaining__lt=0) | Q(remaining__gt=F("amount"))
    ).order_by("pk")
    violations += _listed(lots, lambda lot: f"lot #{lot.pk}: remaining {lot.remaining} of {lot.amount}, Σ entries "
                          f"{lot.entries_sum}", "lots out of bounds")

    loose = Entry.objects.filter(account__kind=Account.Kind.WALLET, lot__isnull=True).order_by("pk")
    violations += _listed(loose, lambda e: f"entry #{e.pk}: a wallet entry without a lot", "wallet entries without a lot")

    pending_entries = dict(
        Entry.objects.filter(account__kind=Account.Kind.PENDING).values_list("member_id").annotate(s=Sum("amount"))
    )
    pending_lots = dict(
        Lot.objects.exclude(status=Lot.Status.AVAILABLE).values_list("member_id").annotate(s=Sum("remaining"))
    )
    for member_id in sorted(set(pending_entries) | set(pending_lots)):
        if (pending_entries.get(member_id) or 0) != (pending_lots.get(member_id) or 0):
            violations.append(
                f"member #{member_id}: pending entries {pending_entries.get(member_id) or 0}, "
                f"pending lots {pending_lots.get(member_id) or 0}"
            )
    return violations


def orphan_earns() -> list[str]:
    """Earns at a store with no sale behind them: neither a POS purchase nor a paid order.
    (The old demo seed booked those, so the merchants' reports disagreed with the ledger.)"""
    from payments.models import Order, Purchase

    orphans = (
        PointsTransaction.objects.filter(kind=PointsTransaction.Kind.EARN, store__isnull=False)
        .exclude(pk__in=Purchase.objects.values("earn_id"))
        .exclude(pk__in=Order.objects.filter(earn__isnull=False).values("earn_id"))
        .order_by("pk").values_list("idempotency_key", flat=True)
    )
    return _listed(orphans, lambda key: f"earn {key}: no purchase or order books this sale", "earns without a sale")


def report_violations(*, merchant: Merchant, first: date, last: date) -> list[str]:
    """``merchant``'s daily report (payments.reports) for ``first`` … ``last`` against the
    ledger: sales and transactions against its earns of POS sales, customers against
    their members, refunds against the reversals of those earns, points funded and
    accepted against the entries of its transactions of the day."""
    from payments.models import Purchase
    from payments.reports import merchant_daily_report

    tz = timezone.get_current_timezone()
    start = timezone.make_aware(datetime.combine(first, time.min), tz)
    end = timezone.make_aware(datetime.combine(last + timedelta(days=1), time.min), tz)
    in_period = {"created_at__gte": start, "created_at__lt": end}
    pos_earns = PointsTransaction.objects.filter(
        kind=PointsTransaction.Kind.EARN, merchant=merchant, pk__in=Purchase.objects.filter(merchant=merchant).values("earn_id")
    )
    sales = {
        row["day"]: row for row in pos_earns.filter(**in_period).annotate(day=TruncDate("created_at", tzinfo=tz))
        .values("day").annotate(n=Count("pk"), fen=Sum("amount_fen"), members=Count("member", distinct=True)).order_by()
    }
    refunds = dict(
        PointsTransaction.objects.filter(kind=PointsTransaction.Kind.REVERSE, reverses__in=pos_earns, **in_period)
        .annotate(day=TruncDate("created_at", tzinfo=tz)).values_list("day").annotate(fen=Sum("amount_fen")).order_by()
    )
    points = {}
    for day, kind, total in (
        Entry.objects.filter(account__merchant=merchant, transaction__created_at__gte=start, transaction__created_at__lt=end)
        .annotate(day=TruncDate("transaction__created_at", tzinfo=tz)).values_list("day", "account__kind")
        .annotate(s=Sum("amount")).order_by()
    ):
        points[(day, kind)] = total

    violations = []
    for row in merchant_daily_report(merchant=merchant, first=first, last=last):
        sale = sales.get(row.day, {})
        expected = {
            "transactions": sale.get("n", 0), "sales_fen": sale.get("fen") or 0, "customers": sale.get("members", 0),
            "refunds_fen": refunds.get(row.day) or 0,
            "points_funded": -(points.get((row.day, Account.Kind.MERCHANT_FUNDING)) or 0),
            "points_accepted": points.get((row.day, Account.Kind.MERCHANT_ACCEPTANCE)) or 0,
        }
        for name, value in expected.items():
            if getattr(row, name) != value:
                violations.append(f"{merchant.name} {row.day} {name}: report {getattr(row, name)}, ledger {value}")
    return violations


def books_violations(*, days: int = 1, today: date | None = None) -> list[str]:
    """Everything: the ledger's invariants, earns without a sale, and every merchant's
    daily report for the ``days`` days up to ``today`` against the ledger."""
    today = today or timezone.localdate()
    first = today - timedelta(days=days - 1)
    violations = ledger_violations() + orphan_earns()
    for merchant in Merchant.objects.order_by("pk"):
        violations += report_violations(merchant=merchant, first=first, last=today)
    return violations
