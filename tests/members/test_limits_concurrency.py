"""The limits hold under concurrency: the merchant API rate, the shopper login rate and
the wrong-member-code limit, raced through the real endpoints.

Real threads, each with its own Client and so its own database connection, released at
one barrier. Every test commits its data (``transaction=True``) so that the threads see
it. The clocks the limits read are frozen, so that no race straddles the edge of a window
(where a fixed window rightly starts again). On SQLite the counter's upserts queue for
the database write lock; on PostgreSQL (CI's second leg) they are Redis INCRs.
"""

import threading
from unittest import mock

import pytest
from django.test import Client
from django.utils import timezone

from core.ratelimit import AtomicRateThrottle
from members import codes
from members.codes import GUESS_LIMIT
from tests.concurrency import race_all_succeed
from tests.factories import make_member
from tests.payments.conftest import Api, build_shop

pytestmark = pytest.mark.django_db(transaction=True)

THREADS = 64


def race(calls):
    """Every call's responses, flattened; no call may raise."""
    return [response for responses in race_all_succeed(calls, timeout=300, name="limit-race") for response in responses]


def answers(responses) -> dict[str, int]:
    """How many responses of each kind: the status, and the error code of an error."""
    counted = {}
    for response in responses:
        kind = f"{response.status_code} {response.json()['code']}" if response.status_code >= 400 else str(response.status_code)
        counted[kind] = counted.get(kind, 0) + 1
    return counted


@pytest.fixture
def throttle_clock():
    """The throttles' clock, frozen 20 seconds into a minute."""
    frozen = (int(timezone.now().timestamp()) // 60) * 60 + 20
    with mock.patch.object(AtomicRateThrottle, "timer", mock.Mock(return_value=frozen)):
        yield frozen


# --- the merchant API rate, per key -----------------------------------------------------------


def test_concurrent_requests_of_one_key_pass_exactly_the_rate(settings, throttle_clock):
    settings.MERCHANT_API_RATE = "50/min"
    shop, other_shop = build_shop(), build_shop()
    report = {"from": "2026-01-01", "to": "2026-01-07"}

    def requests():
        api = Api(shop.raw_key, client=Client(raise_request_exception=False))
        return [api.get("/api/v1/reports/daily/", report) for _ in range(2)]

    responses = race([requests] * THREADS)

    assert answers(responses) == {"200": 50, "429 throttled": 2 * THREADS - 50}
    assert {r["Retry-After"] for r in responses if r.status_code == 429} == {"40"}
    assert other_shop.api.get("/api/v1/reports/daily/", report).status_code == 200


# --- wrong member codes, per key --------------------------------------------------------------


def test_concurrent_wrong_codes_check_no_more_than_the_guess_limit(settings):
    settings.MERCHANT_API_RATE = "100000/min"
    shop, other_shop = build_shop(), build_shop()
    member = make_member()
    now = timezone.now()
    checked, lock = [], threading.Lock()
    verify = codes._verify

    def counted_verify(code, at):
        with lock:
            checked.append(code)
        return verify(code, at)

    def wrong_lookups():
        api = Api(shop.raw_key, client=Client(raise_request_exception=False))
        return [api.lookup(f"{i:023d}") for i in range(5)]

    # The guess window is read from the code module's clock, frozen for the race and after.
    with mock.patch.object(codes, "_verify", counted_verify), mock.patch.object(codes, "timezone", mock.Mock(now=lambda: now)):
        responses = race([wrong_lookups] * THREADS)
        checked_in_race = len(checked)
        valid_code = codes.member_code_issue(member=member, now=now).code
        refused = shop.api.lookup(valid_code)
        scanned_elsewhere = other_shop.api.lookup(valid_code)

    assert checked_in_race == GUESS_LIMIT
    assert answers(responses) == {"400 member_code_invalid": GUESS_LIMIT, "429 too_many_invalid_codes": 5 * THREADS - GUESS_LIMIT}
    assert answers([refused]) == {"429 too_many_invalid_codes": 1}
    assert scanned_elsewhere.status_code == 200 and scanned_elsewhere.json()["member_no"] == member.member_no


def test_concurrent_valid_codes_of_one_key_all_scan(settings):
    # A right code gives its reserved guess back: many tills of one key scanning at once
    # (fewer at a time than the guess limit) are never refused.
    settings.MERCHANT_API_RATE = "100000/min"
    shop = build_shop()
    members = [make_member() for _ in range(GUESS_LIMIT - 1)]
    now = timezone.now()
    member_codes = [codes.member_code_issue(member=m, now=now).code for m in members]
    with mock.patch.object(codes, "timezone", mock.Mock(now=lambda: now)):

        def scans(code):
            api = Api(shop.raw_key, client=Client(raise_request_exception=False))
            return [api.lookup(code) for _ in range(3)]

        responses = race([lambda code=code: scans(code) for code in member_codes])

    assert answers(responses) == {"200": 3 * len(members)}


# --- the shopper login rate, per address ------------------------------------------------------


def test_concurrent_logins_from_one_address_pass_exactly_the_rate(settings, throttle_clock):
    settings.SHOPPER_LOGIN_RATE = "50/min"
    # Without a mini-program configured, an attempt that passes the throttle answers 503.
    settings.WECHAT_MINIAPP_ID = settings.WECHAT_MINIAPP_SECRET = ""

    def logins():
        client = Client(raise_request_exception=False)
        return [
            client.post("/api/mp/v1/auth/wechat/", {"code": "C"}, content_type="application/json", REMOTE_ADDR="10.1.1.1")
            for _ in range(2)
        ]

    responses = race([logins] * THREADS)

    assert answers(responses) == {"503 platform_not_configured": 50, "429 throttled": 2 * THREADS - 50}
    elsewhere = Client().post("/api/mp/v1/auth/wechat/", {"code": "C"}, content_type="application/json", REMOTE_ADDR="10.1.1.2")
    assert answers([elsewhere]) == {"503 platform_not_configured": 1}
