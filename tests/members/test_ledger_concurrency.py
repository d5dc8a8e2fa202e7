"""The ledger under real concurrency: real threads, each on its own database connection.

Every test commits its data (``transaction=True``) so that the threads can see it, and
starts its threads at one barrier so that they really race. tests/conftest.py puts back
what the migrations seed (the tiers, the mall's accounts) before each test, since a
transactional test empties the database after it.

On PostgreSQL the wallet row lock is what serialises the writers of one member; on
SQLite it is the database write lock (BEGIN IMMEDIATE, with a busy timeout), so
the same races must end the same way there too, without "database is locked".
"""

import threading
from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.db import OperationalError, connection, transaction
from django.db.models import F, Q, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from members import ledger, services
from tests.concurrency import race
from members.models import Account, Entry, Lot, Member, Merchant, Plaza, PointsTransaction, Store, Tier

pytestmark = pytest.mark.django_db(transaction=True)

needs_postgres = pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL row locks")
needs_sqlite = pytest.mark.skipif(connection.vendor != "sqlite", reason="exercises SQLite's database write lock")

# How long a racing thread may wait for a row lock before the test calls it a failure.
LOCK_TIMEOUT_SQL = "SET lock_timeout = '2s'"
# A backstop so that a lock-up fails the test instead of hanging it.
STATEMENT_TIMEOUT_SQL = "SET statement_timeout = '30s'"
LOCK_NOT_AVAILABLE = "55P03"


# --- racing threads ---------------------------------------------------------------


def in_own_connection(call):
    """Run ``call`` in a thread of its own, so on a connection of its own."""
    return race([call])[0]


@contextmanager
def rows_locked(*querysets, no_key: bool):
    """Hold ``SELECT … FOR [NO KEY] UPDATE`` on the rows of ``querysets`` in another session."""
    held, release = threading.Event(), threading.Event()
    failure = []

    def hold():
        try:
            with transaction.atomic():
                for queryset in querysets:
                    list(queryset.select_for_update(no_key=no_key).values_list("pk", flat=True))
                held.set()
                release.wait(timeout=120)
        except BaseException as exc:  # noqa: BLE001
            failure.append(exc)
        finally:
            held.set()
            connection.close()

    holder = threading.Thread(target=hold, name="lock-holder")
    holder.start()
    try:
        assert held.wait(timeout=30), "the lock holder never got its locks"
        assert not failure, failure
        yield
    finally:
        release.set()
        holder.join(timeout=30)
    assert not failure, failure


def is_row_locked(queryset) -> bool:
    """Whether another session holds a lock on the row that conflicts with FOR NO KEY UPDATE."""

    def probe():
        try:
            with transaction.atomic():
                queryset.select_for_update(no_key=True, nowait=True).get()
        except OperationalError as exc:
            return exc.__cause__ is not None and getattr(exc.__cause__, "sqlstate", None) == LOCK_NOT_AVAILABLE
        return False

    outcome = in_own_connection(probe)
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


def errors_of(outcomes):
    return [o for o in outcomes if isinstance(o, BaseException)]


def transactions_of(outcomes):
    return [o for o in outcomes if isinstance(o, PointsTransaction)]


# --- the ledger's invariants ------------------------------------------------------


def assert_ledger_invariants():
    """DESIGN.md "The points ledger": double entry, never negative, balance = entries = lots."""
    unbalanced = list(
        PointsTransaction.objects.annotate(total=Coalesce(Sum("entries__amount"), 0))
        .exclude(total=0)
        .values_list("idempotency_key", "total")
    )
    assert unbalanced == [], f"transactions whose entries do not sum to zero: {unbalanced}"

    # A transaction's points are its member's wallet legs (a transfer's other wallet
    # is the counterparty's).
    mismatched = list(
        PointsTransaction.objects.annotate(
            wallet_delta=Coalesce(
                Sum("entries__amount", filter=(
                    Q(entries__account__kind=Account.Kind.WALLET, entries__account__member=F("member"))
                    | Q(entries__account__kind=Account.Kind.PENDING, entries__member=F("member"))
                )),
                0,
            )
        )
        .exclude(wallet_delta=F("points"))
        .values_list("idempotency_key", "points", "wallet_delta")
    )
    assert mismatched == [], f"transactions whose points differ from their wallet legs: {mismatched}"

    entries = dict(
        Entry.objects.filter(account__kind=Account.Kind.WALLET).values_list("account_id").annotate(s=Sum("amount"))
    )
    lots = dict(Lot.objects.filter(status=Lot.Status.AVAILABLE).values_list("account_id").annotate(s=Sum("remaining")))
    for wallet_id, balance in Account.objects.filter(kind=Account.Kind.WALLET).values_list("pk", "balance"):
        assert balance >= 0, f"wallet #{wallet_id} is negative: {balance}"
        assert balance == entries.get(wallet_id, 0) == lots.get(wallet_id, 0), (
            f"wallet #{wallet_id}: balance {balance}, Σ entries {entries.get(wallet_id, 0)}, Σ lots {lots.get(wallet_id, 0)}"
        )

    assert not Lot.objects.filter(Q(remaining__lt=0) | Q(remaining__gt=F("amount"))).exists(), "a lot is out of bounds"
    drifted = list(
        Lot.objects.annotate(moved=Coalesce(Sum("entries__amount"), 0))
        .exclude(moved=F("remaining"))
        .values_list("pk", "remaining", "moved")
    )
    assert drifted == [], f"lots whose remaining is not the sum of their entries: {drifted}"


