"""seed_demo's coupons: the mall's wake-up coupon, a points-mall coupon, a merchant's
free coupon to claim, and a draft wake-up campaign for the lapsed members.

Templates and campaigns are data staff edit in the admin; these are found by name
before they are made, so running the seed twice makes each once.
"""

from datetime import datetime, timedelta
from random import Random

from django.db import transaction

from core.errors import ApplicationError
from coupons import campaigns, claims
from coupons import services as coupon_services
from coupons.models import Campaign, CampaignTarget, Coupon, CouponRedemption, CouponTemplate
from members.models import Member, Segment, Store
from payments import services as sales

WAKE_UP = {
    "name": "新品尝鲜券 · 满100减30",
    "description": "好久不见！商场上新了，满100元减30元，领券后30天内全场可用。",
    "kind": CouponTemplate.Kind.CASH_OFF,
    "face_value_fen": 3_000,
    "min_spend_fen": 10_000,
    "valid_days": 30,
    "per_member_limit": 1,
    "funded_by": CouponTemplate.FundedBy.MALL,
}
POINTS_MALL = {
    "name": "积分兑换 · 10元代金券",
    "description": "500积分兑换一张10元代金券，兑换后30天内全场可用。",
    "kind": CouponTemplate.Kind.VOUCHER,
    "face_value_fen": 1_000,
    "valid_days": 30,
    "points_price": 500,
    "total_quota": 1_000,
    "per_member_limit": 3,
    "funded_by": CouponTemplate.FundedBy.MALL,
}
# A merchant's own coupon, free to claim in the bot, the H5 page and the mini-program;
# accepted at its store, paid for by the merchant.
CLAIMABLE = {
    "name": "星巴克 · 满50减8",
    "description": "免费领取，星巴克门店消费满50元减8元，领取后14天内有效。",
    "kind": CouponTemplate.Kind.CASH_OFF,
    "face_value_fen": 800,
    "min_spend_fen": 5_000,
    "valid_days": 14,
    "total_quota": 500,
    "per_member_limit": 1,
    "funded_by": CouponTemplate.FundedBy.MERCHANT,
    "claimable": True,
}
CAMPAIGN = {
    "name": "唤醒 · 120天未到店会员 · 新品尝鲜券",
    "segments": [Segment.LAPSED.value],
    "holdout_pct": 10,
    "cooldown_days": 90,
    "message_title": "好久不见，送你一张新品尝鲜券",
    "message_body": "商场上新了！送你一张满100减30的新品尝鲜券，30天内到店出示券码即可使用。",
}


def _template(fields: dict, *, merchant=None, stores: list[Store] = ()) -> CouponTemplate:
    template = CouponTemplate.objects.filter(name=fields["name"], merchant=merchant).first()
    if template is None:
        template = CouponTemplate.objects.create(merchant=merchant, **fields)
        template.stores.set(stores)
    return template


def templates_ensure(*, claim_store: Store) -> dict[str, CouponTemplate]:
    return {
        "wake_up": _template(WAKE_UP),
        "points_mall": _template(POINTS_MALL),
        "claimable": _template(CLAIMABLE, merchant=claim_store.merchant, stores=[claim_store]),
    }


def wake_up_campaign_ensure(*, template: CouponTemplate, staff, now: datetime) -> Campaign:
    """The wake-up campaign, a draft: staff make it active and run it from the admin."""
    campaign = Campaign.objects.filter(name=CAMPAIGN["name"], merchant__isnull=True).first()
    if campaign is None:
        campaign = Campaign.objects.create(
            template=template, starts_at=now, status=Campaign.Status.DRAFT, created_by=staff, **CAMPAIGN
        )
    return campaign


# A wake-up campaign that ran in the past, so its results have a story: the lapsed
# members it reached, a treated group that came back more than the holdout.
PAST_CAMPAIGN = {
    "name": "唤醒 · 秋季回归礼 · 满100减30",
    "segments": [Segment.LAPSED.value],
    "holdout_pct": 20,
    "cooldown_days": 90,
    "message_title": "好久不见，秋季回归礼已到账",
    "message_body": "送你一张满100减30的回归礼券，30天内到店出示券码即可使用。",
}
PAST_WAKE_UP = {**WAKE_UP, "name": "秋季回归礼 · 满100减30"}


