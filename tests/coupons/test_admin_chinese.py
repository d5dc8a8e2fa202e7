"""The coupons pages of the mall's admin, as Chinese and English staff read them, and a
template's money typed in yuan and its discount in percent while stored as fen and bp."""

import pytest
from django.urls import reverse
from django.utils import timezone

from coupons.models import Campaign, CampaignTarget, Coupon, CouponTemplate
from tests.coupons.conftest import issue, make_template
from tests.factories import make_member
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
def book(member):
    template = make_template(name="满100减20", face_value_fen=2_000, min_spend_fen=10_000)
    coupon = issue(template, member)
    campaign = Campaign.objects.create(
        name="唤醒老顾客", template=template, message_title="好久不见", message_body="送你一张券", starts_at=timezone.now(),
    )
    target = CampaignTarget.objects.create(
        campaign=campaign, member=make_member(), group=CampaignTarget.Group.HOLDOUT, targeted_at=timezone.now(),
    )
    return {CouponTemplate: template, Coupon: coupon, Campaign: campaign, CampaignTarget: target}


def url(model, view: str, *args) -> str:
    return reverse(f"admin:coupons_{model._meta.model_name}_{view}", args=args)


MODELS = [CouponTemplate, Coupon, Campaign, CampaignTarget]


@pytest.mark.parametrize("language", ["zh-hans", "en"])
@pytest.mark.parametrize("model", MODELS, ids=lambda model: model.__name__)
def test_lists_and_pages_speak_the_staff_members_language(admin_client, book, model, language):
    speaking(admin_client, language)
    listing = admin_client.get(url(model, "changelist"))
    page = page_text(listing)
    assert f'<html lang="{language}"' in page
    plural = in_language(language, model._meta.verbose_name_plural)
    assert plural in page or plural.capitalize() in page
    assert bool(CJK.search(plural)) == (language == "zh-hans")
    assert_labels_shown(page, list_labels(listing, language), language)

    detail = admin_client.get(url(model, "change", book[model].pk))
    assert_labels_shown(page_text(detail), form_labels(detail, language), language)


def test_the_app_and_the_actions_are_chinese(admin_client, book):
    speaking(admin_client, "zh-hans")
    for model in (CouponTemplate, Coupon, Campaign):
        listing = admin_client.get(url(model, "changelist"))
        actions = {str(label) for name, label in listing.context["action_form"].fields["action"].choices if name}
        assert actions and all(CJK.search(label) for label in actions), actions
    app = in_language("zh-hans", CouponTemplate._meta.app_config.verbose_name)
    assert CJK.search(app) and app in page_text(listing)


def test_a_template_shows_its_value_in_yuan(admin_client, book):
    page = page_text(speaking(admin_client, "en").get(url(CouponTemplate, "changelist")))
    assert "¥20.00 off ¥100.00" in page
    form = speaking(admin_client, "zh-hans").get(url(CouponTemplate, "change", book[CouponTemplate].pk)).context["adminform"].form
    assert (form.instance.face_value_fen, form.instance.min_spend_fen) == (2_000, 10_000)
    assert 'value="20"' in str(form["face_value_fen"]) and 'value="100"' in str(form["min_spend_fen"])


def template_form(**values) -> dict:
    return {
        "name": "春季满减", "description": "", "kind": "cash_off", "funded_by": "mall", "status": "active",
        "face_value_fen": "20", "min_spend_fen": "100", "percent_off_bp": "0", "max_discount_fen": "",
        "gift_description": "", "valid_from_0": "", "valid_from_1": "", "valid_until_0": "", "valid_until_1": "",
        "valid_days": "30", "total_quota": "", "per_member_limit": "1", "combines_with_points": "on",
        "audit_reason": "test", **values,
    }


def test_a_template_takes_its_face_value_in_yuan_and_stores_fen(admin_client):
    response = speaking(admin_client, "zh-hans").post(url(CouponTemplate, "add"), template_form(min_spend_fen="1,000.50"))

    assert response.status_code == 302, response.context["adminform"].form.errors
    template = CouponTemplate.objects.get(name="春季满减")
    assert (template.face_value_fen, template.min_spend_fen) == (2_000, 100_050)


def test_a_template_takes_its_percentage_off_in_percent_and_stores_basis_points(admin_client):
    response = admin_client.post(url(CouponTemplate, "add"), template_form(
        kind="percent_off", face_value_fen="0", min_spend_fen="0", percent_off_bp="15", max_discount_fen="30",
    ))

    assert response.status_code == 302, response.context["adminform"].form.errors
    template = CouponTemplate.objects.get(name="春季满减")
    assert (template.percent_off_bp, template.max_discount_fen) == (1_500, 3_000)


@pytest.mark.parametrize("typed, code", [("0.015", "too_precise"), ("-5", "negative"), ("20元", "invalid"), ("1e3", "invalid")])
def test_a_face_value_finer_than_a_fen_or_not_an_amount_is_refused_in_chinese(admin_client, typed, code):
    response = speaking(admin_client, "zh-hans").post(url(CouponTemplate, "add"), template_form(face_value_fen=typed))

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors.as_data()["face_value_fen"]
    assert [error.code for error in errors] == [code]
    assert CJK.search(response.context["adminform"].form.errors["face_value_fen"][0])
    assert not CouponTemplate.objects.filter(name="春季满减").exists()
