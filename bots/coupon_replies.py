"""The bot's coupon replies: 优惠券 (my coupons, the free ones, the points mall) and
领券 <n> (claim the n-th free coupon listed). bots.commands calls them with the shopper,
the language and the H5 coupons page's link ("" while there is none).

Replies are in Chinese, or in English when the shopper wrote in English.
"""

import re

from django.utils import timezone

from core.errors import ApplicationError
from core.money import fen_to_yuan
from coupons import claims
from coupons import services as coupon_services
from coupons.models import CouponTemplate
from members.models import Member

COUPONS_LISTED = 5
CLAIMABLE_LISTED = 5
# "领券 2", "领取2", "claim #2" (after bots.commands.normalise): the n-th free coupon as listed.
CLAIM_PATTERN = re.compile(r"(?:领券|领取|claim)\s*#?\s*(\d{1,4})")


def _t(lang: str, *, zh: str, en: str) -> str:
    return en if lang == "en" else zh


def coupons(*, member: Member, lang: str, url: str) -> str:
    """The member's usable coupons (soonest to end first, at most ``COUPONS_LISTED``), the
    free ones to claim (numbered for 领券 <n>), where to see them, and how many coupons the
    points mall sells for points."""
    usable = coupon_services.member_coupons_usable(member=member)
    total = usable.count()
    if total:
        zh, en = f"您有 {total} 张可用优惠券：", f"You have {total} usable coupon{'s' if total > 1 else ''}:"
        for coupon in usable[:COUPONS_LISTED]:
            until = timezone.localtime(coupon.valid_until).strftime("%Y-%m-%d")
            zh += f"\n· {coupon.template.name}（{coupon_value_zh(coupon.template)}），{until} 前有效"
            en += f"\n· {coupon.template.name} ({coupon_value_en(coupon.template)}), valid until {until}"
        if total > COUPONS_LISTED:
            zh += f"\n……还有 {total - COUPONS_LISTED} 张"
            en += f"\n… and {total - COUPONS_LISTED} more"
    else:
        zh, en = "您目前还没有优惠券。", "Coupons: you have none yet."
    offers = claims.claimable_templates(member=member, at=timezone.now())
    if offers:
        listed_zh, listed_en = _offers_listed(offers)
        zh += "\n" + listed_zh
        en += "\n" + listed_en
    if url:
        zh += f"\n查看和使用优惠券：{url}"
        en += f"\nSee and use your coupons: {url}"
    else:
        zh += "\n在小程序“我的优惠券”中查看，到店结账时出示券码即可使用。"
        en += '\nSee them under "My coupons" in our mini-program, and show a coupon\'s code at the till to use it.'
    on_sale = coupon_services.coupon_catalogue().count()
    if on_sale:
        zh += f"\n积分商城有 {on_sale} 种优惠券可用积分兑换。"
        en += f"\nThe points mall has {on_sale} coupon{'s' if on_sale > 1 else ''} to exchange for points."
    return _t(lang, zh=zh, en=en)


def _offers_listed(offers: list[claims.ClaimOffer]) -> tuple[str, str]:
    """The free coupons numbered as 领券 <n> takes them (the listing's order is stable:
    oldest first, a new one joins the end), and how to claim one."""
    zh, en = "可免费领取：", "Free to claim:"
    for n, offer in enumerate(offers[:CLAIMABLE_LISTED], start=1):
        template = offer.template
        zh += f"\n{n}. {template.name}（{coupon_value_zh(template)}）" + ("（已领取）" if not offer.can_claim else "")
        en += f"\n{n}. {template.name} ({coupon_value_en(template)})" + (" (claimed)" if not offer.can_claim else "")
    if len(offers) > CLAIMABLE_LISTED:
        zh += f"\n……还有 {len(offers) - CLAIMABLE_LISTED} 种"
        en += f"\n… and {len(offers) - CLAIMABLE_LISTED} more"
    zh += "\n发送“领券 1”领取第 1 张，以此类推。"
    en += '\nSend "claim 1" to claim the first, and so on.'
    return zh, en


# What a refused claim is told, by the coupon service's error code.
_CLAIM_REFUSED = {
    "coupon_member_limit_reached": ("您已经领取过这张券了。", "You have already claimed this one."),
    "coupon_quota_exhausted": ("这张券已经被领完了。", "All of these have been claimed."),
    "coupon_template_paused": ("这张券暂停发放。", "This coupon is not being given out now."),
    "coupon_template_ended": ("这张券的活动已结束。", "This coupon's offer has ended."),
    "coupon_claim_not_open": ("这张券还未开始领取。", "This coupon cannot be claimed yet."),
    "merchant_not_active": ("该商户暂停发券。", "This shop is not giving out coupons now."),
}


