"""Campaigns: a coupon and a push to an audience, with a random holdout that gets nothing.

A run (``campaign_run``) has two phases, each in batches and each safe to repeat:

1. **Target.** The audience is chosen in SQL, one query per batch of member ids: active
   members matching the campaign's filters, not yet targeted by this campaign, and not
   targeted by *any* campaign within this campaign's cooldown. Each is written as a
   CampaignTarget (one bulk insert per batch; unique per campaign and member, so a
   rerun or a concurrent run adds nothing twice), in the treated group or the holdout.
2. **Deliver** (``coupons.campaign_delivery``). Each batch of treated targets still
   without a coupon gets, in one transaction, the coupons (issued in bulk with one
   issue's rules, keyed ``campaign:<campaign>:<member>``), the pushes (the outbox, event
   ``wake_up``, the same key; one delivery task per batch) and the links on the targets.
   Keys make a run killed half-way and run again issue and send nothing twice. A coupon
   the rules refuse (quota gone, member limit, member not active, validity over) is
   recorded on the target, not retried; a paused template makes delivery wait.

The holdout is drawn once per member and campaign from a hash of both, so a member never
moves between groups; it gets a target row (it is in the audience, and in the cooldown)
and nothing else.

A campaign with ``max_targets`` never has more targets than that, holdout included, over
all its runs: each batch is written under the campaign's row lock (FOR NO KEY UPDATE),
after counting the targets written since the batch before, so concurrent runs take turns
batch by batch and the cap is exact on PostgreSQL (SQLite serialises writers anyway). A
cap set or lowered in the admin binds a capped run from its next batch, an uncapped one
from the next run.

A merchant's campaign (``merchant`` set) may narrow its audience to the merchant's own
customers (a purchase or payment at any of its stores) or to members who never bought
there, and only ever issues the merchant's own, merchant-funded coupon.

Results (``campaign_results``) compare the groups over the ``window_days`` after each
member was targeted: who came back (a check-in, purchase or payment) and what they spent.
The difference is the campaign's *incremental* effect, with a 95 % confidence interval
(normal approximations: two proportions; Welch for the mean spend).
"""

import hashlib
import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import BigIntegerField, Case, Count, Exists, FloatField, Max, OuterRef, Q, Subquery, Sum, Value, When
from django.db.models.functions import Cast, Coalesce
from django.utils import timezone

from core.bulk_sql import rows_insert
from core.jobs import deadline_check
from core.errors import Conflict
from coupons import campaign_delivery
from coupons.models import Campaign, CampaignTarget, Coupon, CouponTemplate
from members.models import Member, Push, Segment, Visit

logger = logging.getLogger(__name__)

HIGH_VALUE = "high_value"
# Segment values a campaign's audience may name: the lifecycle segments and the tag.
AUDIENCE_SEGMENTS = {*Segment.values, HIGH_VALUE}
# The holdout is drawn in units of 1/HOLDOUT_SCALE: holdout_pct × 100 of 10,000.
HOLDOUT_SCALE = 10_000
VISIT_KINDS = (Visit.Kind.CHECKIN, Visit.Kind.PURCHASE, Visit.Kind.PAYMENT)
PURCHASE_KINDS = (Visit.Kind.PURCHASE, Visit.Kind.PAYMENT)
# Two-sided 95 %.
Z_95 = 1.959963984540054


class CampaignNotActive(Conflict):
    """This campaign is not running now: it is not active, or outside its start and end."""

    code = "campaign_not_active"


class CampaignTemplateNotMerchants(Conflict):
    """A merchant's campaign issues only that merchant's own, merchant-funded coupon."""

    code = "campaign_template_not_merchants"


@dataclass(frozen=True)
class RunSummary:
    targeted: int  # new targets written by this run, both groups
    holdout: int  # of which held out
    issued: int  # treated targets given their coupon and push by this run
    refused: int  # treated targets the coupon service refused


# --- the draw and the audience ----------------------------------------------------------