# --- data, built through the services ---------------------------------------------


@pytest.fixture
def shop():
    plaza = services.plaza_create(code="wanda-cbd", name="Wanda CBD")
    merchant, store, _key, _raw = services.merchant_create(name="Tea House", plaza=plaza)
    return Store.objects.select_related("merchant").get(pk=store.pk)


def new_member() -> Member:
    return services.member_create(join_channel=Member.Channel.POS)


def member_with_points(*lots: int) -> Member:
    """A member holding one lot of each size, the first expiring first."""
    member = new_member()
    base = timezone.now() + timedelta(days=30)
    for i, points in enumerate(lots):
        ledger.points_grant(
            member=member, points=points, reason="test", idempotency_key=f"grant:{member.pk}:{i}",
            expires_at=base + timedelta(days=i),
        )
    return member


def balance(member: Member) -> int:
    return ledger.member_points_balance(member=member)


# --- redemptions racing for one balance -------------------------------------------


def race_redemptions_for_one_balance(store: Store):
    """20 redemptions of 10 points, each with its own key, against a balance of 50."""
    member = member_with_points(20, 30)  # two lots, so some redemptions span both

    outcomes = race([
        (lambda i=i: ledger.points_redeem(member=member, store=store, points=10, idempotency_key=f"api:{store.merchant_id}:r{i}"))
        for i in range(20)
    ])

    return member, outcomes


def assert_five_redemptions_won(member, outcomes):
    errors = errors_of(outcomes)
    assert len(transactions_of(outcomes)) == 5
    assert len(errors) == 15
    assert all(isinstance(e, ledger.InsufficientPoints) and e.code == "insufficient_points" for e in errors), errors
    assert balance(member) == 0
    assert PointsTransaction.objects.filter(member=member, kind=PointsTransaction.Kind.REDEEM).count() == 5
    assert_ledger_invariants()


@pytest.mark.postgres_only
@needs_postgres
def test_concurrent_redemptions_never_overdraw_the_wallet_on_postgres(shop):
    member, outcomes = race_redemptions_for_one_balance(shop)

    assert_five_redemptions_won(member, outcomes)


@needs_sqlite
def test_concurrent_redemptions_wait_for_the_write_lock_on_sqlite(shop):
    member, outcomes = race_redemptions_for_one_balance(shop)

    assert [e for e in errors_of(outcomes) if isinstance(e, OperationalError)] == []  # no "database is locked"
    assert_five_redemptions_won(member, outcomes)


# --- one idempotency key, many callers --------------------------------------------


def test_concurrent_replays_of_one_key_make_one_transaction(shop):
    member = member_with_points(100)
    key = f"api:{shop.merchant_id}:same"

    outcomes = race([
        (lambda: ledger.points_redeem(member=member, store=shop, points=10, idempotency_key=key)) for _ in range(20)
    ])

    assert errors_of(outcomes) == []
    assert PointsTransaction.objects.filter(idempotency_key=key).count() == 1
    assert {txn.pk for txn in outcomes} == {PointsTransaction.objects.get(idempotency_key=key).pk}
    assert balance(member) == 90
    assert_ledger_invariants()


def test_concurrent_uses_of_one_key_with_different_bodies_make_one_transaction(shop):
    member = member_with_points(100)
    key = f"api:{shop.merchant_id}:clash"
    asked = [10 if i % 2 else 20 for i in range(20)]

    outcomes = race([
        (lambda points=points: ledger.points_redeem(member=member, store=shop, points=points, idempotency_key=key))
        for points in asked
    ])

    winner = PointsTransaction.objects.get(idempotency_key=key)
    for points, outcome in zip(asked, outcomes):
        if points == -winner.points:  # the winner's body: a replay
            assert isinstance(outcome, PointsTransaction) and outcome.pk == winner.pk, outcome
        else:
            assert isinstance(outcome, ledger.IdempotencyConflict) and outcome.code == "idempotency_conflict", outcome
    assert balance(member) == 100 + winner.points
    assert_ledger_invariants()


