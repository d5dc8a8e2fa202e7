"""The OpenAPI document, the docs page, and a schemathesis run over every operation.

The run authenticates with a real merchant key, sends a fresh Idempotency-Key with
every call, and half of the generated requests are pointed at real data (the key's
own store, a member with points, a purchase and a redemption of this merchant) so
that the success paths are exercised, not only the 404s.
"""

import re
import uuid
from datetime import timedelta

import pytest
import schemathesis
import yaml
from django.core import signals
from django.db import close_old_connections
from django.test import Client
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from members import codes
from o2o_site.urls import merchant_api
from o2o_site.wsgi import application
from tests.factories import make_member
from tests.payments.conftest import build_shop, grant

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


# --- schemathesis -------------------------------------------------------------------------

# The merchant API; the shopper API has its own run (tests/members/test_api_shopper_schema.py).
schema = schemathesis.openapi.from_wsgi("/api/schema/", application).include(path_regex=r"^/api/v1/")

# What the fixture built for the running test, for the hooks below (they run at generation).
KNOWN: dict = {}


@schema.hook("flatmap_body")
def point_bodies_at_real_data(context, body):
    """Half the sales bodies name this merchant's store and a member with points."""
    if not KNOWN or not isinstance(body, dict) or "store_code" not in body:
        return st.just(body)
    real = {key: value for key, value in body.items() if key != "member_code"}
    real.update(store_code=KNOWN["store_code"], member_no=KNOWN["member_no"])
    return st.sampled_from([body, real])


@schema.hook("flatmap_path_parameters")
def point_ids_at_real_data(context, path_parameters):
    """Half the purchase and redemption ids are this merchant's own."""
    if not KNOWN or not path_parameters:
        return st.just(path_parameters)
    real = dict(path_parameters)
    for name in ("purchase_id", "redemption_id"):
        if name in real:
            real[name] = KNOWN[name]
    return st.sampled_from([path_parameters, real])


@schema.hook("flatmap_query")
def point_queries_at_real_data(context, query):
    """Half the lookups scan a live member code; half the reports ask for a real period."""
    if not KNOWN or not isinstance(query, dict):
        return st.just(query)
    real = dict(query)
    if "code" in real:
        real["code"] = codes.member_code_issue(member=KNOWN["member"]).code
    if "period" in real:
        real["period"] = timezone.localdate().strftime("%Y-%m")
    if "from" in real or "to" in real:
        today = timezone.localdate()
        real.update({"from": (today - timedelta(days=7)).isoformat(), "to": today.isoformat()})
    return st.sampled_from([query, real])


@pytest.fixture
def merchant_data(db):
    shop = build_shop()
    member = make_member(nickname="Schema", phone="13900139000")
    grant(member, 1_000_000)
    purchase = shop.api.purchase(store_code=shop.store.code, amount_fen=500_000, member=member).json()
    redemption = shop.api.redeem(store_code=shop.store.code, points=100_000, member=member).json()
    KNOWN.update(
        store_code=shop.store.code, member=member, member_no=member.member_no, purchase_id=purchase["id"],
        redemption_id=redemption["id"],
    )
    yield shop
    KNOWN.clear()


@pytest.fixture
def wsgi_keeps_the_test_connection(merchant_data):
    """Django closes the connection when a WSGI request finishes; its test client stops that, a raw WSGI call does not.

    The test's data lives in the test's transaction on that connection, so it must stay open. (After
    merchant_data: the test client reconnects the signal after each of its own requests.)
    """
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture
def generous_rate(settings):
    # The run makes far more calls a minute than a POS would.
    settings.MERCHANT_API_RATE = "100000/min"


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_conforms_to_the_schema(case, merchant_data, wsgi_keeps_the_test_connection, generous_rate):
    """No 5xx; every status, content type and body as documented."""
    case.call_and_validate(
        headers={"Authorization": f"Bearer {merchant_data.raw_key}", "Idempotency-Key": f"st-{uuid.uuid4()}"},
        checks=CHECKS,
    )
