"""The shopper API in the OpenAPI document, and a schemathesis run over every shopper
operation with a real shopper token (half the generated check-in tokens and cursors
point at real data, so success paths are exercised too)."""

import re

import pytest
import schemathesis
import yaml
from django.core import signals
from django.core.cache import cache
from django.core.management import call_command
from django.db import close_old_connections
from django.test import Client, override_settings
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from members import checkin, ledger, pushes
from members.auth import shopper_token_issue
from members.urls_mp import urlpatterns as mp_urlpatterns
from coupons.urls_mp import urlpatterns as coupons_urlpatterns
from payments.urls_mp import urlpatterns as orders_urlpatterns
from o2o_site.wsgi import application
from tests.factories import make_member, make_plaza, make_store
from tests.fakes.platform_server import (
    Reply,
    alipay_signed_response,
    json_reply,
    rsa_key_pair,
)

LOGINS = {"/api/mp/v1/auth/wechat/", "/api/mp/v1/auth/alipay/", "/api/mp/v1/auth/demo/"}


def openapi_path(route: str) -> str:
    return "/api/mp/v1/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)


def document_with(*, sandbox: bool) -> dict:
    with override_settings(O2O_SANDBOX=sandbox):
        response = Client().get("/api/schema/")
    assert response.status_code == 200
    return yaml.safe_load(response.content)


@pytest.fixture(scope="module")
def document() -> dict:
    return document_with(sandbox=True)


def shopper_operations(document):
    for path, operations in document["paths"].items():
        if path.startswith("/api/mp/v1/"):
            for method, operation in operations.items():
                yield path, method, operation


def test_schema_lists_every_shopper_path(document):
    routed = {openapi_path(str(p.pattern)) for p in mp_urlpatterns}
    routed |= {openapi_path("orders/" + str(p.pattern)) for p in orders_urlpatterns}
    routed |= {openapi_path("coupons/" + str(p.pattern)) for p in coupons_urlpatterns}

    assert {path for path in document["paths"] if path.startswith("/api/mp/v1/")} == routed


def test_schema_leaves_out_the_demo_login_outside_sandbox():
    paths = document_with(sandbox=False)["paths"]

    assert "/api/mp/v1/auth/demo/" not in paths
    assert "/api/mp/v1/auth/wechat/" in paths


def test_every_shopper_operation_is_tagged_shopper_and_needs_the_token_but_the_logins(document):
    assert "shopperToken" in document["components"]["securitySchemes"]
    for path, method, operation in shopper_operations(document):
        assert operation["tags"] == ["shopper"], (method, path)
        if path in LOGINS:
            assert not operation.get("security"), (method, path)
            assert "429" in operation["responses"], (method, path)
        else:
            assert operation["security"] == [{"shopperToken": []}], (method, path)
            assert {"401", "403"} <= set(operation["responses"]), (method, path)


def test_every_shopper_error_documents_its_codes(document):
    for path, method, operation in shopper_operations(document):
        for status, response in operation["responses"].items():
            if status.startswith(("4", "5")):
                examples = response["content"]["application/json"].get("examples", {})
                assert examples, (method, path, status)


def test_the_document_validates_without_warnings(tmp_path):
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yml"))


# --- schemathesis -------------------------------------------------------------------------

schema = schemathesis.openapi.from_wsgi("/api/schema/", application).include(path_regex=r"^/api/mp/v1/")

# What the fixture built for the running test, for the hooks below (they run at generation).
KNOWN: dict = {}


VALID_CODE = "VALID-CODE"


@schema.hook("flatmap_body")
def point_bodies_at_real_data(context, body):
    """Half the check-in bodies carry a real plaza token, half the logins a code the platform accepts."""
    if not KNOWN or not isinstance(body, dict):
        return st.just(body)
    for field, real in (("token", KNOWN["checkin_token"]), ("code", VALID_CODE), ("auth_code", VALID_CODE)):
        if field in body:
            return st.sampled_from([body, {**body, field: real}])
    return st.just(body)


@schema.hook("flatmap_query")
def point_cursors_at_real_data(context, query):
    """Half the pages start at a real cursor, with a small limit so there is a next one."""
    if not KNOWN or not isinstance(query, dict) or "cursor" not in query:
        return st.just(query)
    return st.sampled_from([query, {**query, "cursor": KNOWN["cursor"], "limit": 2}])


@pytest.fixture
def shopper_data(db):
    member = make_member(nickname="Schema", phone="13900139000")
    store = make_store()
    for n in range(5):
        ledger.points_earn(member=member, store=store, amount_fen=10_000 + n, idempotency_key=f"schema-earn-{n}")
        pushes.push_send(member=member, event="test", event_key=f"schema:{n}", title=f"Hello {n}", body="…")
    cache.set(f"miniapp-session-key:{member.pk}", "AAECAwQFBgcICQoLDA0ODw==")  # phone/ then gets as far as decrypting
    first = Client(headers={"Authorization": f"Bearer {shopper_token_issue(member=member).token}"})
    cursor = first.get("/api/mp/v1/points/history/", {"limit": 2}).json()["next_cursor"]
    KNOWN.update(checkin_token=checkin.checkin_token_make(plaza=make_plaza()), cursor=cursor)
    yield member
    KNOWN.clear()


@pytest.fixture
def wsgi_keeps_the_test_connection(shopper_data):
    """A raw WSGI call closes the test's connection when it finishes; the test's data lives in its transaction."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture(scope="module")
def alipay_keys():
    return rsa_key_pair(), rsa_key_pair()


@pytest.fixture
def fake_platforms(platform_server, alipay_keys, settings):
    """WeChat and Alipay faked: they accept VALID_CODE and refuse any other code, as the real ones do."""
    app_keys, alipay_private = alipay_keys

    def jscode2session(request):
        if request.param("js_code") != VALID_CODE:
            return json_reply({"errcode": 40029, "errmsg": "invalid code"})
        return json_reply({"openid": "o-schema", "session_key": "AAECAwQFBgcICQoLDA0ODw==", "unionid": "u-schema"})

    def oauth_token(request):
        if request.form.get("code") != VALID_CODE:
            refusal = {"code": "40002", "msg": "Invalid Arguments", "sub_code": "isv.code-invalid"}
            return Reply(body=alipay_signed_response("error_response", refusal, alipay_private.private_pem))
        answer = {"user_id": "2088000000000001", "access_token": "AT"}
        return Reply(body=alipay_signed_response("alipay_system_oauth_token_response", answer, alipay_private.private_pem))

    platform_server.script("/sns/jscode2session", jscode2session)
    platform_server.script("/gateway.do", oauth_token)
    for name, value in {
        **platform_server.settings(), "WECHAT_MINIAPP_ID": "wx-mini", "WECHAT_MINIAPP_SECRET": "mini-secret",
        "ALIPAY_APP_ID": "2021000000000001", "ALIPAY_APP_PRIVATE_KEY": app_keys.private_pem,
        "ALIPAY_PUBLIC_KEY": alipay_private.public_pem, "SHOPPER_LOGIN_RATE": "100000/min",
    }.items():
        setattr(settings, name, value)
    yield platform_server
    assert platform_server.errors == []


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@schema.parametrize()
@hypothesis_settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_shopper_operation_conforms_to_the_schema(case, shopper_data, wsgi_keeps_the_test_connection, fake_platforms):
    token = shopper_token_issue(member=shopper_data).token
    case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, checks=CHECKS)
