"""One merchant's key sees and touches only that merchant's stores, sales and numbers.

Another merchant's store, purchase or redemption is "not found", never "forbidden",
so a key cannot even learn that it exists.
"""

import pytest
from django.urls import get_resolver

from members.models import Visit
from payments.models import ApiRequest, Purchase, PurchaseRefund, Redemption, RedemptionRefund
from tests.factories import assert_ledger_invariants, make_member
from tests.payments.conftest import assert_error, balance, grant

pytestmark = pytest.mark.django_db


@pytest.fixture
def b_sales(other_shop):
    """Merchant B's business: a purchase and a redemption by B's customer."""
    customer = make_member()
    grant(customer, 500)
    purchase = other_shop.api.purchase(store_code=other_shop.store.code, amount_fen=20_000, member=customer).json()
    redemption = other_shop.api.redeem(store_code=other_shop.store.code, points=100, member=customer).json()
    return customer, purchase, redemption


def b_untouched(customer, purchase, redemption):
    assert balance(customer) == 500 + 200 - 100
    assert Purchase.objects.get(pk=purchase["id"]).refunded_fen == 0
    assert Redemption.objects.get(pk=redemption["id"]).returned_points == 0
    assert not PurchaseRefund.objects.exists() and not RedemptionRefund.objects.exists()
    assert_ledger_invariants()


def test_a_purchase_at_another_merchants_store_is_404_store_not_found(shop, other_shop, member, b_sales):
    response = shop.api.purchase(store_code=other_shop.store.code, amount_fen=10_000, member=member)

    assert_error(response, 404, "store_not_found")
    assert balance(member) == 0
    assert not Purchase.objects.filter(merchant=shop.merchant).exists()
    assert not Visit.objects.filter(member=member).exists()
    b_untouched(*b_sales)


def test_a_redemption_at_another_merchants_store_is_404_store_not_found(shop, other_shop, b_sales):
    customer = b_sales[0]

    response = shop.api.redeem(store_code=other_shop.store.code, points=50, member=customer)

    assert_error(response, 404, "store_not_found")
    b_untouched(*b_sales)


def test_another_merchants_purchase_is_404_purchase_not_found(shop, b_sales):
    _, purchase, _ = b_sales

    shown = shop.api.get(f"/api/v1/purchases/{purchase['id']}/")
    refunded = shop.api.refund_purchase(purchase["id"], 20_000)

    assert_error(shown, 404, "purchase_not_found")
    assert_error(refunded, 404, "purchase_not_found")
    assert not ApiRequest.objects.filter(merchant=shop.merchant).exists()
    b_untouched(*b_sales)


def test_another_merchants_redemption_is_404_redemption_not_found(shop, b_sales):
    _, _, redemption = b_sales

    shown = shop.api.get(f"/api/v1/redemptions/{redemption['id']}/")
    refunded = shop.api.refund_redemption(redemption["id"], 100)

    assert_error(shown, 404, "redemption_not_found")
    assert_error(refunded, 404, "redemption_not_found")
    b_untouched(*b_sales)


def test_a_missing_purchase_and_another_merchants_purchase_look_the_same(shop, b_sales):
    _, purchase, _ = b_sales

    theirs = shop.api.get(f"/api/v1/purchases/{purchase['id']}/")
    nobodys = shop.api.get("/api/v1/purchases/987654321/")

    assert theirs.status_code == nobodys.status_code == 404
    assert theirs.content == nobodys.content


def test_another_merchants_sales_stay_out_of_reports_and_settlements(shop, other_shop, b_sales):
    from django.utils import timezone

    today = timezone.localdate().isoformat()
    period = today[:7]

    mine = shop.api.get("/api/v1/reports/daily/", {"from": today, "to": today}).json()[0]
    theirs = other_shop.api.get("/api/v1/reports/daily/", {"from": today, "to": today}).json()[0]
    my_settlement = shop.api.get("/api/v1/settlements/", {"period": period}).json()
    their_settlement = other_shop.api.get("/api/v1/settlements/", {"period": period}).json()

    figures = ("customers", "transactions", "sales_fen", "points_funded", "points_accepted")
    assert [theirs[f] for f in figures] == [1, 1, 20_000, 200, 100]
    assert [mine[f] for f in figures] == [0, 0, 0, 0, 0]
    assert (their_settlement["funded_points"], their_settlement["accepted_points"]) == (200, 100)
    assert (my_settlement["funded_points"], my_settlement["accepted_points"], my_settlement["net_fen"]) == (0, 0, 0)


def test_idempotency_keys_are_per_merchant(shop, other_shop, member):
    theirs = other_shop.api.purchase(store_code=other_shop.store.code, amount_fen=10_000, member=member, key="order-1")
    mine = shop.api.purchase(store_code=shop.store.code, amount_fen=5_000, member=member, key="order-1")

    assert theirs.status_code == mine.status_code == 201
    assert theirs.json()["id"] != mine.json()["id"]
    assert mine.json()["points_earned"] == 50
    assert balance(member) == 150
    assert ApiRequest.objects.filter(key="order-1").count() == 2


def test_another_merchants_stored_response_is_never_replayed_to_this_key(shop, other_shop, member):
    # Each merchant's replay store is its own: B's stored response is never served to A.
    b_store_for_a = shop.api.purchase(store_code=other_shop.store.code, amount_fen=10_000, member=member, key="k1")
    other_shop.api.purchase(store_code=other_shop.store.code, amount_fen=10_000, member=member, key="k1")
    a_again = shop.api.purchase(store_code=other_shop.store.code, amount_fen=10_000, member=member, key="k1")

    assert_error(b_store_for_a, 404, "store_not_found")
    assert_error(a_again, 404, "store_not_found")


def test_no_endpoint_lists_members():
    merchant_paths = {str(p.pattern) for p in get_resolver().url_patterns if str(p.pattern).startswith("api/v1/")}
    member_paths = {p for p in merchant_paths if p.startswith("api/v1/members/")}

    assert member_paths == {"api/v1/members/lookup/"}


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [("/api/v1/members/", 404, "not_found"), ("/api/v1/members/lookup/", 400, "member_code_invalid"),
     ("/api/v1/members/lookup/?code=", 400, "member_code_invalid")],
)
def test_asking_for_members_without_a_code_lists_nothing(api, member, path, status, code):
    response = api.get(path)

    assert_error(response, status, code)
    assert member.member_no.encode() not in response.content
