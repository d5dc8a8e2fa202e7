"""The points mall: GET /api/mp/v1/coupons/catalogue/ and POST /api/mp/v1/coupons/exchange/,
coupons.services.coupon_exchange and members.ledger.points_exchange."""

import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from coupons import services
from coupons.models import Coupon, CouponEvent, CouponTemplate
from members import ledger
from members.models import Account, Entry, Merchant, PointsTransaction
from tests.concurrency import race
from tests.coupons.conftest import make_template, shopper_client, window
from tests.factories import assert_ledger_invariants, make_member
from tests.payments.conftest import assert_error, grant

pytestmark = pytest.mark.django_db

EXCHANGE = "/api/mp/v1/coupons/exchange/"
CATALOGUE = "/api/mp/v1/coupons/catalogue/"


@pytest.fixture(autouse=True)
def ledger_stays_consistent():
    yield
    assert_ledger_invariants()


def exchange(member, template_id, *, key: str | None = "key-1"):
    headers = {"Idempotency-Key": key} if key is not None else {}
    return shopper_client(member).post(EXCHANGE, {"template_id": template_id}, content_type="application/json", headers=headers)


def balance(member) -> int:
    return ledger.member_points_balance(member=member)


def for_sale(**fields) -> CouponTemplate:
    return make_template(kind=fields.pop("kind", CouponTemplate.Kind.VOUCHER), points_price=fields.pop("points_price", 300), **fields)


# --- the catalogue ---------------------------------------------------------------------------


def test_catalogue_lists_what_is_for_sale_now_cheapest_first_with_price_and_stock(shop, member):
    mall = for_sale(name="¥50 代金券", points_price=500, total_quota=10, issued_count=4)
    merchants = for_sale(name="满100减20", kind=CouponTemplate.Kind.CASH_OFF, merchant=shop.merchant, points_price=200)
    make_template(name="not for points")
    for_sale(name="paused", status=CouponTemplate.Status.PAUSED)
    for_sale(name="sold out", total_quota=3, issued_count=3)
    for_sale(name="ended", **window(10, -1))
    for_sale(name="not yet", **window(-1, 10))
    suspended = Merchant.objects.create(name="Gone", status=Merchant.Status.SUSPENDED)
    for_sale(name="suspended merchant's", merchant=suspended)

    response = shopper_client(member).get(CATALOGUE)

    assert response.status_code == 200
    results = response.json()["results"]
    assert [(r["id"], r["name"], r["points_price"], r["stock_left"]) for r in results] == [
        (merchants.pk, "满100减20", 200, None), (mall.pk, "¥50 代金券", 500, 6),
    ]
    assert {k: results[0][k] for k in ("kind", "face_value_fen", "min_spend_fen", "merchant", "valid_days", "valid_until")} == {
        "kind": "cash_off", "face_value_fen": 2_000, "min_spend_fen": 10_000, "merchant": shop.merchant.name,
        "valid_days": 30, "valid_until": None,
    }
    assert (results[1]["kind"], results[1]["face_value_fen"], results[1]["merchant"]) == ("voucher", 5_000, None)


def test_catalogue_needs_a_shopper_token():
    from django.test import Client

    assert_error(Client().get(CATALOGUE), 401, "not_authenticated")


# --- exchanging ------------------------------------------------------------------------------


def test_exchange_debits_the_price_and_issues_the_coupon_in_one_transaction(member):
    grant(member, 1_000)
    template = for_sale(points_price=300, total_quota=5)

    response = exchange(member, template.pk)

    assert response.status_code == 201, response.content
    body = response.json()
    coupon = Coupon.objects.get()
    assert (body["id"], body["status"], body["kind"], body["face_value_fen"]) == (coupon.pk, "issued", "voucher", 5_000)
    assert (coupon.member, coupon.issued_via, coupon.issue_key) == (member, Coupon.Via.POINTS, f"exchange:{member.pk}:key-1")
    assert balance(member) == 700
    txn = PointsTransaction.objects.get(idempotency_key=f"exchange:{member.pk}:key-1")
    assert (txn.kind, txn.points, txn.merchant, txn.member) == (PointsTransaction.Kind.REDEEM, -300, None, member)
    promotions = Account.objects.get(kind=Account.Kind.PROMOTIONS)
    assert Entry.objects.get(transaction=txn, account=promotions).amount == 300
    assert CouponEvent.objects.get(coupon=coupon).detail == {"via": "points", "points": 300, "points_transaction": txn.pk}
    template.refresh_from_db()
    assert template.issued_count == 1


