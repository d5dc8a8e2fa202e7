"""seed_demo's coupons: the mall's wake-up coupon, a points-mall coupon, a merchant's
free coupon to claim, and a draft wake-up campaign for the lapsed members.

Templates and campaigns are data staff edit in the admin; these are found by name
before they are made, so running the seed twice makes each once.
"""

from datetime import datetime

from coupons.models import Campaign, CouponTemplate
from members.models import Segment, Store

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
