import pytest
from django.urls import reverse

from members import ledger, spend
from payments import services
from tests.factories import make_member, make_store

pytestmark = pytest.mark.django_db


@pytest.fixture
def sale():
    store, member = make_store(), make_member()
    purchase = services.purchase_record(
        merchant=store.merchant, store=store, member=member, amount_fen=10_000, idempotency_key="p", order_ref="A1"
    )
    services.purchase_refund(purchase=purchase, amount_fen=1_000, idempotency_key="r")
    token = spend.spend_token_issue(member=member, store=store, max_points=20).token
    redemption = services.redemption_record(
        merchant=store.merchant, store=store, member=None, points=20, idempotency_key="d", redemption_token=token
    )
    services.redemption_refund(redemption=redemption, points=5, idempotency_key="dr")
    return purchase, redemption


@pytest.mark.parametrize("model", ["purchase", "redemption", "redemptionrefund", "apirequest"])
def test_sales_pages_load_and_are_read_only(admin_client, sale, model):
    assert admin_client.get(reverse(f"admin:payments_{model}_changelist")).status_code == 200
    assert admin_client.get(reverse(f"admin:payments_{model}_add")).status_code == 403


def test_purchase_page_shows_its_refunds(admin_client, sale):
    purchase, _ = sale
    page = admin_client.get(reverse("admin:payments_purchase_change", args=[purchase.pk]))
    assert page.status_code == 200
    assert "¥10.00" in page.content.decode()  # its refund, in yuan
    assert ledger.member_points_balance(member=purchase.member) == 100 - 10 - 20 + 5