def test_exchange_of_a_merchant_funded_coupon_pays_the_points_to_the_merchant(shop, member):
    grant(member, 1_000)
    template = for_sale(merchant=shop.merchant, points_price=250)

    assert exchange(member, template.pk).status_code == 201

    txn = PointsTransaction.objects.get(idempotency_key=f"exchange:{member.pk}:key-1")
    assert (txn.kind, txn.points, txn.merchant) == (PointsTransaction.Kind.REDEEM, -250, shop.merchant)
    acceptance = Account.objects.get(kind=Account.Kind.MERCHANT_ACCEPTANCE, merchant=shop.merchant)
    assert Entry.objects.get(transaction=txn, account=acceptance).amount == 250
    now = timezone.now()
    settled = ledger.merchant_settlement(merchant=shop.merchant, start=now - timedelta(days=1), end=now + timedelta(days=1))
    assert settled.accepted_points == 250


def test_exchange_spends_the_first_expiring_points_first(member):
    now = timezone.now()
    ledger.points_grant(member=member, points=200, reason="late", idempotency_key="g-late", expires_at=now + timedelta(days=90))
    ledger.points_grant(member=member, points=200, reason="soon", idempotency_key="g-soon", expires_at=now + timedelta(days=5))

    assert exchange(member, for_sale(points_price=300).pk).status_code == 201

    remaining = {lot.transaction.idempotency_key: lot.remaining for lot in member.lots.select_related("transaction")}
    assert remaining == {"g-soon": 0, "g-late": 100}


def test_a_replay_returns_the_same_coupon_and_debits_once(member):
    grant(member, 1_000)
    template = for_sale(points_price=300)

    first, again = exchange(member, template.pk), exchange(member, template.pk)

    assert (first.status_code, again.status_code) == (201, 201)
    assert first.json() == again.json()
    assert Coupon.objects.count() == 1 and balance(member) == 700


def test_a_key_of_the_longest_length_allowed_works_and_replays(member):
    grant(member, 1_000)
    template = for_sale(points_price=300)
    key = "k" * 200

    first, again = exchange(member, template.pk, key=key), exchange(member, template.pk, key=key)

    assert (first.status_code, again.status_code) == (201, 201) and first.json()["id"] == again.json()["id"]
    assert Coupon.objects.get().issue_key == services.exchange_key(member, key) and len(services.exchange_key(member, key)) <= 200
    assert balance(member) == 700


def test_exchange_without_an_idempotency_key_is_refused(member):
    grant(member, 1_000)

    assert_error(exchange(member, for_sale().pk, key=None), 400, "idempotency_key_required")

    assert not Coupon.objects.exists() and balance(member) == 1_000


def test_exchange_with_too_few_points_issues_nothing(member):
    grant(member, 299)
    template = for_sale(points_price=300, total_quota=1)

    body = assert_error(exchange(member, template.pk), 409, "insufficient_points")

    assert body["points_balance"] == 299
    assert not Coupon.objects.exists() and balance(member) == 299
    template.refresh_from_db()
    assert template.issued_count == 0


def test_exchange_of_a_sold_out_coupon_moves_no_points(member):
    grant(member, 1_000)
    template = for_sale(total_quota=2, issued_count=2)

    assert_error(exchange(member, template.pk), 409, "coupon_quota_exhausted")

    assert balance(member) == 1_000 and not PointsTransaction.objects.filter(kind=PointsTransaction.Kind.REDEEM).exists()


def test_exchange_sold_out_at_the_quota_update_rolls_the_points_back(member):
    """The pre-check passed on a stale template; the conditional UPDATE refuses and the debit is undone."""
    grant(member, 1_000)
    template = for_sale(total_quota=1)
    CouponTemplate.objects.filter(pk=template.pk).update(issued_count=1)  # sold meanwhile; `template` still says 0

    with pytest.raises(services.QuotaExhausted):
        services.coupon_exchange(member=member, template=template, idempotency_key="stale")

    assert balance(member) == 1_000 and not Coupon.objects.exists()
    assert not PointsTransaction.objects.filter(idempotency_key=f"exchange:{member.pk}:stale").exists()


def test_exchange_of_a_coupon_without_a_points_price_is_refused(member):
    grant(member, 1_000)

    assert_error(exchange(member, make_template().pk), 409, "coupon_not_for_points")

    assert not Coupon.objects.exists() and balance(member) == 1_000


def test_exchange_of_a_paused_coupon_is_refused(member):
    grant(member, 1_000)

    assert_error(exchange(member, for_sale(status=CouponTemplate.Status.PAUSED).pk), 409, "coupon_template_paused")

    assert not Coupon.objects.exists() and balance(member) == 1_000


