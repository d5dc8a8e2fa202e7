"""Free coupons claimed by shoppers: coupons.claims, GET /api/mp/v1/coupons/claimable/ and
POST /api/mp/v1/coupons/claim/ — listed or by a claim QR's code, never past a rule, once
per request however often it is sent."""

import pytest
import yaml
from django.db import connection
from django.test import Client
from django.utils import timezone

from core.errors import ApplicationError
from coupons import claims, services
from coupons.models import Coupon, CouponEvent, CouponTemplate
from members.auth import shopper_token_issue
from members.models import Merchant
from tests.concurrency import race
from tests.coupons.conftest import issue, make_template, shopper_client, window
from tests.factories import make_member
from tests.payments.conftest import assert_error

pytestmark = pytest.mark.django_db

CLAIMABLE = "/api/mp/v1/coupons/claimable/"
CLAIM = "/api/mp/v1/coupons/claim/"


def free(**fields) -> CouponTemplate:
    """A listed free coupon (¥50 voucher by default)."""
    fields.setdefault("claimable", True)
    return make_template(kind=fields.pop("kind", CouponTemplate.Kind.VOUCHER), **fields)


def claim(member, template, *, via_code=False, request_key="", at=None) -> Coupon:
    return claims.coupon_claim(member=member, template=template, via_code=via_code, at=at or timezone.now(),
                               request_key=request_key)


def refused(member, template, **kwargs) -> str:
    with pytest.raises(ApplicationError) as raised:
        claim(member, template, **kwargs)
    return raised.value.code


def post_claim(member, body, *, key: str | None = "tap-1", client: Client | None = None):
    headers = {"Idempotency-Key": key} if key is not None else {}
    client = client or shopper_client(member)
    return client.post(CLAIM, body, content_type="application/json", headers=headers)


# --- the service ---------------------------------------------------------------------------------


def test_a_listed_coupon_is_claimed_and_recorded_as_a_claim(member):
    template = free(name="新人礼", valid_days=7)

    coupon = claim(member, template)

    assert (coupon.member, coupon.template, coupon.issued_via, coupon.status) == (member, template, "claim", "issued")
    assert (coupon.valid_until - coupon.valid_from).days == 7
    event = CouponEvent.objects.get(coupon=coupon)
    assert (event.kind, event.detail) == ("issued", {"via": "claim", "claim": "listed"})
    template.refresh_from_db()
    assert template.issued_count == 1


def test_an_unlisted_coupon_is_claimed_only_through_its_claim_code(member):
    template = free(claimable=False)
    claims.template_claim_code_ensure(template)

    assert refused(member, template) == "coupon_template_not_found"
    coupon = claim(member, template, via_code=True)

    assert CouponEvent.objects.get(coupon=coupon).detail == {"via": "claim", "claim": "qr"}
    assert Coupon.objects.count() == 1


@pytest.mark.parametrize(("fields", "code"), [
    ({"status": CouponTemplate.Status.PAUSED}, "coupon_template_paused"),
    (window(10, -1), "coupon_template_ended"),
    (window(-1, 10), "coupon_claim_not_open"),
    ({"total_quota": 2, "issued_count": 2}, "coupon_quota_exhausted"),
    ({"points_price": 300}, "coupon_for_points"),
])
@pytest.mark.parametrize("via_code", [False, True])
def test_a_coupon_that_cannot_be_claimed_now_is_refused_by_list_and_by_code(member, fields, code, via_code):
    template = free(**fields)

    assert refused(member, template, via_code=via_code) == code
    assert not Coupon.objects.exists()


def test_a_suspended_merchants_coupon_is_refused(member):
    merchant = Merchant.objects.create(name="Gone", status=Merchant.Status.SUSPENDED)
    template = free(merchant=merchant)

    assert refused(member, template) == "merchant_not_active"


