"""Schemathesis over the merchant API, in-process, with every check.

What `schemathesis run --checks all` does against a running server (README, "Merchant
API"), on the test database: positive and negative cases of every /api/v1/ operation,
a fixed seed (derandomized), a bounded number of examples, the per-key rate raised for
the run. Every other positive case is pointed at real data (the key's own store, a
member with points and a live member code, a purchase and a redemption of this
merchant) so that the success paths are exercised, not only the 404s. A schema-valid
request may still be refused for a documented rule no schema can state (a wrong member
code, ``to`` before ``from``, ...): tests/schemathesis_hooks.py lets those through, and
nothing else.
"""

import itertools
from datetime import timedelta

import pytest
import schemathesis
from django.core import signals
from django.db import close_old_connections
from django.utils import timezone
from hypothesis import HealthCheck, settings
from schemathesis.checks import CHECKS

from members import codes
from o2o_site.wsgi import application
from tests import schemathesis_hooks
from tests.factories import make_member
from tests.payments.conftest import build_shop, confirmed_earlier, grant

# Registered on import, as schemathesis.toml registers it for the CLI: the documented rejections only.
assert schemathesis_hooks.filter_failure

schema = schemathesis.openapi.from_wsgi("/api/schema/", application).include(path_regex=r"^/api/v1/")

# Every check schemathesis has (the CLI's --checks all); the stateful ones have nothing to
# say about a single case and pass.
ALL_CHECKS = CHECKS.get_all()

# What the fixture built for the running test.
KNOWN: dict = {}
_alternate = itertools.count()


def _pointed_at_real_data(case) -> None:
    """Every other positive case names this merchant's own store, member, purchase and redemption."""
    if not case.meta.generation.mode.is_positive or next(_alternate) % 2:
        return
    if isinstance(case.body, dict):
        body = dict(case.body)
        if "store_code" in body:
            body["store_code"] = KNOWN["store"].code
        if "member_code" in body:
            body["member_code"] = codes.member_code_issue(member=KNOWN["member"]).code
        if "member_no" in body:
            body["member_no"] = KNOWN["member"].member_no
        if "redemption_token" in body:
            body["redemption_token"] = confirmed_earlier(KNOWN["member"], KNOWN["store"])
        case.body = body
    if case.path_parameters:
        for name in ("purchase_id", "redemption_id"):
            if name in case.path_parameters:
                case.path_parameters[name] = KNOWN[name]
    if case.query:
        if "code" in case.query:
            case.query["code"] = codes.member_code_issue(member=KNOWN["member"]).code
        if "period" in case.query:
            case.query["period"] = timezone.localdate().strftime("%Y-%m")
        if "from" in case.query or "to" in case.query:
            today = timezone.localdate()
            case.query.update({"from": (today - timedelta(days=7)).isoformat(), "to": today.isoformat()})
        case.query.pop("cursor", None)
        case.query.pop("store_code", None)


@pytest.fixture
def merchant_data(db, settings):
    settings.MERCHANT_API_RATE = "100000/min"  # far more calls a minute than a POS makes
    shop = build_shop()
    member = make_member(nickname="Schema", phone="13900139000")
    grant(member, 1_000_000)
    purchase = shop.api.purchase(store_code=shop.store.code, amount_fen=500_000, member=member).json()
    redemption = shop.api.redeem(store_code=shop.store.code, points=100_000, member=member).json()
    KNOWN.update(store=shop.store, member=member, purchase_id=purchase["id"], redemption_id=redemption["id"])
    yield shop
    KNOWN.clear()


@pytest.fixture
def wsgi_keeps_the_test_connection(merchant_data):
    """Django closes the connection when a WSGI request finishes; the test's data lives in its transaction on it.

    (After merchant_data: the test client reconnects the signal after each of its own requests.)
    """
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@schema.parametrize()
@settings(max_examples=10, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_the_merchant_api_keeps_every_promise_of_its_schema(case, merchant_data, wsgi_keeps_the_test_connection):
    """No 5xx; statuses, content types, headers and bodies as documented; schema-valid requests accepted (but for
    the documented rules beyond the schema), schema-invalid ones refused, the key required."""
    _pointed_at_real_data(case)
    # The Idempotency-Key is the generated one: a negative case may leave it out or break it on purpose.
    case.call_and_validate(headers={"Authorization": f"Bearer {merchant_data.raw_key}"}, checks=ALL_CHECKS)