def test_one_key_raced_for_different_members_makes_one_transaction(shop):
    # Different wallets, so on PostgreSQL no common row lock: the unique key alone settles it.
    members = [member_with_points(50) for _ in range(10)]
    key = f"api:{shop.merchant_id}:shared"

    outcomes = race([
        (lambda member=member: ledger.points_redeem(member=member, store=shop, points=10, idempotency_key=key))
        for member in members
    ])

    winner = PointsTransaction.objects.get(idempotency_key=key)
    assert [o.pk for o in transactions_of(outcomes)] == [winner.pk]
    errors = errors_of(outcomes)
    assert len(errors) == 9
    assert all(isinstance(e, ledger.IdempotencyConflict) and e.code == "idempotency_conflict" for e in errors), errors
    assert sorted(balance(m) for m in members) == [40] + [50] * 9
    assert_ledger_invariants()


# --- one busy shop ----------------------------------------------------------------


@pytest.mark.postgres_only
@needs_postgres
def test_concurrent_earns_at_one_merchant_never_wait_on_its_rows(shop):
    members = [new_member() for _ in range(50)]
    # Half of them on 银卡 (1.2×), so that the mall's promotions and pending accounts are written too.
    # There is no tier service yet (tiers are recomputed by a nightly task), hence the update.
    silver = Tier.objects.get(code="silver")
    Member.objects.filter(pk__in=[m.pk for m in members[::2]]).update(tier=silver)
    merchant_rows = [
        Merchant.objects.filter(pk=shop.merchant_id),
        Store.objects.filter(pk=shop.pk),
        Plaza.objects.filter(pk=shop.plaza_id),
        Account.objects.filter(kind=Account.Kind.MERCHANT_FUNDING, merchant_id=shop.merchant_id),
        Account.objects.filter(kind=Account.Kind.MERCHANT_ACCEPTANCE, merchant_id=shop.merchant_id),
        Account.objects.filter(kind=Account.Kind.PROMOTIONS),
        Account.objects.filter(kind=Account.Kind.PENDING),
    ]

    # Another session holds the merchant's rows the way an UPDATE of them would (a
    # balance roll-up, a merchant edited in the admin): FOR NO KEY UPDATE. Any earn
    # that locked or updated one of them would wait, and fail after lock_timeout.
    # Not FOR UPDATE: an entry's foreign key check takes FOR KEY SHARE on the rows it
    # references, which FOR UPDATE blocks (see the next test) but NO KEY UPDATE does not.
    with rows_locked(*merchant_rows, no_key=True):
        outcomes = race(
            [
                (lambda member=member, i=i: ledger.points_earn(
                    member=member, store=shop, amount_fen=10_000, idempotency_key=f"api:{shop.merchant_id}:e{i}",
                    member_present=True,
                ))
                for i, member in enumerate(members)
            ],
            session_sql=[LOCK_TIMEOUT_SQL, STATEMENT_TIMEOUT_SQL],
        )
        # The lock was held throughout: it is still held now that every earn is done.
        assert all(is_row_locked(rows) for rows in merchant_rows)

    assert errors_of(outcomes) == []
    assert len(transactions_of(outcomes)) == 50
    assert [balance(m) for m in members] == [100, 100] * 25
    assert [ledger.member_points_pending(member=m) for m in members] == [20, 0] * 25  # the mall's share, pending
    funding, promotions = merchant_rows[3].get(), merchant_rows[5].get()
    assert Entry.objects.filter(account=funding).aggregate(s=Sum("amount"))["s"] == -100 * 50
    assert Entry.objects.filter(account=promotions).aggregate(s=Sum("amount"))["s"] == -20 * 25
    assert_ledger_invariants()


@pytest.mark.postgres_only
@needs_postgres
def test_for_update_on_a_merchant_account_stalls_earns_through_the_foreign_key(shop):
    """Why every lock on a system account or a merchant must be FOR NO KEY UPDATE.

    An earn never locks its merchant's funding account, but its entry references it,
    and the foreign key check (at commit: Django's keys are deferred) takes FOR KEY
    SHARE on it, which a plain FOR UPDATE held elsewhere blocks.
    """
    member = new_member()
    funding = Account.objects.filter(kind=Account.Kind.MERCHANT_FUNDING, merchant_id=shop.merchant_id)

    with rows_locked(funding, no_key=False):
        outcome = race(
            [lambda: ledger.points_earn(member=member, store=shop, amount_fen=10_000, idempotency_key="api:x:blocked")],
            session_sql=["SET lock_timeout = '300ms'", STATEMENT_TIMEOUT_SQL],
        )[0]

    assert isinstance(outcome, OperationalError), outcome
    assert getattr(outcome.__cause__, "sqlstate", None) == LOCK_NOT_AVAILABLE
    assert not PointsTransaction.objects.filter(idempotency_key="api:x:blocked").exists()
    assert balance(member) == 0
    assert_ledger_invariants()


