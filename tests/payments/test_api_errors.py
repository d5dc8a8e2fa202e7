"""Errors under /api/: always JSON ``{"code", "message"}`` with a stable code.

Authentication, the active-merchant check, throttling, unknown paths, wrong methods,
malformed bodies and the Idempotency-Key header.
"""

from unittest import mock

import pytest
from django.test import Client

from members import auth
from members.models import Merchant
from payments.models import ApiRequest, Purchase, Redemption
from tests.payments.conftest import NO_KEY, Api, assert_error, balance

pytestmark = pytest.mark.django_db

# Every merchant operation, with a request that would be valid but for what each test breaks.
OPERATIONS = [
    ("post", "/api/v1/purchases/"),
    ("get", "/api/v1/purchases/1/"),
    ("post", "/api/v1/purchases/1/refunds/"),
    ("post", "/api/v1/redemptions/"),
    ("get", "/api/v1/redemptions/1/"),
    ("post", "/api/v1/redemptions/1/refunds/"),
    ("get", "/api/v1/members/lookup/?code=12345678901234567890123"),
    ("get", "/api/v1/reports/daily/?from=2026-01-01&to=2026-01-02"),
    ("get", "/api/v1/settlements/?period=2026-01"),
]
POST_PATHS = [path for method, path in OPERATIONS if method == "post"]
OPERATION_IDS = [f"{m} {p.split('?')[0]}" for m, p in OPERATIONS]


def call(client: Client, method: str, path: str, headers: dict):
    if method == "post":
        return client.post(path, data="{}", content_type="application/json", headers={"Idempotency-Key": "k", **headers})
    return client.get(path, headers=headers)


# --- authentication -----------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=OPERATION_IDS)
def test_every_operation_without_authorization_is_401_not_authenticated(method, path):
    response = call(Client(), method, path, {})

    assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"] == 'Bearer realm="merchant-api"'


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=OPERATION_IDS)
def test_every_operation_with_a_wrong_key_is_401_invalid_api_key(shop, method, path):
    forged = shop.raw_key[:-1] + ("A" if shop.raw_key[-1] != "A" else "B")

    response = call(Client(), method, path, {"Authorization": f"Bearer {forged}"})

    assert_error(response, 401, "invalid_api_key")
    assert response["WWW-Authenticate"] == 'Bearer realm="merchant-api"'


@pytest.mark.parametrize(
    "header",
    ["Bearer mk_000000000000_nothing", "Bearer", "Bearer    ", "Basic dXNlcjpwYXNz", "Token {raw}", "{raw}", "Bearer x{raw}"],
)
def test_a_malformed_authorization_header_is_401_invalid_api_key(shop, header):
    response = Client().get("/api/v1/settlements/?period=2026-01", headers={"Authorization": header.format(raw=shop.raw_key)})

    assert_error(response, 401, "invalid_api_key")


def test_the_bearer_scheme_is_case_insensitive(shop):
    response = Client().get("/api/v1/settlements/?period=2026-01", headers={"Authorization": f"bearer {shop.raw_key}"})

    assert response.status_code == 200


def test_a_revoked_key_is_401_while_the_merchant_rotates_to_a_new_one(shop):
    _, new_raw_key = auth.merchant_api_key_create(merchant=shop.merchant, name="rotated")
    auth.merchant_api_key_revoke(key=shop.api_key)

    old = shop.api.get("/api/v1/settlements/", {"period": "2026-01"})
    new = Api(new_raw_key).get("/api/v1/settlements/", {"period": "2026-01"})

    assert_error(old, 401, "invalid_api_key")
    assert new.status_code == 200


@pytest.mark.parametrize("status", [Merchant.Status.SUSPENDED, Merchant.Status.CLOSED])
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=OPERATION_IDS)
def test_every_operation_of_an_inactive_merchant_is_403_merchant_not_active(shop, method, path, status):
    Merchant.objects.filter(pk=shop.merchant.pk).update(status=status)

    response = call(Client(), method, path, {"Authorization": f"Bearer {shop.raw_key}"})

    assert_error(response, 403, "merchant_not_active")


# --- unknown paths and wrong methods ------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/nope/", "/api/v1/purchases/abc/", "/api/v2/purchases/", "/api/v1/members/", "/api/"])
@pytest.mark.parametrize("authenticated", [True, False])
def test_an_unknown_path_under_api_is_404_not_found_json(shop, path, authenticated):
    headers = {"Authorization": f"Bearer {shop.raw_key}"} if authenticated else {}

    response = Client().get(path, headers=headers)

    assert_error(response, 404, "not_found")


def test_a_post_to_an_unknown_path_is_404_json_even_without_a_csrf_token(shop):
    # A POS is no browser: it sends no CSRF cookie, and must still get the API's JSON, not Django's HTML 403.
    response = Client(enforce_csrf_checks=True).post(
        "/api/v1/purchase/", data="{}", content_type="application/json", headers={"Authorization": f"Bearer {shop.raw_key}"}
    )

    assert_error(response, 404, "not_found")


