"""The merchant API under real concurrency: threads, each with its own Client and connection.

Every test commits its data (``transaction=True``) so that the threads see it, and
releases its threads at one barrier so that they really race. tests/conftest.py puts back
what the migrations seed (tiers, the mall's accounts) before each test.
"""

import json

import pytest
from django.db import connection
from django.test import Client

from members.models import PointsTransaction
from payments.models import ApiRequest, Purchase, PurchaseRefund, Redemption
from tests.factories import assert_ledger_invariants, make_member
from tests.concurrency import race_all_succeed
from tests.payments.conftest import Api, balance, grant

pytestmark = pytest.mark.django_db(transaction=True)



def postgres_only(test):
    needs_row_locks = pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL row locks")
    return pytest.mark.postgres_only(needs_row_locks(test))


def race(raw_key: str, calls):
    """Run each ``call(api)`` in its own thread with its own Client, all released at once;
    what each returned (a response). None raised, none is a 5xx."""
    outcomes = race_all_succeed(
        [lambda call=call: call(Api(raw_key, client=Client(raise_request_exception=False))) for call in calls],
        name="api-race",
    )
    server_errors = [(o.status_code, o.content[:300]) for o in outcomes if o.status_code >= 500]
    assert not server_errors, server_errors
    return outcomes


def outcomes_of(responses) -> list[str]:
    """"201" for a success, the error code for an error; sorted."""
    return sorted(r.json()["code"] if r.status_code >= 400 else str(r.status_code) for r in responses)


# --- one purchase, one key, ten POSTs ---------------------------------------------------------


@postgres_only
def test_ten_concurrent_posts_of_one_purchase_with_one_key_book_it_once(shop, member):
    body = {"store_code": shop.store.code, "member_no": member.member_no, "amount_fen": 12_300, "order_ref": "POS-RACE"}

    responses = race(shop.raw_key, [lambda api: api.post("/api/v1/purchases/", body, key="same-key")] * 10)

    assert [r.status_code for r in responses] == [201] * 10
    assert len({json.dumps(r.json(), sort_keys=True) for r in responses}) == 1
    assert Purchase.objects.count() == 1
    assert PointsTransaction.objects.filter(kind=PointsTransaction.Kind.EARN).count() == 1
    assert ApiRequest.objects.filter(merchant=shop.merchant, key="same-key").count() == 1
    assert balance(member) == 123
    assert_ledger_invariants()


# --- twenty redemptions against a balance that covers five --------------------------------------


def redeem_race(shop):
    member = make_member()
    grant(member, 50)

    responses = race(
        shop.raw_key, [lambda api: api.redeem(store_code=shop.store.code, points=10, member=member) for _ in range(20)]
    )
    return member, responses


@postgres_only
def test_twenty_concurrent_redemptions_spend_exactly_the_balance(shop):
    member, responses = redeem_race(shop)

    assert outcomes_of(responses) == ["201"] * 5 + ["insufficient_points"] * 15
    assert all(r.status_code == 409 for r in responses if r.status_code != 201)
    assert balance(member) == 0
    assert Redemption.objects.count() == 5 and ApiRequest.objects.count() == 5
    assert_ledger_invariants()


@pytest.mark.skipif(connection.vendor != "sqlite", reason="exercises SQLite's database write lock")
def test_twenty_concurrent_redemptions_on_sqlite_never_lock_fail_or_overdraw(shop):
    member, responses = redeem_race(shop)

    assert not [r for r in responses if b"database is locked" in r.content]
    assert outcomes_of(responses) == ["201"] * 5 + ["insufficient_points"] * 15
    assert balance(member) == 0
    assert Redemption.objects.count() == 5
    assert_ledger_invariants()


# --- one order, several keys; one purchase, several refunds -------------------------------------


@postgres_only
def test_one_order_ref_under_concurrent_keys_earns_once(shop, member):
    responses = race(
        shop.raw_key,
        [lambda api: api.purchase(store_code=shop.store.code, amount_fen=10_000, member=member, order_ref="POS-1")] * 6,
    )

    assert outcomes_of(responses) == ["201"] + ["duplicate_order_ref"] * 5
    assert Purchase.objects.count() == 1 and balance(member) == 100
    assert_ledger_invariants()


@postgres_only
def test_concurrent_full_refunds_of_one_purchase_refund_it_once(shop, member):
    purchase = shop.api.purchase(store_code=shop.store.code, amount_fen=10_000, member=member).json()

    responses = race(shop.raw_key, [lambda api: api.refund_purchase(purchase["id"], 10_000)] * 6)

    assert outcomes_of(responses) == ["201"] + ["refund_exceeds_purchase"] * 5
    assert PurchaseRefund.objects.count() == 1
    assert Purchase.objects.get(pk=purchase["id"]).refunded_fen == 10_000
    assert balance(member) == 0
    assert_ledger_invariants()