# --- transfers both ways, refunds racing ------------------------------------------


def test_concurrent_transfers_both_ways_neither_deadlock_nor_lose_points():
    a, b = member_with_points(60, 40), member_with_points(40, 60)

    outcomes = race([
        (lambda i=i: ledger.points_transfer(source=a, target=b, points=5, reason="test", idempotency_key=f"t:ab:{i}"))
        if i % 2 == 0 else
        (lambda i=i: ledger.points_transfer(source=b, target=a, points=7, reason="test", idempotency_key=f"t:ba:{i}"))
        for i in range(20)
    ])

    assert errors_of(outcomes) == []  # a deadlock would surface here as OperationalError
    assert (balance(a), balance(b)) == (100 - 10 * 5 + 10 * 7, 100 - 10 * 7 + 10 * 5)
    assert_ledger_invariants()


def test_concurrent_partial_refunds_never_exceed_the_purchase(shop):
    member = new_member()
    purchase = ledger.points_earn(member=member, store=shop, amount_fen=10_000, idempotency_key="api:p:1")
    assert purchase.points == 100
    ledger.points_redeem(member=member, store=shop, points=30, idempotency_key="api:p:spend")  # a shortfall to come

    outcomes = race([
        (lambda i=i: ledger.points_reverse(original=purchase, amount_fen=1_250, idempotency_key=f"refund:p:{i}"))
        for i in range(10)
    ])

    refunds = transactions_of(outcomes)
    errors = errors_of(outcomes)
    assert len(refunds) == 8
    assert len(errors) == 2
    assert all(isinstance(e, ledger.RefundExceedsPurchase) and e.code == "refund_exceeds_purchase" for e in errors), errors
    totals = purchase.reversals.aggregate(fen=Sum("amount_fen"), taken=Sum("points"), short=Sum("shortfall"))
    assert totals["fen"] == 10_000
    assert -totals["taken"] + totals["short"] == 100  # every point the purchase earned, taken back or owed
    assert totals["short"] == 30
    assert balance(member) == 0
    assert_ledger_invariants()


def test_concurrent_give_backs_of_a_redemption_never_exceed_it(shop):
    member = member_with_points(30, 40)
    redemption = ledger.points_redeem(member=member, store=shop, points=50, idempotency_key="api:r:1")

    outcomes = race([
        (lambda i=i: ledger.points_reverse(original=redemption, points=10, idempotency_key=f"giveback:r:{i}"))
        for i in range(8)
    ])

    errors = errors_of(outcomes)
    assert len(transactions_of(outcomes)) == 5
    assert len(errors) == 3
    assert all(isinstance(e, ledger.RefundExceedsPurchase) and e.code == "refund_exceeds_purchase" for e in errors), errors
    assert balance(member) == 70
    # Given back with the expiry dates they were taken from: 30 from the first lot, 20 from the second.
    first, second = Lot.objects.filter(transaction__kind=PointsTransaction.Kind.GRANT, member=member).order_by("expires_at")
    given_back = Lot.objects.filter(transaction__reverses=redemption)
    assert given_back.filter(expires_at=first.expires_at).aggregate(s=Sum("amount"))["s"] == 30
    assert given_back.filter(expires_at=second.expires_at).aggregate(s=Sum("amount"))["s"] == 20
    assert_ledger_invariants()


# --- merges racing the writes of the merged member ------------------------------------------


def test_purchases_racing_a_merge_all_land_with_the_survivor(shop):
    """Eight earns for the duplicate race its merge: none may stay in the merged wallet."""
    from members import identity

    for attempt in range(3):
        survivor, duplicate = new_member(), new_member()
        earns = [
            (lambda n=n: ledger.points_earn(
                member=duplicate, store=shop, amount_fen=10_000, idempotency_key=f"merge-race:{attempt}:{n}"))
            for n in range(8)
        ]
        merge = lambda: identity.member_merge(source=duplicate, target=survivor, reason="race")  # noqa: E731
        outcomes = race([merge, *earns])
        assert not errors_of(outcomes), errors_of(outcomes)
        assert balance(duplicate) == 0
        assert balance(survivor) == 8 * 100
        assert not Lot.objects.filter(member=duplicate, remaining__gt=0).exists()
        assert Member.objects.get(pk=duplicate.pk).status == Member.Status.MERGED
    assert_ledger_invariants()
