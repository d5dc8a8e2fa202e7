"""The coupon operations in the OpenAPI document: tagged, authenticated, errors documented."""

import pytest
import yaml
from django.test import Client


@pytest.fixture(scope="module")
def paths() -> dict:
    return yaml.safe_load(Client().get("/api/schema/").content)["paths"]


def test_redemption_needs_the_key_and_documents_its_error_codes(paths):
    operation = paths["/api/v1/coupon-redemptions/"]["post"]

    assert operation["tags"] == ["coupons"]
    assert operation["security"] == [{"merchantApiKey": []}]
    assert "Idempotency-Key" in [p["name"] for p in operation["parameters"] if p["in"] == "header"]
    documented = {
        example["value"]["code"] for response in operation["responses"].values()
        for example in response.get("content", {}).get("application/json", {}).get("examples", {}).values()
    }
    assert {
        "coupon_not_found", "coupon_used", "coupon_expired", "coupon_not_valid_yet", "store_not_accepted", "min_spend_not_met",
        "coupon_code_invalid", "coupon_code_expired", "member_code_invalid", "member_code_expired", "shopper_required",
        "idempotency_conflict", "too_many_invalid_codes",
    } <= documented


def test_shopper_coupon_operations_are_tagged_shopper_and_need_the_token(paths):
    for path, method in (("/api/mp/v1/coupons/", "get"), ("/api/mp/v1/coupons/{coupon_id}/code/", "post")):
        operation = paths[path][method]
        assert operation["tags"] == ["shopper"]
        assert operation["security"] == [{"shopperToken": []}]
        assert {"401", "403"} <= set(operation["responses"])