def test_exchange_of_an_ended_coupon_is_refused(member):
    grant(member, 1_000)

    assert_error(exchange(member, for_sale(**window(10, -1)).pk), 409, "coupon_template_ended")

    assert balance(member) == 1_000


def test_exchange_beyond_the_per_member_limit_is_refused_and_moves_no_points(member):
    grant(member, 1_000)
    template = for_sale(points_price=100)
    assert exchange(member, template.pk, key="first").status_code == 201

    assert_error(exchange(member, template.pk, key="second"), 409, "coupon_member_limit_reached")

    assert Coupon.objects.count() == 1 and balance(member) == 900


def test_exchange_of_an_unknown_template_is_not_found(member):
    grant(member, 1_000)

    assert_error(exchange(member, 2**62), 404, "coupon_template_not_found")


@pytest.mark.parametrize("template_id", ["1", 0, -1, 1.5, True, None])
def test_exchange_needs_a_positive_integer_template_id(member, template_id):
    assert_error(exchange(member, template_id), 400, "validation_error")


def test_the_same_key_for_another_coupon_is_a_conflict(member):
    grant(member, 1_000)
    assert exchange(member, for_sale(points_price=100).pk).status_code == 201

    assert_error(exchange(member, for_sale(points_price=100).pk), 409, "idempotency_conflict")

    assert Coupon.objects.count() == 1 and balance(member) == 900


def test_another_members_same_key_is_their_own_exchange(member):
    other = make_member()
    grant(member, 1_000)
    grant(other, 1_000)
    template = for_sale(points_price=100, per_member_limit=2)
    assert exchange(member, template.pk).status_code == 201

    assert exchange(other, for_sale(points_price=100).pk).status_code == 201
    # Their own key again, for another coupon: a conflict with their own first exchange.
    assert_error(exchange(other, template.pk), 409, "idempotency_conflict")

    assert Coupon.objects.filter(member=member).count() == 1 and balance(member) == 900
    assert Coupon.objects.filter(member=other).count() == 1 and balance(other) == 900


def test_a_suspended_merchants_coupon_cannot_be_bought(shop, member):
    grant(member, 1_000)
    template = for_sale(merchant=shop.merchant)
    Merchant.objects.filter(pk=shop.merchant.pk).update(status=Merchant.Status.SUSPENDED)

    assert_error(exchange(member, template.pk), 403, "merchant_not_active")

    assert balance(member) == 1_000 and not Coupon.objects.exists()


def test_points_exchange_needs_a_reason(member):
    grant(member, 100)

    with pytest.raises(ledger.ApplicationError) as refused:
        ledger.points_exchange(member=member, points=50, idempotency_key="no-reason", reason=" ")

    assert refused.value.code == "reason_required" and balance(member) == 100


# --- concurrency (PostgreSQL) ----------------------------------------------------------------


def outcome(result) -> str:
    if isinstance(result, services.ApplicationError):
        return result.code
    if isinstance(result, BaseException):
        raise result
    return "ok"


@pytest.mark.postgres_only
@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL row locks")
@pytest.mark.django_db(transaction=True)
def test_ten_members_racing_for_the_last_three_get_three_coupons_and_three_debits():
    template = for_sale(points_price=100, total_quota=5, issued_count=2)
    members = [make_member() for _ in range(10)]
    for m in members:
        grant(m, 500)

    results = race(
        [lambda m=m: services.coupon_exchange(member=m, template=template, idempotency_key=str(uuid.uuid4())) for m in members],
        name="points-mall",
    )

    assert sorted(outcome(r) for r in results) == ["coupon_quota_exhausted"] * 7 + ["ok"] * 3
    template.refresh_from_db()
    assert template.issued_count == 5 and Coupon.objects.count() == 3
    assert PointsTransaction.objects.filter(kind=PointsTransaction.Kind.REDEEM).count() == 3
    buyers = {c.member_id for c in Coupon.objects.all()}
    assert sorted(balance(m) for m in members) == [400] * 3 + [500] * 7
    assert {m.pk for m in members if balance(m) == 400} == buyers
    assert_ledger_invariants()


@pytest.mark.postgres_only
@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL row locks")
@pytest.mark.django_db(transaction=True)
def test_one_exchange_retried_concurrently_issues_one_coupon_and_debits_once():
    template = for_sale(points_price=100, per_member_limit=5)
    member = make_member()
    grant(member, 1_000)

    results = race(
        [lambda: services.coupon_exchange(member=member, template=template, idempotency_key="same") for _ in range(8)],
        name="points-mall-replay",
    )

    assert {outcome(r) for r in results} == {"ok"}
    assert {r.pk for r in results} == {Coupon.objects.get().pk}
    assert balance(member) == 900
    assert_ledger_invariants()
