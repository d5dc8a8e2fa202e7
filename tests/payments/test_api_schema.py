"""The OpenAPI document and the docs page: what the schema states and how it is served.

The schemathesis run over every merchant operation is tests/payments/test_schemathesis.py.
"""

import re

import pytest
import yaml
from django.test import Client

from o2o_site.urls import merchant_api

# --- the document and the docs page -------------------------------------------------------


def openapi_path(route: str) -> str:
    """Django's "api/v1/purchases/<int:purchase_id>/" as OpenAPI's "/api/v1/purchases/{purchase_id}/"."""
    return "/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)


@pytest.fixture(scope="module")
def document() -> dict:
    response = Client().get("/api/schema/")
    assert response.status_code == 200
    return yaml.safe_load(response.content)


def test_schema_is_an_openapi_3_document(document):
    assert document["openapi"].startswith("3.")
    assert document["info"]["title"]
    assert "merchantApiKey" in document["components"]["securitySchemes"]


def test_schema_lists_every_merchant_path(document):
    routed = {openapi_path(str(p.pattern)) for p in merchant_api}
    documented = {path for path in document["paths"] if path.startswith("/api/v1/")}

    assert documented == routed


def test_every_merchant_operation_needs_the_api_key_and_documents_its_errors(document):
    for path, operations in document["paths"].items():
        if not path.startswith("/api/v1/"):
            continue
        for method, operation in operations.items():
            assert operation.get("security") == [{"merchantApiKey": []}], (method, path)
            assert "401" in operation["responses"], (method, path)
            if method == "post":
                headers = [p["name"] for p in operation["parameters"] if p["in"] == "header"]
                assert "Idempotency-Key" in headers, path


def test_every_merchant_operation_documents_the_errors_any_merchant_call_can_get(document):
    """Any call may meet a suspended merchant (403 merchant_not_active) or the per-key rate (429 throttled)."""
    missing = {
        f"{method.upper()} {path}": sorted({"401", "403", "429"} - set(operation["responses"]))
        for path, operations in document["paths"].items()
        if path.startswith("/api/v1/")
        for method, operation in operations.items()
    }

    assert {op: statuses for op, statuses in missing.items() if statuses} == {}


def test_schema_is_served_as_json_on_request():
    response = Client().get("/api/schema/", {"format": "json"})

    assert response.status_code == 200
    assert response.json()["paths"]


def test_docs_page_is_html_with_only_local_assets():
    response = Client().get("/api/docs/")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    assert not re.search(r"https?://", page), re.findall(r"https?://[^\"' ]+", page)
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert assets and all(a.startswith("/static/") for a in assets), assets


def test_docs_page_assets_are_served():
    page = Client().get("/api/docs/").content.decode()
    for asset in re.findall(r'(?:src|href)="(/static/[^"]+)"', page):
        assert Client().get(asset).status_code == 200, asset


# --- what the schema states (the run itself: tests/payments/test_schemathesis.py) ---------------


def test_tags_put_the_pos_operations_first_with_chinese_beside_the_english(document):
    names = [tag["name"] for tag in document["tags"]]
    assert names[:4] == ["purchases", "redemptions", "coupons", "lookup"]
    assert names.index("orders") < names.index("refunds") < names.index("back-office") < names.index("reports")
    assert names.index("reports") < names.index("settlements") < names.index("campaigns")
    merchant = [op for path, ops in document["paths"].items() if path.startswith("/api/v1/") for op in ops.values()]
    assert all(re.search(r"[\u4e00-\u9fff]", op["summary"]) and " · " in op["summary"] for op in merchant)
    assert {tag for op in merchant for tag in op["tags"]} <= set(names)


def test_the_schema_states_the_rules_the_server_enforces(document):
    params = {p["name"]: p for p in document["paths"]["/api/v1/members/lookup/"]["get"]["parameters"]}
    assert params["code"]["required"] and params["code"]["schema"]["minLength"] == 1
    purchase = document["components"]["schemas"]["PurchaseCreateInput"]
    assert purchase["properties"]["amount_fen"]["maximum"] == 100_000_000
    assert purchase["properties"]["store_code"]["minLength"] == 1
    assert purchase["oneOf"] == [{"required": ["member_code"]}, {"required": ["member_no"]}]
    redemption = document["components"]["schemas"]["RedemptionCreateInput"]
    assert redemption["properties"]["member_no"]["not"] == {}
    key = next(p for p in document["paths"]["/api/v1/purchases/"]["post"]["parameters"] if p["name"] == "Idempotency-Key")
    assert key["required"] and key["schema"]["maxLength"] == 200
