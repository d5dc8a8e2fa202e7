"""`manage.py payments_reconcile`: payments whose notification never came are booked,
expired orders closed, pending refunds sent again; one platform failure does not stop
the run; a summary at the end."""

import io
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.core.management.base import OutputWrapper
from django.utils import timezone

from core.platforms import PlatformUnavailable
from members import ledger
from payments import orders, refunds
from payments.gateways.sandbox import SandboxGateway
from core.progress import Progress
from payments.models import Order, OrderRefund, PaymentNotification, SandboxTrade
from tests.factories import assert_ledger_invariants, make_member
from tests.payments.conftest import build_shop

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("sandbox_on")]


@pytest.fixture
def sandbox_on(settings):
    settings.O2O_SANDBOX = True


def new_order(shop, member, *, amount_fen, minutes_ago, points=0) -> Order:
    return orders.order_create(
        store=shop.store, member=member, amount_fen=amount_fen, points_to_use=points, channel="sandbox",
        client=Order.Client.CASHIER, site_url="http://testserver", at=timezone.now() - timedelta(minutes=minutes_ago),
    )


def paid_at_the_platform(order: Order) -> None:
    """The shopper paid; the platform's notification never reached us."""
    SandboxTrade.objects.filter(out_trade_no=order.out_trade_no).update(status="SUCCESS", paid_at=timezone.now())


