"""Two tenants, each with a back-office login, and the sales they booked through the real API."""

from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from backoffice import services
from coupons.models import Campaign, CouponTemplate
from members import ledger
from payments import orders
from payments.gateways import sandbox
from payments.models import Order, Purchase, Redemption
from tests.factories import make_member
from tests.payments.conftest import Shop, build_shop

PASSWORD = "a-long-tenant-password-7"


@pytest.fixture(autouse=True)
def _in_english(settings):
    """Messages are asserted in English; tenants read them in Chinese."""
    settings.LANGUAGE_CODE = "en"
    settings.O2O_SANDBOX = True


def url(name: str, *args) -> str:
    return reverse(f"merchant:{name}", args=args)


def admin_url(model, view: str, *args) -> str:
    return url(f"{model._meta.app_label}_{model._meta.model_name}_{view}", *args)


@dataclass
class Tenant:
    """A shop, its back-office client (signed in) and the rows it owns."""

    shop: Shop
    client: Client
    purchase: Purchase
    redemption: Redemption
    order: Order
    template: CouponTemplate
    campaign: Campaign

    @property
    def merchant(self):
        return self.shop.merchant


def pay(order: Order) -> Order:
    headers, body = sandbox.trade_pay(out_trade_no=order.out_trade_no)
    response = Client().post("/payments/notify/sandbox/", data=body, content_type="application/json", headers=headers)
    assert response.status_code == 200
    order.refresh_from_db()
    return order


def sandbox_order(shop: Shop, member, *, amount_fen: int, points: int = 0) -> Order:
    return orders.order_create(
        store=shop.store, member=member, amount_fen=amount_fen, points_to_use=points, channel="sandbox",
        client=Order.Client.CASHIER, site_url="http://testserver",
    )


def build_tenant(name: str) -> Tenant:
    shop = build_shop(name=name)
    member = make_member()
    ledger.points_grant(member=member, points=1_000, reason="gift", idempotency_key=f"grant-{name}")
    bought = shop.api.purchase(store_code=shop.store.code, amount_fen=10_000, member=member)
    assert bought.status_code == 201, bought.content
    redeemed = shop.api.redeem(store_code=shop.store.code, points=100, member=member)
    assert redeemed.status_code == 201, redeemed.content
    order = pay(sandbox_order(shop, member, amount_fen=10_000, points=500))
    template = CouponTemplate.objects.create(
        name=f"{name} ¥10 off", kind=CouponTemplate.Kind.CASH_OFF, face_value_fen=1_000, min_spend_fen=5_000,
        valid_days=30, merchant=shop.merchant, funded_by=CouponTemplate.FundedBy.MERCHANT,
    )
    campaign = Campaign.objects.create(
        name=f"{name} comeback", template=template, merchant=shop.merchant, message_title="Hi", message_body="Come back",
        starts_at=timezone.now() - timedelta(days=1), status=Campaign.Status.PENDING, requested_audience=1234,
    )
    staff = services.merchant_staff_create(merchant=shop.merchant, username=f"{name.lower()}-till", password=PASSWORD)
    client = Client()
    client.force_login(staff.user)
    return Tenant(
        shop=shop, client=client, purchase=Purchase.objects.get(pk=bought.json()["id"]),
        redemption=Redemption.objects.get(pk=redeemed.json()["id"]), order=order, template=template, campaign=campaign,
    )


@pytest.fixture
def tenant_a() -> Tenant:
    return build_tenant("Alpha")


@pytest.fixture
def tenant_b() -> Tenant:
    return build_tenant("Bravo")
