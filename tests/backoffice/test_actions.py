"""What a tenant does in its back office: refund a paid order, print its store's QR,
issue and revoke API keys, and make coupon templates of its own."""

import re
import uuid

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.messages import get_messages

from coupons.models import CouponTemplate
from members import auth, ledger
from members.models import MerchantApiKey
from payments.models import Order, OrderRefund, SandboxTrade
from tests.backoffice.conftest import admin_url, url
from tests.factories import assert_ledger_invariants

pytestmark = pytest.mark.django_db


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


# --- refunds --------------------------------------------------------------------------


def test_a_refund_of_a_paid_order_moves_cash_and_points_back_once(tenant_a):
    order, member, client = tenant_a.order, tenant_a.order.member, tenant_a.client
    before = ledger.member_points_balance(member=member)
    page = client.get(url("payments_order_refund", order.pk))
    assert page.status_code == 200 and page.context["form"]["amount"].value() == "100.00"
    token = str(page.context["form"]["token"].value())
    form = {"apply": "1", "token": token, "amount": "100.00", "reason": "returned goods"}

    first = client.post(url("payments_order_refund", order.pk), form, follow=True)
    again = client.post(url("payments_order_refund", order.pk), form, follow=True)  # Back and submit again

    refund = OrderRefund.objects.get()
    assert (refund.status, refund.amount_fen, refund.cash_fen, refund.points) == ("succeeded", 10_000, 9_500, 500)
    assert refund.requested_by.username == "alpha-till" and refund.idempotency_key == f"backoffice:{token}"
    assert any("succeeded" in m and "95.00" in m for m in messages_of(first))
    assert any("cannot be refunded" in m for m in messages_of(again))
    order.refresh_from_db()
    assert (order.status, order.refunded_fen) == ("refunded", 10_000)
    assert SandboxTrade.objects.get(out_trade_no=order.out_trade_no).refunded_fen == 9_500
    # The 500 points it used come back; the 95 it earned are taken back.
    assert ledger.member_points_balance(member=member) == before + 500 - 95
    assert_ledger_invariants()


def test_a_partial_refund_submitted_twice_refunds_once(tenant_a):
    order, client = tenant_a.order, tenant_a.client
    form = {"apply": "1", "token": str(uuid.uuid4()), "amount": "40.00", "reason": "one item back"}

    client.post(url("payments_order_refund", order.pk), form)
    client.post(url("payments_order_refund", order.pk), form)

    assert OrderRefund.objects.count() == 1
    order.refresh_from_db()
    assert (order.status, order.refunded_fen) == ("partially_refunded", 4_000)


@pytest.mark.parametrize("amount", ["0", "-1", "100.01", "12.345", "abc"])
def test_a_refund_of_a_bad_amount_is_refused_with_nothing_moved(tenant_a, amount):
    form = {"apply": "1", "token": str(uuid.uuid4()), "amount": amount, "reason": "x"}
    response = tenant_a.client.post(url("payments_order_refund", tenant_a.order.pk), form)
    assert response.status_code == 200 and response.context["form"].errors
    assert not OrderRefund.objects.exists()


def test_the_refund_action_opens_the_refund_page_of_the_one_selected_order(tenant_a):
    action = {"action": "refund", ACTION_CHECKBOX_NAME: [tenant_a.order.pk]}
    response = tenant_a.client.post(admin_url(Order, "changelist"), action)
    assert response.status_code == 302 and response.url == url("payments_order_refund", tenant_a.order.pk)


# --- the store's payment QR -----------------------------------------------------------


def test_the_store_page_links_its_payment_qr_poster(tenant_a):
    store = tenant_a.shop.store
    page = tenant_a.client.get(admin_url(type(store), "change", store.pk)).content.decode()
    assert url("members_store_print_qr", store.pk) in page

    poster = tenant_a.client.get(url("members_store_print_qr", store.pk))

    assert poster.status_code == 200
    assert f"/m/qr/pay/{store.code}.svg" in poster.content.decode()


# --- API keys -------------------------------------------------------------------------