def past_campaign_run(*, staff, at: datetime) -> Campaign:
    """The past wake-up campaign, run at ``at`` (once: a rerun targets nobody new)."""
    template = _template(PAST_WAKE_UP)
    campaign = Campaign.objects.filter(name=PAST_CAMPAIGN["name"], merchant__isnull=True).first()
    if campaign is None:
        campaign = Campaign.objects.create(
            template=template, starts_at=at - timedelta(hours=1), ends_at=at + timedelta(days=30),
            status=Campaign.Status.ACTIVE, created_by=staff, **PAST_CAMPAIGN,
        )
    if not campaign.targets.exists():
        campaigns.campaign_run(campaign=campaign, at=at)
    return campaign


def campaign_comebacks(*, campaign: Campaign, rng: Random, stores: list[Store]) -> int:
    """Some of the campaign's targets come back within its 30 days: a third of the treated
    (most of them with the coupon, at the till with their member code), a tenth of the
    holdout. Sales through the real services at those instants; keys make it once."""
    came = 0
    targets = list(campaign.targets.select_related("member", "coupon").order_by("member_id"))
    with transaction.atomic():
        for target in targets:
            treated = target.group == CampaignTarget.Group.TREATED
            if rng.random() >= (0.35 if treated else 0.10):
                continue
            at = target.targeted_at + timedelta(days=rng.uniform(1, 25), hours=rng.uniform(0, 3))
            store = rng.choice(stores)
            amount = rng.randint(120, 800) * 100
            key = f"demo:comeback:{campaign.pk}:{target.member_id}"
            if PurchaseKeys.booked(store, key):
                continue
            try:
                with transaction.atomic():
                    sales.purchase_record(
                        merchant=store.merchant, store=store, member=target.member, amount_fen=amount, idempotency_key=key,
                        order_ref=f"DC{campaign.pk}-{target.member_id}", member_present=True, at=at, push=False,
                    )
                    coupon = target.coupon
                    if treated and coupon is not None and coupon.status == Coupon.Status.ISSUED:
                        coupon_services.coupon_redeem(
                            coupon=coupon, merchant=store.merchant, store=store, amount_fen=amount,
                            idempotency_key=f"demo:coupon:{coupon.pk}", order_ref=f"DC{campaign.pk}-{target.member_id}",
                            authorised_by="member_code", at=at,
                        )
            except ApplicationError:
                continue
            came += 1
    return came


class PurchaseKeys:
    @staticmethod
    def booked(store: Store, key: str) -> bool:
        from members.models import PointsTransaction

        return PointsTransaction.objects.filter(idempotency_key=sales.ledger_key(store.merchant, key)).exists()


def claims_book(*, template: CouponTemplate, members: list[Member], rng: Random, now: datetime) -> tuple[int, int]:
    """A few shoppers claim the merchant's free coupon over the last two weeks; some use
    it at its shop with a sale. (claimed, redeemed)"""
    store = template.stores.select_related("merchant", "plaza").first()
    claimed = redeemed = 0
    held = set(Coupon.objects.filter(template=template).values_list("member_id", flat=True))
    with transaction.atomic():
        for member in members:
            # Drawn whether or not the member claimed already, so a rerun draws the same.
            claims_now, uses = rng.random() < 0.06, rng.random() < 0.5
            at = now - timedelta(days=rng.uniform(1, 13), hours=rng.uniform(0, 8))
            used_at = min(at + timedelta(days=rng.uniform(0.1, 1)), now - timedelta(minutes=10))
            amount = rng.randint(60, 200) * 100
            if not claims_now or member.pk in held:
                continue
            try:
                with transaction.atomic():
                    coupon = claims.coupon_claim(member=member, template=template, via_code=False, at=at,
                                                 request_key=f"demo:claim:{template.pk}")
                claimed += 1
                if store is None or not uses:
                    continue
                with transaction.atomic():
                    sales.purchase_record(
                        merchant=store.merchant, store=store, member=member, amount_fen=amount,
                        idempotency_key=f"demo:claim-sale:{coupon.pk}", order_ref=f"DK{coupon.pk}", member_present=True,
                        at=used_at, push=False,
                    )
                    coupon_services.coupon_redeem(
                        coupon=coupon, merchant=store.merchant, store=store, amount_fen=amount,
                        idempotency_key=f"demo:coupon:{coupon.pk}", order_ref=f"DK{coupon.pk}", authorised_by="coupon_code",
                        at=used_at,
                    )
                redeemed += 1
            except ApplicationError:
                continue
    return claimed, redeemed


def coupon_figures() -> dict[str, int]:
    return {"coupons": Coupon.objects.count(), "coupon redemptions": CouponRedemption.objects.count()}
