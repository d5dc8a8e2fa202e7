"""The ledger and the outbox count what they do in /metrics (core/metrics.py), once."""

import pytest
from prometheus_client import REGISTRY

from members import ledger, pushes
from tests.factories import make_member, make_store

pytestmark = pytest.mark.django_db


def sample(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_an_earn_is_counted_once_however_often_it_is_replayed(django_capture_on_commit_callbacks):
    store, member = make_store(), make_member()
    before = sample("o2o_points_total", kind="earn")
    with django_capture_on_commit_callbacks(execute=True):
        txn = ledger.points_earn(member=member, store=store, amount_fen=10_000, idempotency_key="k")
    with django_capture_on_commit_callbacks(execute=True):
        ledger.points_earn(member=member, store=store, amount_fen=10_000, idempotency_key="k")

    assert sample("o2o_points_total", kind="earn") - before == txn.points == 100


def test_a_refused_spend_counts_nothing(django_capture_on_commit_callbacks):
    store, member = make_store(), make_member()
    before = sample("o2o_points_total", kind="redeem")
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(ledger.InsufficientPoints):
        ledger.points_redeem(member=member, store=store, points=1, idempotency_key="r")
    assert sample("o2o_points_total", kind="redeem") == before


def test_a_sandbox_push_is_counted_as_sent(settings, django_capture_on_commit_callbacks):
    settings.O2O_SANDBOX = True
    member = make_member()
    before = sample("o2o_push_attempts_total", outcome="sent", channel="sandbox")
    with django_capture_on_commit_callbacks(execute=True):
        pushes.push_send(member=member, event="test", event_key="test:1", title="t", body="b")
    assert sample("o2o_push_attempts_total", outcome="sent", channel="sandbox") - before == 1