def test_the_merchant_operations_need_no_csrf_token(shop, member):
    api = Api(shop.raw_key, client=Client(enforce_csrf_checks=True))

    response = api.purchase(store_code=shop.store.code, amount_fen=1_000, member=member)

    assert response.status_code == 201


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("patch", "/api/v1/purchases/"),
        ("put", "/api/v1/purchases/"),
        ("delete", "/api/v1/purchases/1/"),
        ("patch", "/api/v1/purchases/1/"),
        ("get", "/api/v1/purchases/1/refunds/"),
        ("put", "/api/v1/redemptions/"),
        ("delete", "/api/v1/redemptions/1/"),
        ("post", "/api/v1/members/lookup/"),
        ("post", "/api/v1/reports/daily/"),
        ("delete", "/api/v1/settlements/"),
    ],
)
def test_a_wrong_method_is_405_method_not_allowed(api, method, path):
    response = api.request(method, path)

    assert_error(response, 405, "method_not_allowed")


# --- bodies ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", POST_PATHS)
def test_malformed_json_is_400_malformed_json(api, path):
    response = api.post(path, raw='{"amount_fen": 100,')

    assert_error(response, 400, "malformed_json")


def test_malformed_json_books_nothing_and_a_retry_with_the_same_key_works(shop, api, member):
    broken = api.post("/api/v1/purchases/", raw='{"store_code": ', key="retry-me")
    fixed = api.purchase(store_code=shop.store.code, amount_fen=1_000, member=member, key="retry-me")

    assert_error(broken, 400, "malformed_json")
    assert fixed.status_code == 201
    assert Purchase.objects.count() == 1 and ApiRequest.objects.count() == 1


@pytest.mark.parametrize("body", [[{"amount_fen": 100}], [], "a string", 42, None])
@pytest.mark.parametrize("path", POST_PATHS)
def test_a_json_body_that_is_not_an_object_is_400(api, path, body):
    response = api.post(path, body)

    assert_error(response, 400, "validation_error")


def test_a_form_encoded_body_is_415(api):
    response = api.post("/api/v1/purchases/", raw="amount_fen=100", content_type="application/x-www-form-urlencoded")

    assert_error(response, 415, "unsupported_media_type")


def test_a_non_integer_amount_in_a_big_number_is_refused_not_crashed(shop, api, member):
    response = api.post(
        "/api/v1/purchases/", raw=f'{{"store_code": "{shop.store.code}", "member_no": "{member.member_no}", "amount_fen": 1e400}}'
    )

    assert_error(response, 400, "validation_error")
    assert response.json()["errors"]["amount_fen"][0]["code"] == "not_an_integer"
    assert balance(member) == 0


# --- the Idempotency-Key header -------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [NO_KEY, "", "   ", "k" * 201, "tab\tinside", "ключ"],
    ids=["missing", "empty", "blank", "201 chars", "control", "non-ascii"],
)
@pytest.mark.parametrize("path", POST_PATHS)
def test_a_post_without_a_usable_idempotency_key_is_400_idempotency_key_required(api, path, key):
    response = api.post(path, {}, key=key)

    assert_error(response, 400, "idempotency_key_required")


def test_an_idempotency_key_of_200_characters_is_accepted(shop, api, rich_member):
    response = api.redeem(store_code=shop.store.code, points=10, member=rich_member, key="k" * 200)

    assert response.status_code == 201
    assert ApiRequest.objects.get().key == "k" * 200


def test_a_refused_idempotency_key_books_nothing(shop, api, rich_member):
    response = api.redeem(store_code=shop.store.code, points=10, member=rich_member, key=NO_KEY)

    assert_error(response, 400, "idempotency_key_required")
    assert not Redemption.objects.exists() and balance(rich_member) == 1_000


# --- throttling -----------------------------------------------------------------------------


def test_requests_past_the_rate_are_429_throttled_with_retry_after(shop, settings):
    settings.MERCHANT_API_RATE = "5/min"
    responses = [shop.api.get("/api/v1/settlements/", {"period": "2026-01"}) for _ in range(6)]

    assert [r.status_code for r in responses[:5]] == [200] * 5
    assert_error(responses[5], 429, "throttled")
    assert 0 < int(responses[5]["Retry-After"]) <= 60


def test_the_rate_is_counted_per_key(shop, other_shop, settings):
    settings.MERCHANT_API_RATE = "5/min"
    _, second_raw_key = auth.merchant_api_key_create(merchant=shop.merchant, name="second till")
    for _ in range(6):
        shop.api.get("/api/v1/settlements/", {"period": "2026-01"})

    assert shop.api.get("/api/v1/settlements/", {"period": "2026-01"}).status_code == 429
    assert other_shop.api.get("/api/v1/settlements/", {"period": "2026-01"}).status_code == 200
    assert Api(second_raw_key).get("/api/v1/settlements/", {"period": "2026-01"}).status_code == 200


def test_posts_are_throttled_too_and_book_nothing(shop, rich_member, settings):
    settings.MERCHANT_API_RATE = "2/min"
    for _ in range(2):
        assert shop.api.redeem(store_code=shop.store.code, points=1, member=rich_member).status_code == 201

    response = shop.api.redeem(store_code=shop.store.code, points=1, member=rich_member)

    assert_error(response, 429, "throttled")
    assert balance(rich_member) == 998 and Redemption.objects.count() == 2


# --- the server's own failures --------------------------------------------------------------


def test_a_server_error_under_api_is_json(shop):
    api = Api(shop.raw_key, client=Client(raise_request_exception=False))
    with mock.patch("payments.reports.merchant_monthly_settlement", side_effect=RuntimeError("boom")):
        response = api.get("/api/v1/settlements/", {"period": "2026-01"})

    assert_error(response, 500, "server_error")
    assert b"boom" not in response.content

