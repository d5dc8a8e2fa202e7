"""Issuing one template to many members at once (a campaign's batch): the rules of
``coupons.services.coupon_issue``, a few statements for the whole batch.

Per batch, in the caller's transaction:
- the keys already issued (a rerun) are answered with their coupons;
- members not active, or already holding the per-member limit, are refused by code;
- the quota is taken for all the rest by one conditional UPDATE (``issued_count + n <=
  total_quota``); when fewer are left, those first in line get them and the rest are
  refused ``coupon_quota_exhausted``;
- the coupons (each the member's next ``seq``) and their events go in two INSERTs
  (``core.bulk_sql.rows_insert``: no model instance per row).
A racing single issue to the same member and template (a claim at that moment) makes the
unique (template, member, seq) or the issue key fail the INSERT: the caller's batch rolls
back and the caller falls back to one member at a time.
"""

from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import Count, F, Q

from core.bulk_sql import rows_insert
from coupons.models import Coupon, CouponEvent, CouponTemplate
from coupons.services import MemberLimitReached, QuotaExhausted, TemplateEnded, TemplatePaused, _code_new, _validity
from members.models import Member
from members.ledger import MemberNotActive


@dataclass
class BulkIssue:
    coupons: dict[int, int] = field(default_factory=dict)  # member id → the coupon's id (new or issued before)
    refused: dict[int, str] = field(default_factory=dict)  # member id → the error code


def coupons_issue_bulk(
    *, template: CouponTemplate, keys: dict[int, str], via: str, at: datetime, detail: dict | None = None,
) -> BulkIssue:
    """Give each member of ``keys`` ({member id: issue key}) one coupon of ``template``."""
    result = BulkIssue()
    template.refresh_from_db(fields=["status", "total_quota", "issued_count"])
    if template.status != CouponTemplate.Status.ACTIVE:
        raise TemplatePaused()
    valid_from, valid_until = _validity(template, at)
    if valid_until <= at:
        raise TemplateEnded()
    result.coupons.update(Coupon.objects.filter(issue_key__in=list(keys.values())).values_list("member_id", "pk"))
    wanted = [member_id for member_id in keys if member_id not in result.coupons]
    active = set(Member.objects.filter(pk__in=wanted, status=Member.Status.ACTIVE).values_list("pk", flat=True))
    held = dict(
        Coupon.objects.filter(template=template, member_id__in=wanted).order_by()
        .values("member_id").annotate(n=Count("pk")).values_list("member_id", "n")
    )
    eligible = []
    for member_id in wanted:
        if member_id not in active:
            result.refused[member_id] = MemberNotActive.code
        elif held.get(member_id, 0) >= template.per_member_limit:
            result.refused[member_id] = MemberLimitReached.code
        else:
            eligible.append(member_id)
    granted = _quota_take(template, len(eligible))
    for member_id in eligible[granted:]:
        result.refused[member_id] = QuotaExhausted.code
    eligible = eligible[:granted]
    if not eligible:
        return result
    rows = [
        {"template_id": template.pk, "member_id": member_id, "seq": held.get(member_id, 0) + 1, "code": _code_new(),
         "status": Coupon.Status.ISSUED, "valid_from": valid_from, "valid_until": valid_until, "issued_via": via,
         "issue_key": keys[member_id], "created_at": at}
        for member_id in eligible
    ]
    created = rows_insert(Coupon, rows, returning=("id", "member_id"))
    event = {"kind": CouponEvent.Kind.ISSUED, "created_at": at, "detail": {"via": via, **(detail or {})}}
    rows_insert(CouponEvent, [{"coupon_id": pk, **event} for pk, _ in created])
    result.coupons.update((member_id, pk) for pk, member_id in created)
    return result


def _quota_take(template: CouponTemplate, wanted: int) -> int:
    """Take up to ``wanted`` from the template's quota; how many were taken."""
    while wanted > 0:
        taken = CouponTemplate.objects.filter(pk=template.pk).filter(
            Q(total_quota__isnull=True) | Q(issued_count__lte=F("total_quota") - wanted)
        ).update(issued_count=F("issued_count") + wanted)
        if taken:
            return wanted
        template.refresh_from_db(fields=["total_quota", "issued_count"])
        wanted = min(wanted, max(template.total_quota - template.issued_count, 0))
    return 0