def test_a_member_claims_no_more_than_the_per_member_limit(member):
    template = free(per_member_limit=2)

    claim(member, template)
    claim(member, template)

    assert refused(member, template) == "coupon_member_limit_reached"
    assert Coupon.objects.filter(member=member).count() == 2


def test_a_double_tap_with_one_request_key_takes_one_coupon_where_three_are_allowed(member):
    template = free(per_member_limit=3)

    first = claim(member, template, request_key="h5:tap")
    again = claim(member, template, request_key="h5:tap")

    assert again.pk == first.pk
    assert Coupon.objects.filter(member=member).count() == 1
    template.refresh_from_db()
    assert template.issued_count == 1
    # Another tap (another key) is another claim.
    assert claim(member, template, request_key="h5:tap-2").pk != first.pk


def test_a_replay_answers_the_first_claim_even_after_the_coupon_was_paused(member):
    template = free()
    first = claim(member, template, request_key="k")
    CouponTemplate.objects.filter(pk=template.pk).update(status=CouponTemplate.Status.PAUSED)
    template.refresh_from_db()

    assert claim(member, template, request_key="k").pk == first.pk


def test_a_request_key_used_for_another_coupon_is_a_conflict(member):
    claim(member, free(), request_key="k")

    assert refused(member, free(), request_key="k") == "idempotency_conflict"


def test_request_keys_are_each_shoppers_own(member):
    template = free()
    other = make_member()

    mine, theirs = claim(member, template, request_key="same"), claim(other, template, request_key="same")

    assert (mine.member, theirs.member) == (member, other)


def test_a_request_key_too_long_for_the_column_is_kept_as_its_digest(member):
    key = "x" * 300

    coupon = claim(member, free(per_member_limit=3), request_key=key)

    assert coupon.issue_key.startswith(f"claim:{member.pk}:sha256:") and len(coupon.issue_key) <= 200
    assert claim(member, coupon.template, request_key=key).pk == coupon.pk


# --- claim codes ---------------------------------------------------------------------------------------


def test_a_claim_code_is_made_once_long_and_random(member):
    template, another = free(claimable=False), free(claimable=False)

    code = claims.template_claim_code_ensure(template)

    assert len(code) == 20 and set(code) <= set(services.CODE_ALPHABET)  # 100 bits
    assert claims.template_claim_code_ensure(CouponTemplate.objects.get(pk=template.pk)) == code
    assert claims.template_claim_code_ensure(another) != code
    assert claims.template_by_claim_code(code) == template
    assert claims.template_by_claim_code(code.lower()) == template


def test_a_reset_claim_code_stops_the_old_poster_from_claiming(member):
    template = free(claimable=False)
    old = claims.template_claim_code_ensure(template)

    new = claims.template_claim_code_reset(template)

    assert new != old
    with pytest.raises(services.TemplateNotFound):
        claims.template_by_claim_code(old)
    assert claims.template_by_claim_code(new) == template


@pytest.mark.parametrize("code", ["", "NOPE", "A" * 20, "!" * 10, "A" * 33, "0" * 20])
def test_an_unknown_or_malformed_claim_code_is_not_found(code):
    free(claimable=False, claim_code="B" * 20)

    with pytest.raises(services.TemplateNotFound) as raised:
        claims.template_by_claim_code(code)
    assert raised.value.code == "coupon_template_not_found" and raised.value.status == 404


# --- the listing -------------------------------------------------------------------------------------


def test_the_listing_shows_what_can_be_claimed_now_oldest_first_with_what_the_member_holds(member):
    first = free(name="first", per_member_limit=1)
    second = free(name="second", per_member_limit=2, total_quota=10)
    free(name="unlisted", claimable=False, claim_code="C" * 20)
    free(name="paused", status=CouponTemplate.Status.PAUSED)
    free(name="for points", points_price=100)
    free(name="ended", **window(10, -1))
    free(name="not yet", **window(-1, 10))
    free(name="sold out", total_quota=1, issued_count=1)
    free(name="suspended", merchant=Merchant.objects.create(name="Gone", status=Merchant.Status.SUSPENDED))
    issue(first, member)
    issue(second, make_member())

    offers = claims.claimable_templates(member=member, at=timezone.now())

    assert [(o.template.name, o.held, o.can_claim, o.stock_left) for o in offers] == [
        ("first", 1, False, None), ("second", 0, True, 9),
    ]


