"""Isolation as an attack: merchant A's login asks for merchant B's rows by id, on every
page and action of the tenants' admin. Each answer is a 404 (as for an id that never
existed), and nothing of B's moves."""

import uuid

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME

from coupons.models import Campaign, CouponTemplate
from members.models import MerchantApiKey, Store
from payments.models import Order, OrderRefund, Purchase, Redemption
from tests.backoffice.conftest import admin_url, url

pytestmark = pytest.mark.django_db


def rows_of(tenant):
    key = MerchantApiKey.objects.get(merchant=tenant.merchant)
    return [
        (Store, tenant.shop.store.pk), (Purchase, tenant.purchase.pk), (Redemption, tenant.redemption.pk),
        (Order, tenant.order.pk), (CouponTemplate, tenant.template.pk), (Campaign, tenant.campaign.pk),
        (MerchantApiKey, key.pk),
    ]


def test_a_tenant_sees_its_own_rows_on_every_page(tenant_a, tenant_b):
    for model, pk in rows_of(tenant_a):
        assert tenant_a.client.get(admin_url(model, "change", pk)).status_code == 200, model
        listed = tenant_a.client.get(admin_url(model, "changelist"))
        assert listed.status_code == 200, model
        assert [obj.pk for obj in listed.context["cl"].result_list] == [pk], model


def test_another_merchants_change_history_and_delete_urls_are_404(tenant_a, tenant_b):
    for model, pk in rows_of(tenant_b):
        for view in ("change", "history", "delete"):
            response = tenant_a.client.get(admin_url(model, view, pk))
            assert response.status_code == 404, (model, view)
        # A POST to the change page (the editable template among them) changes nothing either.
        assert tenant_a.client.post(admin_url(model, "change", pk), {"name": "hacked"}).status_code == 404, model
    assert CouponTemplate.objects.get(pk=tenant_b.template.pk).name == "Bravo ¥10 off"


def test_an_id_that_never_existed_answers_the_same(tenant_a):
    assert tenant_a.client.get(admin_url(Order, "change", 10**12)).status_code == 404
    assert tenant_a.client.get(admin_url(Order, "change", "not-a-number")).status_code == 404


def test_another_merchants_store_qr_and_order_refund_pages_are_404(tenant_a, tenant_b):
    assert tenant_a.client.get(url("members_store_print_qr", tenant_b.shop.store.pk)).status_code == 404
    assert tenant_a.client.get(url("payments_order_refund", tenant_b.order.pk)).status_code == 404
    forged = {"apply": "1", "token": str(uuid.uuid4()), "amount": "100.00", "reason": "mine now"}
    assert tenant_a.client.post(url("payments_order_refund", tenant_b.order.pk), forged).status_code == 404
    tenant_b.order.refresh_from_db()
    assert (tenant_b.order.status, tenant_b.order.refunded_fen) == ("paid", 0)
    assert not OrderRefund.objects.exists()


def test_actions_posted_with_another_merchants_ids_move_nothing(tenant_a, tenant_b):
    key_b = MerchantApiKey.objects.get(merchant=tenant_b.merchant)
    revoke = {"action": "revoke", ACTION_CHECKBOX_NAME: [key_b.pk]}
    tenant_a.client.post(admin_url(MerchantApiKey, "changelist"), revoke)
    key_b.refresh_from_db()
    assert key_b.revoked_at is None

    refund = {"action": "refund", ACTION_CHECKBOX_NAME: [tenant_b.order.pk]}
    response = tenant_a.client.post(admin_url(Order, "changelist"), refund)
    assert response.status_code == 302 and "refund" not in response.url
    assert not OrderRefund.objects.exists()


def test_filters_and_search_cannot_reach_another_merchants_rows(tenant_a, tenant_b):
    client = tenant_a.client
    by_store = client.get(admin_url(Purchase, "changelist"), {"store": tenant_b.shop.store.pk})
    assert list(by_store.context["cl"].result_list) == []
    by_number = client.get(admin_url(Order, "changelist"), {"q": tenant_b.order.out_trade_no})
    assert list(by_number.context["cl"].result_list) == []


def test_autocomplete_and_view_on_site_do_not_open_another_merchants_rows(tenant_a, tenant_b):
    response = tenant_a.client.get(url("autocomplete"), {
        "app_label": "coupons", "model_name": "coupontemplate", "field_name": "stores", "term": "",
    })
    shown = {int(row["id"]) for row in response.json()["results"]} if response.status_code == 200 else set()
    assert tenant_b.shop.store.pk not in shown
    assert tenant_a.client.get(f"/merchant/r/1/{tenant_b.shop.store.pk}/").status_code == 404


def test_no_page_shows_a_members_nickname_or_phone(tenant_a):
    member = tenant_a.order.member
    type(member).objects.filter(pk=member.pk).update(nickname="Zhang Wei", phone="13800138000")
    for model, pk in rows_of(tenant_a):
        for page in (admin_url(model, "changelist"), admin_url(model, "change", pk)):
            text = tenant_a.client.get(page).content.decode()
            assert "Zhang Wei" not in text and "13800138000" not in text, page
    assert member.member_no in tenant_a.client.get(admin_url(Order, "change", tenant_a.order.pk)).content.decode()