def claim(*, member: Member, lang: str, url: str, arg: str = "") -> str:
    """领券 <n>: claim the n-th free coupon listed; without n, the list.

    The caller runs it in the transaction that logs the message: WeChat's retry of the same
    message (same MsgId) answers the stored reply and claims nothing (bots.inbound). A
    banned member's claim raises members.ledger.MemberNotActive for the caller to answer.
    """
    now = timezone.now()
    offers = claims.claimable_templates(member=member, at=now)
    if not offers:
        return _t(lang, zh="暂时没有可免费领取的优惠券。", en="No free coupons to claim right now.")
    listed_zh, listed_en = _offers_listed(offers)
    if not arg:
        return _t(lang, zh=listed_zh, en=listed_en)
    n = int(arg)
    if not 1 <= n <= len(offers):
        return _t(lang, zh=f"没有第 {n} 张可领的券。\n{listed_zh}", en=f"There is no free coupon number {n}.\n{listed_en}")
    template = offers[n - 1].template
    try:
        coupon = claims.coupon_claim(member=member, template=template, via_code=False, at=now)
    except ApplicationError as exc:
        if exc.code == "member_not_active":
            raise
        zh, en = _CLAIM_REFUSED.get(exc.code, ("抱歉，没有领到，请稍后再试。", "Sorry, that did not go through; please try again."))
        return _t(lang, zh=f"{template.name}：{zh}", en=f"{template.name}: {en}")
    until = timezone.localtime(coupon.valid_until).strftime("%Y-%m-%d")
    zh = f"领取成功！{template.name}（{coupon_value_zh(template)}），{until} 前有效。"
    en = f"Claimed: {template.name} ({coupon_value_en(template)}), valid until {until}."
    if url:
        zh += f"\n到店结账时打开优惠券出示券码：{url}"
        en += f"\nAt the till, open it and show its code: {url}"
    else:
        zh += "\n到店结账时在小程序“我的优惠券”中出示券码即可使用。"
        en += '\nAt the till, show its code from "My coupons" in our mini-program.'
    return _t(lang, zh=zh, en=en)


# --- a coupon's value in words ----------------------------------------------------------


def _yuan(amount_fen: int) -> str:
    """2000 → "20", 1250 → "12.5": a price as people say it."""
    return fen_to_yuan(amount_fen).rstrip("0").rstrip(".")


def _decimal(value: int, places: int) -> str:
    """``value`` / 10**places written without trailing zeros: (85, 1) → "8.5", (80, 1) → "8"."""
    whole, rest = divmod(value, 10**places)
    rest_digits = f"{rest:0{places}d}".rstrip("0")
    return f"{whole}.{rest_digits}" if rest_digits else str(whole)


def coupon_value_zh(template: CouponTemplate) -> str:
    kind = CouponTemplate.Kind
    if template.kind == kind.CASH_OFF:
        if not template.min_spend_fen:
            return f"立减{_yuan(template.face_value_fen)}元"
        return f"满{_yuan(template.min_spend_fen)}减{_yuan(template.face_value_fen)}元"
    if template.kind == kind.PERCENT_OFF:
        # 1500 bp off is "8.5 折": the shopper pays 85 %.
        return f"{_decimal(10000 - template.percent_off_bp, 3)}折"
    if template.kind == kind.VOUCHER:
        return f"{_yuan(template.face_value_fen)}元代金券"
    return f"礼品：{template.gift_description}"


def coupon_value_en(template: CouponTemplate) -> str:
    kind = CouponTemplate.Kind
    if template.kind == kind.CASH_OFF:
        if not template.min_spend_fen:
            return f"¥{_yuan(template.face_value_fen)} off"
        return f"¥{_yuan(template.face_value_fen)} off ¥{_yuan(template.min_spend_fen)}"
    if template.kind == kind.PERCENT_OFF:
        return f"{_decimal(template.percent_off_bp, 2)}% off"
    if template.kind == kind.VOUCHER:
        return f"¥{_yuan(template.face_value_fen)} voucher"
    return f"gift: {template.gift_description}"
