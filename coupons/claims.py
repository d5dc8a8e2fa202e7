"""Free coupons a shopper claims: from the bot's 优惠券 list (领券 <n>), the H5 coupons page,
the mini-program, or a claim QR.

A template is claimed when it is listed (``claimable``) or reached through its claim QR
(``claim_code``, a random secret printed on a poster: it claims even an unlisted
template). Either way it must be active, free (a template with a points price is bought
in the points mall, never claimed), within its window and of an active merchant. The
quota and the per-member limit are ``coupon_issue``'s, and hold however many claim at
once.

A double tap must not take two coupons where a member may hold several: the H5 form's
one-time token and the mini-program's Idempotency-Key become the coupon's issue key
(``claim:<member>:<key>``), so a repeat returns the coupon the first one issued. The
bot has no such key: its claim runs in the transaction that logs the message, whose
unique MsgId makes a retried delivery answer the stored reply and do nothing
(bots.inbound.inbound_answer).
"""

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, F, Q

from core.errors import ApplicationError, Conflict
from coupons.models import Coupon, CouponTemplate
from coupons.services import (
    CODE_ALPHABET,
    QuotaExhausted,
    TemplateEnded,
    TemplateNotFound,
    TemplatePaused,
    coupon_issue,
)
from members import ledger
from members.models import Member, Merchant

# 20 characters of a 32-letter alphabet: 100 bits, far past guessing.
CLAIM_CODE_LENGTH = 20
CLAIM_CODE_MAX_LENGTH = CouponTemplate._meta.get_field("claim_code").max_length


class CouponForPoints(Conflict):
    """This coupon is sold for points in the points mall; it cannot be claimed free."""

    code = "coupon_for_points"


class ClaimNotOpen(Conflict):
    """This coupon cannot be claimed yet."""

    code = "coupon_claim_not_open"


@dataclass(frozen=True)
class ClaimOffer:
    """A free coupon as listed to one member: how many of it they hold already."""

    template: CouponTemplate
    held: int

    @property
    def can_claim(self) -> bool:
        return self.held < self.template.per_member_limit

    @property
    def stock_left(self) -> int | None:
        if self.template.total_quota is None:
            return None
        return max(self.template.total_quota - self.template.issued_count, 0)


# --- claim codes (the claim QR) -------------------------------------------------------------


def _claim_code_new() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CLAIM_CODE_LENGTH))


def template_claim_code_ensure(template: CouponTemplate) -> str:
    """The template's claim code, made now if it has none. Safe to call twice at once:
    the code is set by a conditional UPDATE, and the loser reads the winner's."""
    if template.claim_code:
        return template.claim_code
    CouponTemplate.objects.filter(pk=template.pk).filter(Q(claim_code__isnull=True) | Q(claim_code="")).update(
        claim_code=_claim_code_new()
    )
    template.claim_code = CouponTemplate.objects.values_list("claim_code", flat=True).get(pk=template.pk)
    return template.claim_code


def template_claim_code_reset(template: CouponTemplate) -> str:
    """A new claim code for the template: posters printed with the old one stop claiming."""
    template.claim_code = _claim_code_new()
    CouponTemplate.objects.filter(pk=template.pk).update(claim_code=template.claim_code)
    return template.claim_code


def template_by_claim_code(code: str) -> CouponTemplate:
    """The template a claim QR names; an unknown or malformed code is ``coupon_template_not_found``."""
    code = (code or "").strip().upper()
    if not code or len(code) > CLAIM_CODE_MAX_LENGTH or any(ch not in CODE_ALPHABET for ch in code):
        raise TemplateNotFound()
    template = CouponTemplate.objects.select_related("merchant").filter(claim_code=code).first()
    if template is None:
        raise TemplateNotFound()
    return template


# --- listing -----------------------------------------------------------------------------------


def _claim_open(at: datetime):
    """Listed free templates that can be claimed at ``at``, in a stable order (oldest
    first: a new one joins the end, so the bot's numbers do not shift under a shopper)."""
    return (
        CouponTemplate.objects.filter(claimable=True, status=CouponTemplate.Status.ACTIVE, points_price__isnull=True)
        .filter(Q(total_quota__isnull=True) | Q(issued_count__lt=F("total_quota")))
        .filter(Q(valid_days__isnull=False) | Q(valid_from__lte=at, valid_until__gt=at))
        .filter(Q(merchant__isnull=True) | Q(merchant__status=Merchant.Status.ACTIVE))
        .select_related("merchant")
        .order_by("id")
    )