def holdout_drawn(*, campaign_id: int, holdout_pct: int, member_id: int) -> bool:
    """Whether the member is in the campaign's holdout: a stable hash of both ids, so the
    draw is the same on every run and every machine, and independent across campaigns."""
    digest = hashlib.sha256(f"{campaign_id}:{member_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % HOLDOUT_SCALE < holdout_pct * (HOLDOUT_SCALE // 100)


def campaign_audience(*, campaign: Campaign, at: datetime):
    """The members the campaign would target now (a queryset, not evaluated)."""
    members = Member.objects.filter(status=Member.Status.ACTIVE)
    lifecycle = [s for s in campaign.segments if s != HIGH_VALUE]
    if lifecycle:
        members = members.filter(segment__segment__in=lifecycle)
    if HIGH_VALUE in campaign.segments:
        members = members.filter(segment__high_value=True)
    if campaign.lapsed_min_days is not None:
        # As members.segments counts "not seen": no visit since, and joined before.
        since = at - timedelta(days=campaign.lapsed_min_days)
        seen = Visit.objects.filter(member=OuterRef("pk"), kind__in=VISIT_KINDS, occurred_at__gt=since)
        members = members.filter(created_at__lte=since).exclude(Exists(seen))
    if campaign.plaza_id is not None:
        members = members.filter(last_visit_plaza_id=campaign.plaza_id)
    if campaign.tier_id is not None:
        members = members.filter(tier_id=campaign.tier_id)
    if campaign.merchant_scope:
        bought = Visit.objects.filter(member=OuterRef("pk"), kind__in=PURCHASE_KINDS, store__merchant_id=campaign.merchant_id)
        if campaign.merchant_scope == Campaign.MerchantScope.CUSTOMERS:
            members = members.filter(Exists(bought))
        else:
            members = members.exclude(Exists(bought))
    cooled_since = at - timedelta(days=campaign.cooldown_days)
    # An unsaved campaign (a merchant's request being counted) has no targets of its own yet.
    reached = Q(targeted_at__gt=cooled_since) | (Q(campaign=campaign) if campaign.pk else Q(pk__in=[]))
    targeted = CampaignTarget.objects.filter(member=OuterRef("pk")).filter(reached)
    return members.exclude(Exists(targeted))


def campaign_segments_check(segments) -> list[str]:
    """The audience's segment list, or ValueError naming what is not a segment."""
    if not isinstance(segments, list) or not all(isinstance(s, str) for s in segments):
        raise ValueError("segments must be a list of segment names")
    unknown = sorted(set(segments) - AUDIENCE_SEGMENTS)
    if unknown:
        raise ValueError(f"not segments: {', '.join(unknown)} (known: {', '.join(sorted(AUDIENCE_SEGMENTS))})")
    return segments


# --- the run ----------------------------------------------------------------------------


def campaign_run(
    *, campaign: Campaign, at: datetime | None = None, batch_size: int = 1000, progress=None, deadline=None,
) -> RunSummary:
    """Target the campaign's audience and deliver to the treated group. Safe to rerun,
    concurrently too: see the module's docstring. ``progress(phase, done, total)``, when
    given, is told after each batch ("target", then "deliver"; the totals cost a count);
    past ``deadline`` (core.jobs) the run stops after a batch with DeadlinePassed."""
    now = at or timezone.now()
    campaign.refresh_from_db()
    campaign_running_check(campaign=campaign, at=now)
    template = campaign.template
    if campaign.merchant_id is not None and (
        template.merchant_id != campaign.merchant_id or template.funded_by != CouponTemplate.FundedBy.MERCHANT
    ):
        raise CampaignTemplateNotMerchants(extra={"campaign_id": campaign.pk})
    told = _progress_of(progress, "target", lambda: campaign_audience(campaign=campaign, at=now).count())
    if campaign.max_targets is None:
        targeted, holdout = _target(campaign, now, batch_size, told, deadline)
    else:
        targeted, holdout = _target_capped(campaign, now, batch_size, told, deadline)
    if campaign.template.status == CouponTemplate.Status.ACTIVE:
        told = _progress_of(progress, "deliver", lambda: campaign_delivery.waiting(campaign).count())
        issued, refused = campaign_delivery.deliver(campaign, now, batch_size, told, deadline)
    else:
        # A pause is for a while: the treated wait for their coupon (the next run after
        # the template is resumed), rather than each being refused it for good.
        logger.warning("campaign %s: template %s is paused, delivery waits", campaign.pk, campaign.template_id)
        issued = refused = 0
    summary = RunSummary(targeted=targeted, holdout=holdout, issued=issued, refused=refused)
    logger.info("campaign %s run: %s", campaign.pk, summary)
    return summary


def _progress_of(progress, phase: str, total):
    """A per-batch callback ``told(done)`` for ``phase``, counting ``total()`` once; or None."""
    if progress is None:
        return None
    size = total()
    progress(phase, 0, size)
    return lambda done: progress(phase, done, max(size, done))


def campaign_running_check(*, campaign: Campaign, at: datetime) -> None:
    """CampaignNotActive unless the campaign is active and ``at`` is within its start and end."""
    if campaign.status != Campaign.Status.ACTIVE or at < campaign.starts_at or (
        campaign.ends_at is not None and at >= campaign.ends_at
    ):
        raise CampaignNotActive(extra={"status": campaign.status})


def _target(campaign: Campaign, now: datetime, batch_size: int, told=None, deadline=None) -> tuple[int, int]:
    audience = campaign_audience(campaign=campaign, at=now).order_by("pk").values_list("pk", flat=True)
    targeted = holdout = 0
    last_id = 0
    while True:
        member_ids = list(audience.filter(pk__gt=last_id)[:batch_size])
        if not member_ids:
            return targeted, holdout
        rows = _target_rows(campaign, member_ids, now)
        # A concurrent run may have written some: theirs stand (the same draw).
        rows_insert(CampaignTarget, rows, ignore_conflicts=True)
        targeted += len(rows)
        holdout += sum(row["group"] == CampaignTarget.Group.HOLDOUT for row in rows)
        last_id = member_ids[-1]
        if told is not None:
            told(targeted)
        deadline_check(deadline)


def _target_capped(campaign: Campaign, now: datetime, batch_size: int, told=None, deadline=None) -> tuple[int, int]:
    """As _target, never past max_targets in all: see the module's docstring.

    Under the lock, the targets of this campaign are written one batch at a time and
    committed before the next batch's count, so ids only grow: counting those above the
    last id seen keeps the tally exact without recounting the whole campaign each batch.
    """
    audience = campaign_audience(campaign=campaign, at=now).order_by("pk").values_list("pk", flat=True)
    targeted = holdout = 0
    last_id = tally = seen_target_id = 0
    while True:
        with transaction.atomic():
            cap = Campaign.objects.select_for_update(no_key=True).values_list("max_targets", flat=True).get(pk=campaign.pk)
            since = CampaignTarget.objects.filter(campaign=campaign, pk__gt=seen_target_id).aggregate(n=Count("pk"), top=Max("pk"))
            tally, seen_target_id = tally + since["n"], since["top"] or seen_target_id
            room = batch_size if cap is None else min(batch_size, cap - tally)
            member_ids = list(audience.filter(pk__gt=last_id)[:room]) if room > 0 else []
            if not member_ids:
                return targeted, holdout
            rows = _target_rows(campaign, member_ids, now)
            rows_insert(CampaignTarget, rows, ignore_conflicts=True)
        targeted += len(rows)
        holdout += sum(row["group"] == CampaignTarget.Group.HOLDOUT for row in rows)
        last_id = member_ids[-1]
        if told is not None:
            told(targeted)
        deadline_check(deadline)


def _target_rows(campaign: Campaign, member_ids: list[int], now: datetime) -> list[dict]:
    return [
        {"campaign_id": campaign.pk, "member_id": member_id, "targeted_at": now,
         "group": CampaignTarget.Group.HOLDOUT
         if holdout_drawn(campaign_id=campaign.pk, holdout_pct=campaign.holdout_pct, member_id=member_id)
         else CampaignTarget.Group.TREATED}
        for member_id in member_ids
    ]


def campaigns_end_due(*, at: datetime | None = None) -> int:
    """Mark active campaigns past their end ended; how many."""
    now = at or timezone.now()
    return Campaign.objects.filter(status=Campaign.Status.ACTIVE, ends_at__lte=now).update(status=Campaign.Status.ENDED)


def campaigns_due(*, at: datetime | None = None):
    """Active campaigns that have started (and not ended), oldest first."""
    now = at or timezone.now()
    return Campaign.objects.filter(status=Campaign.Status.ACTIVE, starts_at__lte=now).filter(
        Q(ends_at__isnull=True) | Q(ends_at__gt=now)
    ).order_by("pk")


def campaigns_run_due(*, at: datetime | None = None, deadline=None) -> dict[int, RunSummary]:
    """Run every active campaign within its window; mark those past their end ended.
    Past ``deadline`` it stops after a batch with DeadlinePassed (the next slice goes on)."""
    now = at or timezone.now()
    campaigns_end_due(at=now)
    summaries = {}
    for campaign in campaigns_due(at=now):
        try:
            summaries[campaign.pk] = campaign_run(campaign=campaign, at=now, deadline=deadline)
        except CampaignNotActive:
            continue  # paused or ended by staff since the query
        except CampaignTemplateNotMerchants:
            logger.error("campaign %s: a merchant's campaign with a coupon not its own; not run", campaign.pk)
    return summaries


# --- results ----------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupResult:
    group: str
    targeted: int
    pushed: int  # sent on a channel, or delivered to the inbox alone
    opened: int  # read in the inbox
    redeemed: int
    came_back: int
    spend_fen: int  # Σ purchases and payments of the group within the window
    spend_sq: float  # Σ (each member's spend)²: for the variance

    @property
    def comeback_rate(self) -> float | None:
        return self.came_back / self.targeted if self.targeted else None

    @property
    def spend_per_member_fen(self) -> float | None:
        """A statistic, not money: a mean in (fractional) fen."""
        return self.spend_fen / self.targeted if self.targeted else None

    @property
    def spend_variance(self) -> float | None:
        """The sample variance of the members' spend, from the two sums."""
        if self.targeted < 2:
            return None
        return max(self.spend_sq - self.spend_fen**2 / self.targeted, 0.0) / (self.targeted - 1)


@dataclass(frozen=True)
class Estimate:
    value: float
    low: float
    high: float


@dataclass(frozen=True)
class CampaignResults:
    window_days: int
    treated: GroupResult
    holdout: GroupResult
    # Treated minus holdout, with a 95 % interval; None until both groups have members
    # (spend: at least two each).
    incremental_comeback: Estimate | None
    incremental_spend_per_member_fen: Estimate | None


def campaign_results(*, campaign: Campaign, window_days: int = 30) -> CampaignResults:
    """Each group's counts and the incremental comeback and spend: one aggregate query."""
    window = timedelta(days=window_days)
    after_targeted = Visit.objects.filter(
        member=OuterRef("member_id"), occurred_at__gte=OuterRef("targeted_at"),
        occurred_at__lt=OuterRef("targeted_at") + Value(window),
    )
    member_spend = (
        after_targeted.filter(kind__in=PURCHASE_KINDS).order_by().values("member").annotate(s=Sum("amount_fen")).values("s")
    )
    spend = Coalesce(Subquery(member_spend, output_field=BigIntegerField()), 0)
    came = Case(When(Exists(after_targeted.filter(kind__in=VISIT_KINDS)), then=1), default=0)
    rows = (
        CampaignTarget.objects.filter(campaign=campaign)
        .annotate(member_spend=spend, member_came=came)
        .order_by()
        .values("group")
        .annotate(
            targeted=Count("pk"),
            pushed=Count("pk", filter=Q(push__status__in=[Push.Status.SENT, Push.Status.SKIPPED])),
            opened=Count("pk", filter=Q(push__inbox_message__read_at__isnull=False)),
            redeemed=Count("pk", filter=Q(coupon__status=Coupon.Status.REDEEMED)),
            came_back=Sum("member_came"),
            spend_fen=Sum("member_spend"),
            spend_sq=Sum(Cast("member_spend", FloatField()) * Cast("member_spend", FloatField())),
        )
    )
    by_group = {row["group"]: row for row in rows}
    treated, holdout = (_group_result(group, by_group.get(group)) for group in CampaignTarget.Group.values)
    return CampaignResults(
        window_days=window_days, treated=treated, holdout=holdout,
        incremental_comeback=_difference_of_proportions(treated, holdout),
        incremental_spend_per_member_fen=_difference_of_means(treated, holdout),
    )


def _group_result(group: str, row: dict | None) -> GroupResult:
    row = row or {}
    return GroupResult(
        group=group, targeted=row.get("targeted", 0), pushed=row.get("pushed", 0), opened=row.get("opened", 0),
        redeemed=row.get("redeemed", 0), came_back=row.get("came_back") or 0, spend_fen=int(row.get("spend_fen") or 0),
        spend_sq=float(row.get("spend_sq") or 0.0),
    )


def _difference_of_proportions(treated: GroupResult, holdout: GroupResult) -> Estimate | None:
    if not (treated.targeted and holdout.targeted):
        return None
    p1, p0 = treated.comeback_rate, holdout.comeback_rate
    se = math.sqrt(p1 * (1 - p1) / treated.targeted + p0 * (1 - p0) / holdout.targeted)
    return _estimate(p1 - p0, se)


def _difference_of_means(treated: GroupResult, holdout: GroupResult) -> Estimate | None:
    if treated.targeted < 2 or holdout.targeted < 2:
        return None
    se = math.sqrt(treated.spend_variance / treated.targeted + holdout.spend_variance / holdout.targeted)
    return _estimate(treated.spend_per_member_fen - holdout.spend_per_member_fen, se)


def _estimate(value: float, se: float) -> Estimate:
    return Estimate(value=value, low=value - Z_95 * se, high=value + Z_95 * se)
