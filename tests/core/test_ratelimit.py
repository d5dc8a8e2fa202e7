"""core.ratelimit: fixed-window counters that are one atomic increment, on both stores.

Every counter test runs twice: on the database counter (always) and on Redis (when
REDIS_URL is set, as on CI's PostgreSQL leg). The database path runs on whichever
database the suite uses, so the SQLite and the PostgreSQL upserts are both exercised.
"""

import threading
import uuid
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from unittest import mock

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.utils import timezone
from rest_framework.test import APIRequestFactory

from core import ratelimit
from core.models import RateCounter
from core.ratelimit import AtomicRateThrottle, counter_hit, counter_peek, counters_purge, guesses_counted, rate_parse
from tests.concurrency import race_all_succeed

pytestmark = pytest.mark.django_db

# The first instant of a 60-second window, and of a 600-second one.
T0 = datetime(2026, 3, 10, 2, 0, 0, tzinfo=dt_timezone.utc)
assert int(T0.timestamp()) % 600 == 0


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def new_key() -> str:
    return f"test:{uuid.uuid4().hex}"


@pytest.fixture(params=["database", "redis"])
def store(request, settings):
    """The counter store under test: the database (REDIS_URL unset) or Redis."""
    if request.param == "redis":
        if not settings.REDIS_URL:
            pytest.skip("REDIS_URL is not set")
    else:
        settings.REDIS_URL = ""
    return request.param


def race(calls):
    return race_all_succeed(calls, name="counter-race")


# --- counter_hit and counter_peek -----------------------------------------------------------


def test_hits_count_up_from_one_per_key(store):
    first, second = new_key(), new_key()

    assert [counter_hit(first, window_seconds=60, now=at(1)) for _ in range(3)] == [1, 2, 3]
    assert counter_hit(second, window_seconds=60, now=at(1)) == 1


def test_an_amount_adds_and_a_negative_one_gives_back(store):
    key = new_key()

    assert counter_hit(key, window_seconds=60, amount=5, now=at(1)) == 5
    assert counter_hit(key, window_seconds=60, amount=-1, now=at(2)) == 4


def test_each_window_counts_apart(store):
    key = new_key()
    counter_hit(key, window_seconds=60, now=at(0))

    assert counter_hit(key, window_seconds=60, now=at(59.999)) == 2
    assert counter_hit(key, window_seconds=60, now=at(60)) == 1
    # Another window length is another counter, even where the windows overlap.
    assert counter_hit(key, window_seconds=600, now=at(60)) == 1


def test_peek_reads_the_current_window_without_counting(store):
    key = new_key()
    assert counter_peek(key, window_seconds=60, now=at(0)) == 0
    counter_hit(key, window_seconds=60, amount=7, now=at(0))

    assert counter_peek(key, window_seconds=60, now=at(30)) == 7
    assert counter_peek(key, window_seconds=60, now=at(30)) == 7
    assert counter_peek(key, window_seconds=60, now=at(60)) == 0


def test_without_now_the_window_is_the_current_one(store):
    key = new_key()
    counter_hit(key, window_seconds=86400)

    assert counter_peek(key, window_seconds=86400, now=timezone.now()) == 1


def test_keys_of_any_length_count_apart(store):
    long_a, long_b = "a" * 300 + "1", "a" * 300 + "2"

    assert counter_hit(long_a, window_seconds=60, now=at(0)) == 1
    assert counter_hit(long_a, window_seconds=60, now=at(0)) == 2
    assert counter_hit(long_b, window_seconds=60, now=at(0)) == 1


def test_a_window_must_be_positive(store):
    with pytest.raises(ValueError):
        counter_hit(new_key(), window_seconds=0)


# --- the database counter -------------------------------------------------------------------


@pytest.fixture
def database(settings):
    settings.REDIS_URL = ""


def test_a_row_lives_until_its_window_ends_and_long_keys_are_digests(database):
    counter_hit("short", window_seconds=60, now=at(10))
    counter_hit("x" * 300, window_seconds=60, now=at(10))

    short = RateCounter.objects.get(key__startswith="short@60:")
    assert short.expires_at == at(60) and short.count == 1
    assert all(len(key) <= 200 for key in RateCounter.objects.values_list("key", flat=True))
    assert RateCounter.objects.filter(key__startswith="sha256:").count() == 1


def test_purge_deletes_the_windows_that_have_ended_and_keeps_the_rest(database, monkeypatch):
    monkeypatch.setattr(ratelimit, "PURGE_BATCH", 2)
    for i in range(5):
        counter_hit(f"old-{i}", window_seconds=60, now=at(0))
    counter_hit("current", window_seconds=600, now=at(0))

    assert counters_purge(now=at(60)) == 5
    assert list(RateCounter.objects.values_list("key", flat=True)) == [f"current@600:{int(T0.timestamp()) // 600}"]
    assert counters_purge(now=at(60)) == 0
    assert counter_hit("current", window_seconds=600, now=at(60)) == 2


def test_purge_is_scheduled():
    from django_q.models import Schedule

    schedule = Schedule.objects.get(func="core.ratelimit.counters_purge")
    assert (schedule.schedule_type, schedule.minutes) == (Schedule.MINUTES, 10)


def test_a_hit_inside_an_outer_transaction_counts_and_leaves_it_usable(database):
    key = new_key()
    with transaction.atomic():
        assert counter_hit(key, window_seconds=60, now=at(0)) == 1
        assert counter_hit(key, window_seconds=60, now=at(0)) == 2
        assert RateCounter.objects.count() == 1

    assert counter_peek(key, window_seconds=60, now=at(0)) == 2


