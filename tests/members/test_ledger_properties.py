"""Random sequences of ledger operations keep every invariant (hypothesis)."""

from datetime import timedelta

import pytest
import time_machine
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import ApplicationError
from members import identity, ledger, tasks
from members.models import Entry, Member, PointsTransaction
from tests.factories import assert_ledger_invariants, make_member, make_store

pytestmark = pytest.mark.django_db

MEMBERS, STORES = 3, 2
member_ix = st.integers(0, MEMBERS - 1)
pick = st.integers(0, 50)
operations = st.one_of(
    st.tuples(st.just("earn"), member_ix, st.integers(0, STORES - 1), st.integers(1, 300_000), st.booleans()),
    st.tuples(st.just("redeem"), member_ix, st.integers(0, STORES - 1), st.integers(1, 3_000)),
    st.tuples(st.just("grant"), member_ix, st.integers(1, 500), st.integers(-5, 400)),
    st.tuples(st.just("refund"), pick, st.integers(1, 300_000)),
    st.tuples(st.just("give_back"), pick, st.integers(1, 3_000)),
    st.tuples(st.just("transfer"), member_ix, member_ix, st.one_of(st.none(), st.integers(1, 2_000))),
    st.tuples(st.just("advance"), st.integers(1, 400)),
    st.tuples(st.just("sweep")),
    st.tuples(st.just("release")),
    st.tuples(st.just("merge"), member_ix, member_ix),
    st.tuples(st.just("replay"), pick),
)


def run(op, n, members, stores, done):
    kind, *args = op
    key = f"{kind}:{n}"
    if kind == "earn":
        m, s, amount, present = args
        return ledger.points_earn(
            member=members[m], store=stores[s], amount_fen=amount, idempotency_key=key, member_present=present
        )
    if kind == "redeem":
        m, s, points = args
        return ledger.points_redeem(member=members[m], store=stores[s], points=points, idempotency_key=key)
    if kind == "grant":
        m, points, days = args
        return ledger.points_grant(
            member=members[m], points=points, reason="gift", idempotency_key=key,
            expires_at=timezone.now() + timedelta(days=days),
        )
    if kind in ("refund", "give_back"):
        wanted = "earn" if kind == "refund" else "redeem"
        candidates = [t for t in done if t.kind == wanted]
        if not candidates:
            return None
        original = candidates[args[0] % len(candidates)]
        if kind == "refund":
            return ledger.points_reverse(original=original, amount_fen=args[1], idempotency_key=key)
        return ledger.points_reverse(original=original, points=args[1], idempotency_key=key)
    if kind == "transfer":
        a, b, points = args
        return ledger.points_transfer(source=members[a], target=members[b], points=points, reason="t", idempotency_key=key)
    if kind == "sweep":
        tasks.points_expire_due()
        return None
    if kind == "release":
        tasks.points_release_due()
        return None
    if kind == "merge":
        # Two members found to be one person: the newer folds into the older. Later
        # operations on the merged one act on the survivor.
        a, b = (identity.member_active(Member.objects.get(pk=members[i].pk)) for i in args)
        if a.pk != b.pk:
            older, newer = sorted([a, b], key=lambda m: m.pk)
            identity.member_merge(source=newer, target=older, reason="same person")
        return None
    if kind == "replay":
        if done:
            original = done[args[0] % len(done)]
            assert PointsTransaction.objects.filter(idempotency_key=original.idempotency_key).count() == 1
        return None
    raise AssertionError(kind)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ops=st.lists(operations, min_size=1, max_size=25))
def test_random_operations_keep_every_invariant(ops):
    with transaction.atomic(), time_machine.travel(timezone.now()) as clock:
        members = [make_member(tier_code="gold" if i == 0 else None) for i in range(MEMBERS)]
        stores = [make_store(earn_rate_bp=100 + 50 * i) for i in range(STORES)]
        done = []
        for n, op in enumerate(ops):
            if op[0] == "advance":
                clock.shift(timedelta(days=op[1]))
                continue
            before = [ledger.member_points_balance(member=m) for m in members]
            try:
                with transaction.atomic():
                    txn = run(op, n, members, stores, done)
            except ApplicationError as exc:
                # A refused operation changes nothing.
                assert exc.code in {
                    "insufficient_points", "refund_exceeds_purchase", "same_member", "invalid_amount",
                }, exc.code
                assert [ledger.member_points_balance(member=m) for m in members] == before
                continue
            if txn is not None:
                done.append(txn)
            for member in members:
                assert ledger.member_points_balance(member=member) >= 0
        assert_ledger_invariants()
        # Points are only ever moved, never created: all accounts together sum to zero.
        assert (Entry.objects.aggregate(s=Sum("amount"))["s"] or 0) == 0
        # Partial refunds never take back more than a purchase earned.
        for earn in PointsTransaction.objects.filter(kind="earn"):
            reversed_fen = earn.reversals.aggregate(s=Sum("amount_fen"))["s"] or 0
            taken = -(earn.reversals.aggregate(s=Sum("points"))["s"] or 0)
            short = earn.reversals.aggregate(s=Sum("shortfall"))["s"] or 0
            assert reversed_fen <= earn.amount_fen
            assert taken + short == earn.points * reversed_fen // earn.amount_fen
        transaction.set_rollback(True)
