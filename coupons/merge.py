"""A merged member's coupons follow the person (members.identity.member_merge).

Every coupon of ``source`` — usable or not, so the history stays whole — moves to
``target`` and takes the next free number (``seq``) of its template there, so the unique
(template, member, seq) holds. The person may then hold more than a template's
per-member limit: each was given legitimately to one of their two accounts, and taking
one away would lose something they own. A campaign's targeting moves too, unless the
target was targeted by the same campaign (then both rows stay, so the groups drawn
remain as they were). Runs inside the merge's transaction; a second run finds nothing
left to move.
"""

from datetime import datetime

from django.db.models import Max
from django.utils import timezone

from coupons.models import CampaignTarget, Coupon, CouponEvent
from members.models import Member


def coupons_move(*, source: Member, target: Member, at: datetime | None = None) -> int:
    """Move ``source``'s coupons and campaign targets to ``target``; how many coupons moved."""
    now = at or timezone.now()
    coupons = list(Coupon.objects.select_for_update().filter(member=source).order_by("template_id", "seq"))
    if not coupons:
        _targets_move(source, target)
        return 0
    template_ids = {coupon.template_id for coupon in coupons}
    next_seq = {
        row["template_id"]: row["top"]
        for row in Coupon.objects.filter(member=target, template_id__in=template_ids)
        .values("template_id").annotate(top=Max("seq"))
    }
    events = []
    for coupon in coupons:
        seq = next_seq.get(coupon.template_id, 0) + 1
        next_seq[coupon.template_id] = seq
        Coupon.objects.filter(pk=coupon.pk).update(member=target, seq=seq)
        events.append(CouponEvent(
            coupon=coupon, kind=CouponEvent.Kind.MOVED, created_at=now,
            detail={"from_member": source.pk, "to_member": target.pk, "seq": seq},
        ))
    CouponEvent.objects.bulk_create(events)
    _targets_move(source, target)
    return len(coupons)


def _targets_move(source: Member, target: Member) -> None:
    taken = CampaignTarget.objects.filter(member=target).values("campaign_id")
    CampaignTarget.objects.filter(member=source).exclude(campaign_id__in=taken).update(member=target)