def member_templates_held(*, member: Member, templates) -> dict[int, int]:
    """How many coupons of each of ``templates`` the member holds, used or not (what the
    per-member limit counts), by template id; none held: absent."""
    return dict(
        Coupon.objects.filter(member=member, template__in=templates)
        .values("template")
        .annotate(n=Count("id"))
        .values_list("template", "n")
    )


def claimable_templates(*, member: Member, at: datetime) -> list[ClaimOffer]:
    """The free coupons listed now, each with how many of it ``member`` holds."""
    templates = list(_claim_open(at))
    held = member_templates_held(member=member, templates=templates)
    return [ClaimOffer(template=template, held=held.get(template.pk, 0)) for template in templates]


def claimable_template(*, template_id: int) -> CouponTemplate:
    """A template by id, for a claim; none such is "not found". The claim checks the rest:
    an unlisted one is "not found" too (its id claims nothing, only its claim QR does),
    after a replay of the same request has been answered."""
    if not 0 < template_id < 2**63:
        raise TemplateNotFound()
    template = CouponTemplate.objects.select_related("merchant").filter(pk=template_id).first()
    if template is None:
        raise TemplateNotFound()
    return template


# --- claiming ----------------------------------------------------------------------------------


def claim_key(member: Member, request_key: str) -> str:
    """The issue key of a claim made with a client's request key (the H5 form's token, the
    mini-program's Idempotency-Key): ``claim:<member>:<key>``, a shopper's keys being their
    own. Too long for the column with its prefix: its SHA-256, the same on every retry."""
    key = f"claim:{member.pk}:{request_key}"
    if len(key) <= Coupon._meta.get_field("issue_key").max_length:
        return key
    return f"claim:{member.pk}:sha256:" + hashlib.sha256(request_key.encode()).hexdigest()


def _claimed_under(key: str, template: CouponTemplate, member: Member) -> Coupon | None:
    coupon = Coupon.objects.select_related("template").filter(issue_key=key).first()
    if coupon is not None and (coupon.template_id != template.pk or coupon.member_id != member.pk):
        raise ledger.IdempotencyConflict(extra={"idempotency_key": key})
    return coupon


def claim_check(*, template: CouponTemplate, via_code: bool, at: datetime) -> None:
    """Refuse a template that cannot be claimed at ``at`` this way, with a stable code."""
    if not (template.claimable or via_code):
        raise TemplateNotFound()
    if template.points_price is not None:
        raise CouponForPoints(extra={"points_price": template.points_price})
    if template.status != CouponTemplate.Status.ACTIVE:
        raise TemplatePaused()
    if template.merchant_id is not None and not template.merchant.is_active:
        raise ledger.MerchantNotActive(extra={"merchant": template.merchant_id})
    if template.valid_days is None:
        if at >= template.valid_until:
            raise TemplateEnded()
        if at < template.valid_from:
            raise ClaimNotOpen(extra={"valid_from": template.valid_from.isoformat()})
    if template.total_quota is not None and template.issued_count >= template.total_quota:
        raise QuotaExhausted()  # gone already; coupon_issue's conditional UPDATE decides a race


def coupon_claim(
    *, member: Member, template: CouponTemplate, via_code: bool, at: datetime, request_key: str = ""
) -> Coupon:
    """``member`` claims one free coupon of ``template``, listed or (``via_code``) reached
    through its claim QR.

    With ``request_key`` a repeat returns the coupon the first one issued, whatever
    changed since; the key used for another template (or by another member: it never
    is, the key carries the member) is ``idempotency_conflict``.
    """
    key = claim_key(member, request_key) if request_key else ""
    if key:
        replay = _claimed_under(key, template, member)
        if replay is not None:
            return replay
    claim_check(template=template, via_code=via_code, at=at)
    try:
        return coupon_issue(
            template=template, member=member, via=Coupon.Via.CLAIM, idempotency_key=key, at=at,
            detail={"claim": "qr" if via_code else "listed"},
        )
    except ApplicationError:
        # The same claim, raced and committed meanwhile: answer as it did.
        replay = _claimed_under(key, template, member) if key else None
        if replay is None:
            raise
        return replay
