"""simulate: a short run of real requests leaves every ledger invariant intact and the
daily reports equal to the ledger."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from members import ledger_checks
from payments.models import Order, Purchase, Redemption
from bots.models import InboundMessage

pytestmark = pytest.mark.django_db


def test_a_short_simulation_keeps_the_books(settings):
    settings.DEBUG = True
    settings.O2O_SANDBOX = True
    call_command("seed_demo", members=10, stdout=StringIO())
    sales_before, orders_before = Purchase.objects.count(), Order.objects.count()
    out = StringIO()
    call_command("simulate", days=2, shoppers=10, seed=3, stdout=out)
    output = out.getvalue()
    assert "ledger invariants hold" in output
    # Purchases went through the merchant API with scanned codes; WeChat heard the shoppers.
    assert "purchase 201" in output
    assert Purchase.objects.count() > sales_before
    assert Purchase.objects.filter(order_ref__startswith="SIM-", member_present=True).exists()
    assert InboundMessage.objects.exists()
    assert "pay cashier 302" in output or Order.objects.count() == orders_before
    assert ledger_checks.books_violations(days=2) == []
    assert Redemption.objects.count() >= 0


def test_simulate_needs_the_demo_shoppers(settings):
    settings.DEBUG = True
    with pytest.raises(CommandError, match="seed_demo"):
        call_command("simulate", days=1, shoppers=3, stdout=StringIO())