# --- under concurrency ----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_concurrent_hits_each_see_a_different_count(store):
    key = new_key()
    threads, hits_each = 64, 5

    def hits():
        return [counter_hit(key, window_seconds=600, now=at(1)) for _ in range(hits_each)]

    seen = [count for counts in race([hits] * threads) for count in counts]

    assert sorted(seen) == list(range(1, threads * hits_each + 1))
    assert counter_peek(key, window_seconds=600, now=at(1)) == threads * hits_each


# --- rates ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rate, parsed",
    [
        ("1200/min", (1200, 60)),
        ("50/s", (50, 1)),
        ("3/m", (3, 60)),
        ("10/minute", (10, 60)),
        ("10/minutes", (10, 60)),
        ("7/sec", (7, 1)),
        ("2/hour", (2, 3600)),
        ("2/h", (2, 3600)),
        ("1000/day", (1000, 86400)),
        (" 5 / D ", (5, 86400)),
    ],
)
def test_rates_are_a_count_per_period(rate, parsed):
    assert rate_parse(rate) == parsed


@pytest.mark.parametrize("rate", ["", "1200", "/min", "0/min", "-1/min", "1.5/min", "ten/min", "5/week", "5/mon", "５/min"])
def test_a_malformed_rate_is_a_configuration_error(rate):
    with pytest.raises(ImproperlyConfigured):
        rate_parse(rate)


# --- the DRF throttle -----------------------------------------------------------------------


class PerAddressThrottle(AtomicRateThrottle):
    scope = "test"
    rate = "3/min"

    def get_rate(self):
        return self.rate

    def get_cache_key(self, request, view):
        return f"throttle:test:{self.get_ident(request)}"


def allowed(throttle_class, *, address="10.0.0.1", clock=T0.timestamp() + 15):
    throttle = throttle_class()
    request = APIRequestFactory().get("/", REMOTE_ADDR=address)
    with mock.patch.object(throttle_class, "timer", mock.Mock(return_value=clock)):
        return throttle.allow_request(request, None), throttle.wait()


def test_the_throttle_allows_the_rate_then_refuses_until_the_window_ends(store):
    outcomes = [allowed(PerAddressThrottle) for _ in range(4)]

    assert outcomes == [(True, None)] * 3 + [(False, 45)]
    assert allowed(PerAddressThrottle, address="10.0.0.2") == (True, None)
    assert allowed(PerAddressThrottle, clock=T0.timestamp() + 60) == (True, None)


def test_the_throttle_without_a_rate_or_an_identity_lets_everything_through(store):
    class Unlimited(PerAddressThrottle):
        rate = None

    class Anonymous(PerAddressThrottle):
        def get_cache_key(self, request, view):
            return None

    assert all(allowed(Unlimited) == (True, None) for _ in range(5))
    assert all(allowed(Anonymous) == (True, None) for _ in range(5))


def test_the_throttle_names_its_scope_when_the_rate_is_malformed(store):
    class Malformed(PerAddressThrottle):
        rate = "lots"

    with pytest.raises(ImproperlyConfigured, match="'test'"):
        allowed(Malformed)


# --- guesses_counted ------------------------------------------------------------------------


class Wrong(Exception):
    pass


class Refused(Exception):
    pass


def guess(caller: str, outcome, *, limit: int = 3, now=None):
    def attempt():
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    return guesses_counted(
        name="test-guesses", caller=caller, limit=limit, window_seconds=600, attempt=attempt, wrong=(Wrong,),
        refused=Refused, now=now or at(1),
    )


def guesses_of(caller: str) -> int:
    return counter_peek(f"test-guesses:{caller}", window_seconds=600, now=at(1))


def test_wrong_guesses_are_counted_and_past_the_limit_everything_is_refused(store):
    for _ in range(3):
        with pytest.raises(Wrong):
            guess("pos-1", Wrong())

    with pytest.raises(Refused):
        guess("pos-1", "right")
    assert guesses_of("pos-1") == 3  # a refusal gives its reservation back
    assert guess("pos-2", "right") == "right"
    assert guess("pos-1", "right", now=at(600)) == "right"  # the next window


def test_right_answers_and_other_errors_give_their_guess_back(store):
    with pytest.raises(Wrong):
        guess("pos-1", Wrong())
    for _ in range(10):
        assert guess("pos-1", "right") == "right"
        with pytest.raises(KeyError):
            guess("pos-1", KeyError("not a guess"))

    assert guesses_of("pos-1") == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_wrong_guesses_are_attempted_exactly_up_to_the_limit(store):
    attempts, lock = [], threading.Lock()

    def attempt():
        with lock:
            attempts.append(1)
        raise Wrong()

    def guesses():
        outcomes = []
        for _ in range(5):
            try:
                guesses_counted(
                    name="test-guesses", caller="flood", limit=20, window_seconds=600, attempt=attempt,
                    wrong=(Wrong,), refused=Refused, now=at(1),
                )
            except (Wrong, Refused) as exc:
                outcomes.append(type(exc).__name__)
        return outcomes

    outcomes = [o for each in race([guesses] * 64) for o in each]

    assert len(attempts) == 20
    assert sorted(outcomes) == ["Refused"] * 300 + ["Wrong"] * 20
    assert guesses_of("flood") == 20
