"""The tenants' admin (/merchant/) in Chinese: the language a tenant's staff read by default,
with English for whoever chooses it; money in yuan."""

import pytest
from django.test import Client
from django.urls import reverse

from coupons.models import Campaign, CouponTemplate
from members.models import MerchantApiKey, Store
from payments.models import Order, Purchase, Redemption
from tests.backoffice.conftest import PASSWORD, admin_url, url
from tests.payments.admin_language import (
    CJK,
    assert_labels_shown,
    form_labels,
    in_language,
    list_labels,
    page_text,
    speaking,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def in_chinese(settings):
    """The project's default language (this folder's conftest sets English for its other tests)."""
    settings.LANGUAGE_CODE = "zh-hans"


def rows_of(tenant):
    return [
        (Store, tenant.shop.store.pk), (Purchase, tenant.purchase.pk), (Redemption, tenant.redemption.pk),
        (Order, tenant.order.pk), (CouponTemplate, tenant.template.pk), (Campaign, tenant.campaign.pk),
        (MerchantApiKey, MerchantApiKey.objects.get(merchant=tenant.merchant).pk),
    ]


def test_every_page_of_the_back_office_is_chinese_by_default(in_chinese, tenant_a):
    index = page_text(tenant_a.client.get(url("index")))
    assert '<html lang="zh-hans"' in index
    assert in_language("zh-hans", "Merchant back office") in index and CJK.search(in_language("zh-hans", "Merchant back office"))
    assert "¥95.00" in index  # this month's cash the mall collected for it
    for model, pk in rows_of(tenant_a):
        listing = tenant_a.client.get(admin_url(model, "changelist"))
        page = page_text(listing)
        plural = in_language("zh-hans", model._meta.verbose_name_plural)
        assert CJK.search(plural) and plural in page, model
        assert_labels_shown(page, list_labels(listing, "zh-hans"), "zh-hans")
        detail = tenant_a.client.get(admin_url(model, "change", pk))
        assert_labels_shown(page_text(detail), form_labels(detail, "zh-hans"), "zh-hans")


def test_the_back_office_speaks_english_to_whoever_chooses_it(tenant_a):
    speaking(tenant_a.client, "en")
    assert "Merchant back office" in page_text(tenant_a.client.get(url("index")))
    for model, pk in rows_of(tenant_a):
        listing = tenant_a.client.get(admin_url(model, "changelist"))
        assert_labels_shown(page_text(listing), list_labels(listing, "en"), "en")


def test_the_login_page_actions_and_refund_page_are_chinese(in_chinese, tenant_a):
    login = page_text(Client().get(url("login")))
    assert '<html lang="zh-hans"' in login and in_language("zh-hans", "Merchant back office") in login
    refused = Client().post(url("login"), {"username": "nobody", "password": PASSWORD})
    assert CJK.search(refused.context["form"].errors["__all__"][0])
    for model in (Order, MerchantApiKey):
        listing = tenant_a.client.get(admin_url(model, "changelist"))
        actions = {str(label) for name, label in listing.context["action_form"].fields["action"].choices if name}
        assert actions and all(CJK.search(label) for label in actions), actions
    order = tenant_a.order
    refund = page_text(tenant_a.client.get(url("payments_order_refund", order.pk)))
    assert in_language("zh-hans", "Left to refund") in refund and "¥100.00" in refund


def test_a_tenants_template_takes_its_face_value_in_yuan(in_chinese, tenant_a):
    form = {
        "name": "春季满减", "description": "", "kind": "cash_off", "status": "active", "face_value_fen": "20",
        "min_spend_fen": "100", "percent_off_bp": "0", "max_discount_fen": "", "gift_description": "",
        "valid_from_0": "", "valid_from_1": "", "valid_until_0": "", "valid_until_1": "", "valid_days": "30",
        "total_quota": "", "per_member_limit": "1", "combines_with_points": "on", "stores": [tenant_a.shop.store.pk],
    }
    refused = tenant_a.client.post(admin_url(CouponTemplate, "add"), {**form, "face_value_fen": "0.015"})
    assert refused.status_code == 200
    assert CJK.search(refused.context["adminform"].form.errors["face_value_fen"][0])
    assert not CouponTemplate.objects.filter(name="春季满减").exists()

    made = tenant_a.client.post(admin_url(CouponTemplate, "add"), form)
    assert made.status_code == 302
    template = CouponTemplate.objects.get(name="春季满减")
    assert (template.face_value_fen, template.min_spend_fen, template.merchant) == (2_000, 10_000, tenant_a.merchant)
    listing = page_text(tenant_a.client.get(admin_url(CouponTemplate, "changelist")))
    assert "¥20.00" in listing and "¥100.00" in listing


def test_a_mall_funded_template_shows_its_value_in_yuan_read_only(in_chinese, tenant_a):
    mall = CouponTemplate.objects.create(
        name="商场代金券", kind="voucher", face_value_fen=5_000, valid_days=7, merchant=tenant_a.merchant, funded_by="mall",
    )
    page = page_text(tenant_a.client.get(admin_url(CouponTemplate, "change", mall.pk)))
    assert "¥50.00" in page and 'name="face_value_fen"' not in page
    assert reverse("merchant:coupons_coupontemplate_changelist") in page