def test_an_issued_key_is_shown_once_works_and_is_revoked(tenant_a):
    client = tenant_a.client
    assert client.get(admin_url(MerchantApiKey, "add")).status_code == 200

    issued = client.post(admin_url(MerchantApiKey, "add"), {"name": "POS 2", "issue": "1"})

    assert issued.status_code == 200
    raw_key = re.search(r'<code id="raw-key"[^>]*>(mk_[^<]+)</code>', issued.content.decode())[1]
    key = auth.merchant_api_key_verify(raw_key=raw_key)
    assert key is not None and key.merchant == tenant_a.merchant and key.name == "POS 2 · alpha-till"
    listed = client.get(admin_url(MerchantApiKey, "changelist")).content.decode()
    assert raw_key not in listed and f"mk_{key.prefix}_…" in listed
    assert raw_key not in client.get(admin_url(MerchantApiKey, "change", key.pk)).content.decode()

    client.post(admin_url(MerchantApiKey, "changelist"), {"action": "revoke", ACTION_CHECKBOX_NAME: [key.pk]})

    key.refresh_from_db()
    assert key.revoked_at is not None
    assert auth.merchant_api_key_verify(raw_key=raw_key) is None
    assert MerchantApiKey.objects.get(pk=tenant_a.shop.api_key.pk).revoked_at is None  # only the one selected


def test_a_revoked_key_no_longer_opens_the_merchant_api(tenant_a):
    key = tenant_a.shop.api_key
    tenant_a.client.post(admin_url(MerchantApiKey, "changelist"), {"action": "revoke", ACTION_CHECKBOX_NAME: [key.pk]})
    assert tenant_a.shop.api.get("/api/v1/reports/daily/", {"from": "2026-01-01", "to": "2026-01-01"}).status_code == 401


# --- coupon templates -----------------------------------------------------------------


def template_form(**values) -> dict:
    return {
        "name": "Spring ¥20 off", "description": "", "kind": "cash_off", "status": "active", "face_value_fen": "20",
        "min_spend_fen": "100", "percent_off_bp": "0", "max_discount_fen": "", "gift_description": "",
        "valid_from_0": "", "valid_from_1": "", "valid_until_0": "", "valid_until_1": "", "valid_days": "30",
        "total_quota": "", "per_member_limit": "1", "combines_with_points": "on", **values,
    }


def test_a_tenant_makes_a_template_of_its_own_funded_by_it_for_its_stores(tenant_a):
    store = tenant_a.shop.store
    response = tenant_a.client.post(
        admin_url(CouponTemplate, "add"), template_form(stores=[store.pk], funded_by="mall", merchant="999"),
    )

    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else response
    template = CouponTemplate.objects.get(name="Spring ¥20 off")
    assert template.merchant == tenant_a.merchant
    assert template.funded_by == CouponTemplate.FundedBy.MERCHANT  # whatever was posted
    assert (template.face_value_fen, template.min_spend_fen) == (2_000, 10_000)  # typed in yuan, kept in fen
    assert list(template.stores.all()) == [store]
    assert template.points_price is None and not template.claimable


def test_a_template_cannot_name_another_merchants_store(tenant_a, tenant_b):
    response = tenant_a.client.post(admin_url(CouponTemplate, "add"), template_form(stores=[tenant_b.shop.store.pk]))

    assert response.status_code == 200
    assert "stores" in response.context["adminform"].form.errors
    assert not CouponTemplate.objects.filter(name="Spring ¥20 off").exists()


def test_editing_a_template_keeps_it_merchant_funded_and_its_own(tenant_a, tenant_b):
    template = tenant_a.template
    response = tenant_a.client.post(
        admin_url(CouponTemplate, "change", template.pk),
        template_form(name="Renamed", funded_by="mall", stores=[tenant_a.shop.store.pk]),
    )

    assert response.status_code == 302
    template.refresh_from_db()
    assert (template.name, template.funded_by, template.merchant) == ("Renamed", "merchant", tenant_a.merchant)


def test_a_mall_funded_template_of_the_merchant_is_read_only(tenant_a):
    mall = CouponTemplate.objects.create(
        name="Mall gift", kind="voucher", face_value_fen=500, valid_days=7, merchant=tenant_a.merchant, funded_by="mall",
    )
    response = tenant_a.client.post(admin_url(CouponTemplate, "change", mall.pk), template_form(name="Mine"))

    assert response.status_code == 403
    mall.refresh_from_db()
    assert (mall.name, mall.funded_by) == ("Mall gift", "mall")


def test_a_template_breaking_the_models_rules_is_refused_not_a_server_error(tenant_a):
    response = tenant_a.client.post(admin_url(CouponTemplate, "add"), template_form(face_value_fen="0", valid_days=""))
    assert response.status_code == 200 and response.context["adminform"].form.errors


# --- campaigns --------------------------------------------------------------------------


def test_a_campaign_shows_rounded_counts_only(tenant_a):
    page = tenant_a.client.get(admin_url(type(tenant_a.campaign), "change", tenant_a.campaign.pk)).content.decode()
    assert "1200" in page  # 1234 requested, shown rounded down to two significant figures
    assert "1234" not in page