def reconcile(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("payments_reconcile", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def status(order: Order) -> str:
    return Order.objects.values_list("status", flat=True).get(pk=order.pk)


@pytest.fixture
def shop():
    return build_shop()


@pytest.fixture
def member():
    member = make_member()
    ledger.points_grant(member=member, points=1_000, reason="gift", idempotency_key="grant")
    return member


def test_reconcile_books_a_lost_payment_closes_an_expired_order_and_leaves_recent_ones(shop, member):
    lost = new_order(shop, member, amount_fen=5_000, minutes_ago=20)
    paid_at_the_platform(lost)
    expired = new_order(shop, member, amount_fen=2_000, points=400, minutes_ago=20)
    waiting = new_order(shop, member, amount_fen=3_000, minutes_ago=8)
    recent = new_order(shop, member, amount_fen=1_000, minutes_ago=2)
    assert ledger.member_points_balance(member=member) == 600

    out, err = reconcile()

    assert out.splitlines()[-2:] == [
        "orders: 3 checked, 1 paid, 1 closed, 1 still pending, 0 errors",
        "refunds: 0 checked, 0 succeeded, 0 failed, 0 still pending, 0 errors",
    ]
    assert err == ""
    lost.refresh_from_db()
    assert lost.status == "paid" and lost.transaction_id.startswith("SBX") and lost.earn.points == 50
    assert not PaymentNotification.objects.exists()
    assert status(expired) == "closed"
    assert SandboxTrade.objects.get(out_trade_no=expired.out_trade_no).status == "CLOSED"
    assert (status(waiting), status(recent)) == ("created", "created")
    # 400 held points back, 50 earned.
    assert ledger.member_points_balance(member=member) == 1_000 + 50
    assert_ledger_invariants()

    # Run again: the booked and closed ones are not asked about twice.
    again, _ = reconcile()
    assert again.splitlines()[-2] == "orders: 1 checked, 0 paid, 0 closed, 1 still pending, 0 errors"
    assert ledger.member_points_balance(member=member) == 1_050


def test_reconcile_counts_a_platform_error_and_goes_on(shop, member, monkeypatch):
    failing = new_order(shop, member, amount_fen=1_000, minutes_ago=30)
    lost = new_order(shop, member, amount_fen=2_000, minutes_ago=20)
    paid_at_the_platform(lost)
    real_query = SandboxGateway.query

    def query(self, *, out_trade_no, **kwargs):
        if out_trade_no == failing.out_trade_no:
            raise PlatformUnavailable("sandbox did not answer")
        return real_query(self, out_trade_no=out_trade_no, **kwargs)

    monkeypatch.setattr(SandboxGateway, "query", query)

    out, err = reconcile()

    assert "orders: 2 checked, 1 paid, 0 closed, 0 still pending, 1 errors" in out.splitlines()
    assert f"orders #{failing.pk}: platform_unavailable: sandbox did not answer" in err
    assert (status(failing), status(lost)) == ("created", "paid")


def test_reconcile_sends_pending_refunds_again(shop, member):
    order = new_order(shop, member, amount_fen=10_000, minutes_ago=30)
    paid_at_the_platform(order)
    orders.order_reconcile(order=order)
    order.refresh_from_db()
    assert ledger.member_points_balance(member=member) == 1_100
    # Asked for, never sent (the process died before refund_submit).
    refund = refunds.order_refund_request(order=order, amount_fen=4_000, at=timezone.now() - timedelta(minutes=10))
    fresh = refunds.order_refund_request(order=order, amount_fen=1_000)

    out, _ = reconcile()

    assert out.splitlines()[-1] == "refunds: 1 checked, 1 succeeded, 0 failed, 0 still pending, 0 errors"
    refund.refresh_from_db()
    assert refund.status == "succeeded"
    assert OrderRefund.objects.get(pk=fresh.pk).status == "pending"
    assert SandboxTrade.objects.get(out_trade_no=order.out_trade_no).refunded_fen == 4_000
    assert status(order) == "partially_refunded"
    assert ledger.member_points_balance(member=member) == 1_100 - 40
    assert_ledger_invariants()


def test_reconcile_honours_older_than_gateway_and_limit(shop, member):
    oldest = new_order(shop, member, amount_fen=1_000, minutes_ago=50)
    older = new_order(shop, member, amount_fen=1_000, minutes_ago=40)
    young = new_order(shop, member, amount_fen=1_000, minutes_ago=3)

    assert reconcile("--gateway", "wechat_v2")[0].splitlines()[-2].startswith("orders: 0 checked")
    assert reconcile("--limit", "1")[0].splitlines()[-2] == "orders: 1 checked, 0 paid, 1 closed, 0 still pending, 0 errors"
    assert (status(oldest), status(older)) == ("closed", "created")

    out, _ = reconcile("--older-than-minutes", "0", "--gateway", "sandbox")

    assert out.splitlines()[-2] == "orders: 2 checked, 0 paid, 1 closed, 1 still pending, 0 errors"
    assert (status(older), status(young)) == ("closed", "created")


@pytest.mark.parametrize("args", [
    ["--older-than-minutes", "-1"], ["--older-than-minutes", "soon"], ["--limit", "0"], ["--gateway", "points"],
    ["--gateway", "paypal"],
])
def test_reconcile_refuses_bad_arguments(shop, member, args):
    order = new_order(shop, member, amount_fen=1_000, minutes_ago=30)
    with pytest.raises(CommandError):
        reconcile(*args)
    assert status(order) == "created"


def test_reconcile_prints_progress_lines_when_not_on_a_terminal(shop, member):
    for _ in range(3):
        new_order(shop, member, amount_fen=1_000, minutes_ago=30)

    out, _ = reconcile()

    assert out.splitlines() == [
        "orders: 1/3", "orders: 2/3", "orders: 3/3",
        "orders: 3 checked, 0 paid, 3 closed, 0 still pending, 0 errors",
        "refunds: 0 checked, 0 succeeded, 0 failed, 0 still pending, 0 errors",
    ]


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_redraws_one_line_on_a_terminal():
    screen = Terminal()
    progress = Progress(OutputWrapper(screen), "orders", 4)
    for _ in range(4):
        progress.advance()
    progress.end_line()

    text = screen.getvalue()
    assert text.count("\r") == 4 and text.count("\n") == 1
    assert text.endswith("\rorders [" + "#" * 30 + "] 4/4\n")
    assert "\rorders [" + "#" * 7 + "." * 23 + "] 1/4" in text
