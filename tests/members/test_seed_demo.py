"""seed_demo's mall has a past: every lifecycle segment, lapsed regulars for a draft
wake-up campaign staff can run, a points mall the demo shopper can buy from, and sales
that agree across the ledger, the merchants' sales and the visits."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db.models import Count
from django.utils import timezone

from coupons import campaign_delivery, campaigns
from coupons import services as coupons
from coupons.models import Campaign, CampaignTarget, Coupon, CouponTemplate
from members import ledger
from members.management.commands import _seed_coupons as seed_coupons
from members.management.commands._seed_shoppers import PERSONAS
from members.models import Identity, Member, MemberSegment, PointsTransaction, Push, Segment, Store, Visit
from payments.models import Purchase
from tests.factories import assert_ledger_invariants

pytestmark = pytest.mark.django_db

LAPSED_PERSONAS = next(persona.count for persona in PERSONAS if persona.segment == Segment.LAPSED)


@pytest.fixture
def demo(settings):
    settings.DEBUG = True
    call_command("seed_demo", stdout=StringIO())


def demo_shopper() -> Member:
    return Identity.objects.get(channel=Identity.Channel.WECHAT_OPENID, external_id="demo-openid-000").member


def test_the_demo_has_every_lifecycle_segment_and_the_lapsed_regulars(demo):
    sizes = dict(MemberSegment.objects.values_list("segment").annotate(n=Count("pk")))

    assert set(sizes) == set(Segment.values), sizes
    assert sizes[Segment.LAPSED] >= LAPSED_PERSONAS
    assert MemberSegment.objects.filter(high_value=True).exists()
    # Lapsed: nobody of them came within LAPSED_AFTER_DAYS.
    lapsed = MemberSegment.objects.filter(segment=Segment.LAPSED).values_list("member_id", flat=True)
    since = timezone.now() - timedelta(days=120)
    assert not Visit.objects.filter(member_id__in=lapsed, occurred_at__gt=since).exists()


def test_each_demo_sale_is_one_earn_one_purchase_and_one_visit_of_the_same_moment(demo):
    earns = PointsTransaction.objects.filter(kind=PointsTransaction.Kind.EARN)
    purchases = Purchase.objects.select_related("earn")

    assert earns.count() == purchases.count() == Visit.objects.filter(kind=Visit.Kind.PURCHASE).count() > 100
    assert all(p.created_at == p.earn.created_at and p.amount_fen == p.earn.amount_fen for p in purchases)
    assert set(Visit.objects.filter(kind=Visit.Kind.PURCHASE).values_list("member_id", "occurred_at", "amount_fen")) == set(
        purchases.values_list("member_id", "created_at", "amount_fen")
    )
    assert earns.filter(created_at__lt=timezone.now() - timedelta(days=120)).exists()  # a past, not one day
    assert_ledger_invariants()


def test_running_the_seed_again_duplicates_nothing(demo, settings):
    tables = (Member, Purchase, Visit, PointsTransaction, CouponTemplate, Campaign, MemberSegment)
    before = {model.__name__: model.objects.count() for model in tables}

    call_command("seed_demo", stdout=StringIO())

    assert {model.__name__: model.objects.count() for model in tables} == before
    assert_ledger_invariants()


def test_the_wake_up_campaign_is_a_draft_for_the_lapsed_that_staff_can_run(demo):
    campaign = Campaign.objects.get(name=seed_coupons.CAMPAIGN["name"])
    template = campaign.template
    assert (campaign.status, campaign.segments, campaign.holdout_pct) == (Campaign.Status.DRAFT, ["lapsed"], 10)
    assert (template.funded_by, template.valid_days, template.merchant_id) == (CouponTemplate.FundedBy.MALL, 30, None)
    lapsed = set(MemberSegment.objects.filter(segment=Segment.LAPSED).values_list("member_id", flat=True))
    with pytest.raises(campaigns.CampaignNotActive):
        campaigns.campaign_run(campaign=campaign)

    campaign.status = Campaign.Status.ACTIVE  # what staff do in the admin
    campaign.save(update_fields=["status"])
    summary = campaigns.campaign_run(campaign=campaign)

    targets = CampaignTarget.objects.filter(campaign=campaign)
    assert set(targets.values_list("member_id", flat=True)) == lapsed
    assert summary.targeted == len(lapsed) and summary.issued == len(lapsed) - summary.holdout
    treated = targets.filter(group=CampaignTarget.Group.TREATED)
    assert not treated.filter(coupon__isnull=True).exists() and not treated.filter(push__isnull=True).exists()
    held_out = targets.filter(group=CampaignTarget.Group.HOLDOUT).values_list("member_id", flat=True)
    assert not Coupon.objects.filter(member_id__in=held_out, template=template).exists()
    assert not Push.objects.filter(member_id__in=held_out, event=campaign_delivery.PUSH_EVENT).exists()


def test_the_demo_shopper_exchanges_points_for_a_coupon_and_uses_it_at_the_demo_pos(demo):
    shopper = demo_shopper()
    template = CouponTemplate.objects.get(name=seed_coupons.POINTS_MALL["name"])
    store = Store.objects.select_related("merchant").get(code="sh-starbucks")
    balance = ledger.member_points_spendable(member=shopper)
    assert template in coupons.coupon_catalogue() and balance >= template.points_price

    coupon = coupons.coupon_exchange(member=shopper, template=template, idempotency_key="demo-exchange")
    redemption = coupons.coupon_redeem(
        coupon=coupon, merchant=store.merchant, store=store, amount_fen=5_000, idempotency_key="demo-till",
        authorised_by="coupon_code",
    )

    assert ledger.member_points_spendable(member=shopper) == balance - template.points_price
    assert redemption.discount_fen == 1_000


def test_a_merchants_free_coupon_is_listed_to_claim_at_its_own_store(demo):
    template = CouponTemplate.objects.get(name=seed_coupons.CLAIMABLE["name"])

    assert template.claimable and template.points_price is None
    assert (template.funded_by, template.merchant.name) == (CouponTemplate.FundedBy.MERCHANT, "星巴克 Starbucks")
    assert list(template.stores.values_list("code", flat=True)) == ["sh-starbucks"]