# --- the mini-program API ----------------------------------------------------------------------------


def test_claimable_lists_the_offers_with_what_the_shopper_holds(shop, member):
    template = free(name="满100减20", kind=CouponTemplate.Kind.CASH_OFF, merchant=shop.merchant, per_member_limit=2,
                    total_quota=50)
    issue(template, member)

    response = shopper_client(member).get(CLAIMABLE)

    assert response.status_code == 200
    [offer] = response.json()["results"]
    assert {k: offer[k] for k in ("id", "name", "kind", "face_value_fen", "min_spend_fen", "merchant", "stock_left",
                                  "per_member_limit", "held", "can_claim", "valid_days")} == {
        "id": template.pk, "name": "满100减20", "kind": "cash_off", "face_value_fen": 2_000, "min_spend_fen": 10_000,
        "merchant": shop.merchant.name, "stock_left": 49, "per_member_limit": 2, "held": 1, "can_claim": True,
        "valid_days": 30,
    }


def test_claim_by_template_id_issues_one_and_a_retry_answers_the_same(member):
    template = free(per_member_limit=3)
    client = shopper_client(member)

    first = post_claim(member, {"template_id": template.pk}, client=client)
    again = post_claim(member, {"template_id": template.pk}, client=client)

    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert first.json()["name"] == template.name and first.json()["status"] == "issued"
    assert Coupon.objects.get().issued_via == "claim"


def test_claim_by_claim_code_claims_an_unlisted_coupon(member):
    template = free(claimable=False)
    code = claims.template_claim_code_ensure(template)

    response = post_claim(member, {"claim_code": code})

    assert response.status_code == 201
    assert Coupon.objects.get().template == template


def test_an_unlisted_coupons_id_claims_nothing(member):
    template = free(claimable=False, claim_code="D" * 20)

    assert_error(post_claim(member, {"template_id": template.pk}), 404, "coupon_template_not_found")
    assert_error(post_claim(member, {"template_id": 2**62}), 404, "coupon_template_not_found")
    assert_error(post_claim(member, {"claim_code": "E" * 20}), 404, "coupon_template_not_found")
    assert not Coupon.objects.exists()


@pytest.mark.parametrize(("fields", "status", "code"), [
    ({"status": CouponTemplate.Status.PAUSED}, 409, "coupon_template_paused"),
    (window(10, -1), 409, "coupon_template_ended"),
    ({"total_quota": 1, "issued_count": 1}, 409, "coupon_quota_exhausted"),
    ({"points_price": 100}, 409, "coupon_for_points"),
])
def test_claim_refusals_have_their_codes(member, fields, status, code):
    template = free(**fields)

    assert_error(post_claim(member, {"template_id": template.pk}), status, code)
    assert not Coupon.objects.exists()


def test_claim_past_the_per_member_limit_is_refused(member):
    template = free()
    assert post_claim(member, {"template_id": template.pk}, key="a").status_code == 201

    assert_error(post_claim(member, {"template_id": template.pk}, key="b"), 409, "coupon_member_limit_reached")


@pytest.mark.parametrize("body", [{}, {"template_id": 1, "claim_code": "X"}, {"template_id": "1"}, {"claim_code": 5},
                                  {"template_id": 0}])
def test_claim_needs_one_well_typed_target(member, body):
    free()

    assert_error(post_claim(member, body), 400, "validation_error")
    assert not Coupon.objects.exists()


def test_claim_needs_an_idempotency_key(member):
    template = free()

    assert_error(post_claim(member, {"template_id": template.pk}, key=None), 400, "idempotency_key_required")
    assert not Coupon.objects.exists()


def test_claim_needs_the_shoppers_token():
    template = free()

    response = Client().post(CLAIM, {"template_id": template.pk}, content_type="application/json",
                             headers={"Idempotency-Key": "k"})

    assert response.status_code == 401
    assert not Coupon.objects.exists()


def test_claim_operations_are_documented_with_their_error_codes():
    paths = yaml.safe_load(Client().get("/api/schema/").content)["paths"]
    operation = paths[CLAIM]["post"]
    documented = {
        example["value"]["code"] for response in operation["responses"].values()
        for example in response.get("content", {}).get("application/json", {}).get("examples", {}).values()
    }
    assert operation["tags"] == ["shopper"] and operation["security"] == [{"shopperToken": []}]
    assert "Idempotency-Key" in [p["name"] for p in operation["parameters"] if p["in"] == "header"]
    assert {
        "idempotency_key_required", "validation_error", "coupon_template_not_found", "coupon_for_points",
        "coupon_claim_not_open", "coupon_template_paused", "coupon_template_ended", "coupon_quota_exhausted",
        "coupon_member_limit_reached", "idempotency_conflict", "member_not_active", "merchant_not_active",
        "token_invalid", "member_banned",
    } <= documented
    assert paths[CLAIMABLE]["get"]["tags"] == ["shopper"]


# --- under concurrency (PostgreSQL, real threads) ----------------------------------------------------


def postgres_only(test):
    needs_row_locks = pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL row locks")
    return pytest.mark.postgres_only(needs_row_locks(test))


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_thirty_shoppers_claiming_a_quota_of_ten_at_once_get_exactly_ten():
    template = free(total_quota=10)
    members = [make_member() for _ in range(30)]
    tokens = [shopper_token_issue(member=m).token for m in members]

    def tap(token):
        client = Client(raise_request_exception=False, headers={"Authorization": f"Bearer {token}"})
        return client.post(CLAIM, {"template_id": template.pk}, content_type="application/json",
                           headers={"Idempotency-Key": "tap"})

    responses = race([lambda t=t: tap(t) for t in tokens], name="claim-quota")

    statuses = sorted(r.status_code if not isinstance(r, BaseException) else repr(r) for r in responses)
    assert statuses == [201] * 10 + [409] * 20, statuses
    assert {r.json()["code"] for r in responses if r.status_code == 409} == {"coupon_quota_exhausted"}
    template.refresh_from_db()
    assert template.issued_count == Coupon.objects.count() == 10
    assert Coupon.objects.values("member").distinct().count() == 10


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_ten_taps_at_once_with_one_key_take_one_coupon_where_three_are_allowed():
    template = free(per_member_limit=3)
    member = make_member()
    token = shopper_token_issue(member=member).token

    def tap():
        client = Client(raise_request_exception=False, headers={"Authorization": f"Bearer {token}"})
        return client.post(CLAIM, {"template_id": template.pk}, content_type="application/json",
                           headers={"Idempotency-Key": "double-tap"})

    responses = race([tap for _ in range(10)], name="claim-double-tap")

    assert [r.status_code for r in responses if not isinstance(r, BaseException)] == [201] * 10, responses
    assert {r.json()["id"] for r in responses} == {Coupon.objects.get().pk}
    template.refresh_from_db()
    assert template.issued_count == 1


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_taps_at_once_with_different_keys_stop_at_the_per_member_limit():
    template = free(per_member_limit=3)
    member = make_member()

    results = race([lambda n=n: claim(member, template, request_key=f"k{n}") for n in range(8)], name="claim-limit")

    outcomes = sorted("ok" if isinstance(r, Coupon) else getattr(r, "code", repr(r)) for r in results)
    assert outcomes == ["coupon_member_limit_reached"] * 5 + ["ok"] * 3
    assert sorted(Coupon.objects.filter(member=member).values_list("seq", flat=True)) == [1, 2, 3]
