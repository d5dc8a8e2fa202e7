"""Lifecycle segments: every active member in exactly one segment, from visits and purchases.

The rules, measured from the run's ``as_of`` instant (the first of the day's runs):

- A *visit* is a Visit row of kind check-in, purchase or payment. Chats, opened pushes
  and redemptions are not visits (a redemption is also not a purchase: nothing is
  bought). ``Member.last_visit_at`` is not used: it also moves on redemptions.
- A *purchase* is a visit of kind purchase or payment (a payment is a purchase paid by
  QR). Spend is their ``amount_fen``; refunds are not deducted.
- "12 months" is the 365 days before ``as_of``.

In order of precedence, a member is in the first segment whose rule holds:

1. **lapsed** — not seen for ``LAPSED_AFTER_DAYS`` (120): no visit since
   ``as_of - LAPSED_AFTER_DAYS days``; a visit exactly that long ago is lapsed. A member
   who never visited is "seen" when they joined, so a member who joined and never came
   back is lapsed once that long has passed.
2. **loyal** — a purchase in each of the last ``SEGMENT_LOYAL_MONTHS`` (3) *complete
   calendar months* in local time (``TIME_ZONE``); the month in progress does not count,
   so loyalty is re-judged on the 1st: on 15 April it asks for January, February, March.
   Calendar months, not 30-day windows, because that is how the mall reports a month and
   a shopper's monthly habit does not slip out of a window that moves every night.
3. **occasional** — ``SEGMENT_OCCASIONAL_MIN_VISITS`` (2) or more visits in 12 months.
   Any visits count: one purchase and one check-in make an occasional member, not a
   one-time one (occasional comes first). Occasional also takes the repeat buyer (two
   or more purchases ever) seen within the lapse window but fewer times in 12 months:
   the rules as written would leave them in no segment.
4. **one-time** — exactly one purchase ever (and fewer visits in 12 months than above).
5. **potential** — no purchase ever (and fewer visits in 12 months than above).

Across them, **high-value**: the top ``SEGMENT_HIGH_VALUE_SHARE_PCT`` (20) % of the
members with any 12-month spend, by that spend. The threshold is the spend of the
ceil(N × share / 100)-th biggest spender of N, fixed once per run; members tied with it
are in, so the share can be a little over.

Merged and banned members get no segment: a run deletes their row, and they count in
no size.

The job is set-based and resumable. A run (SegmentRun, one per local day) walks the
members in id order in batches — one aggregate query per batch computes every member's
segment in SQL, one upsert writes them — then fixes the high-value threshold with one
percentile query, then sets the tag with one UPDATE per batch, then writes the day's
sizes (SegmentSnapshot). Each batch commits with the run's high-water mark, under a lock
on the run row; killed half-way and run again the same day, it goes on from the mark
with the same ``as_of``; run again once done, it does nothing. A run left unfinished
at midnight stays so (that day has no sizes); the next day's run starts afresh.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.db.models import Case, CharField, Count, Max, Min, Q, Sum, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from core.jobs import deadline_check
from members.models import Member, MemberSegment, Segment, SegmentRun, SegmentSnapshot, Visit

VISIT_KINDS = (Visit.Kind.CHECKIN, Visit.Kind.PURCHASE, Visit.Kind.PAYMENT)
PURCHASE_KINDS = (Visit.Kind.PURCHASE, Visit.Kind.PAYMENT)
YEAR = timedelta(days=365)

# progress(phase, done, total) after each batch, measured in the span of member ids
# (first to last, as they stand now): cheap to know, and close enough for a bar.
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class SegmentSize:
    segment: str
    members: int
    high_value_members: int


@dataclass(frozen=True)
class SegmentsSummary:
    day: date
    run_id: int
    # False when the day's run was already done and this call changed nothing.
    ran: bool
    # Batches of members this call went through, over all phases.
    batches: int
    high_value_threshold_fen: int | None
    sizes: dict[str, SegmentSize] = field(default_factory=dict)

    @property
    def members(self) -> int:
        return sum(size.members for size in self.sizes.values())


@dataclass(frozen=True)
class Rules:
    as_of: datetime
    lapsed_days: int
    loyal_months: list[tuple[datetime, datetime]]
    occasional_min_visits: int
    high_value_share_pct: int


def segments_tag(
    *, at: datetime | None = None, batch_size: int = 5000, progress: Progress | None = None, deadline=None,
) -> SegmentsSummary:
    """Run (or finish) the segments run of ``at``'s local day. Safe to run twice."""
    at = at or timezone.now()
    run, _ = SegmentRun.objects.get_or_create(
        day=timezone.localdate(at), defaults={"as_of": at, "started_at": timezone.now()}
    )
    if run.phase == SegmentRun.Phase.DONE:
        return _summary(run, ran=False, batches=0)
    rules = _rules(as_of=run.as_of)
    batches = 0
    while (step := _step(run_id=run.pk, rules=rules, batch_size=batch_size)) is not None:
        phase, done, total = step
        batches += done > 0  # a step at 0 opened a phase
        if progress is not None:
            progress(phase, done, total)
        deadline_check(deadline)
    run.refresh_from_db()
    return _summary(run, ran=True, batches=batches)


def member_segment(*, member: Member) -> MemberSegment | None:
    """The member's segment as of the last run; None for merged and banned members, and
    for members who joined since."""
    return MemberSegment.objects.filter(member=member).first()


def segment_sizes(*, day: date) -> dict[str, SegmentSize]:
    """Each segment's size on ``day``, in order of precedence; empty if no run finished that day."""
    rows = {row.segment: row for row in SegmentSnapshot.objects.filter(day=day)}
    return {
        segment: SegmentSize(segment=segment, members=rows[segment].members, high_value_members=rows[segment].high_value_members)
        for segment in Segment.values
        if segment in rows
    }


# --- the run ----------------------------------------------------------------------


def _rules(*, as_of: datetime) -> Rules:
    loyal_months = getattr(settings, "SEGMENT_LOYAL_MONTHS", 3)
    share = getattr(settings, "SEGMENT_HIGH_VALUE_SHARE_PCT", 20)
    if loyal_months < 1:
        raise ImproperlyConfigured("SEGMENT_LOYAL_MONTHS must be 1 or more")
    if not 0 <= share <= 100:
        raise ImproperlyConfigured("SEGMENT_HIGH_VALUE_SHARE_PCT must be between 0 and 100")
    return Rules(
        as_of=as_of,
        lapsed_days=settings.LAPSED_AFTER_DAYS,
        loyal_months=_months_before(as_of, loyal_months),
        occasional_min_visits=getattr(settings, "SEGMENT_OCCASIONAL_MIN_VISITS", 2),
        high_value_share_pct=share,
    )


def _months_before(at: datetime, count: int) -> list[tuple[datetime, datetime]]:
    """The ``count`` complete local calendar months before ``at``'s month, as [start, end)."""
    local = timezone.localtime(at)
    year, month = local.year, local.month
    months = []
    for _ in range(count):
        end = timezone.make_aware(datetime(year, month, 1))
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
        months.append((timezone.make_aware(datetime(year, month, 1)), end))
    return months


def _step(*, run_id: int, rules: Rules, batch_size: int) -> tuple[str, int, int] | None:
    """One batch of the run's current phase, committed with its high-water mark.
    Returns (phase, done, total) for the progress bar — (phase, 0, 0) when a phase
    begins — or None once the run is done."""
    with transaction.atomic(durable=True):
        # The lock makes two runners of the same day take turns, batch by batch.
        run = SegmentRun.objects.select_for_update().get(pk=run_id)
        if run.phase == SegmentRun.Phase.CLASSIFY:
            ids = _ids_after(Member.objects.all(), "pk", run.last_member_id, batch_size)
            if ids:
                _classify(run=run, rules=rules, after=run.last_member_id, upto=ids[-1])
                return _advance(run, ids[-1], Member.objects.all(), "pk")
            run.high_value_threshold_fen = _high_value_threshold(share_pct=rules.high_value_share_pct)
            return _next_phase(run, SegmentRun.Phase.HIGH_VALUE)
        if run.phase == SegmentRun.Phase.HIGH_VALUE:
            ids = _ids_after(MemberSegment.objects.all(), "member_id", run.last_member_id, batch_size)
            if ids:
                _tag_high_value(threshold_fen=run.high_value_threshold_fen, after=run.last_member_id, upto=ids[-1])
                return _advance(run, ids[-1], MemberSegment.objects.all(), "member_id")
            _snapshot_write(run=run)
            run.finished_at = timezone.now()
            _next_phase(run, SegmentRun.Phase.DONE)
        return None


def _ids_after(queryset, field_name: str, after: int, limit: int) -> list[int]:
    return list(queryset.filter(**{f"{field_name}__gt": after}).order_by(field_name).values_list(field_name, flat=True)[:limit])


def _advance(run: SegmentRun, upto: int, queryset, field_name: str) -> tuple[str, int, int]:
    run.last_member_id = upto
    run.save(update_fields=["last_member_id"])
    span = queryset.aggregate(first=Min(field_name), last=Max(field_name))
    before = min(span["first"] or upto, upto) - 1
    return run.phase, upto - before, max(span["last"] or upto, upto) - before


def _next_phase(run: SegmentRun, phase: str) -> tuple[str, int, int]:
    run.phase, run.last_member_id = phase, 0
    run.save(update_fields=["phase", "last_member_id", "high_value_threshold_fen", "finished_at"])
    return phase, 0, 0


def _classify(*, run: SegmentRun, rules: Rules, after: int, upto: int) -> None:
    """Segments of the members with ids in (after, upto]: one aggregate, one delete, one upsert."""
    in_batch = Q(pk__gt=after, pk__lte=upto)
    MemberSegment.objects.filter(member_id__gt=after, member_id__lte=upto).exclude(
        member__status=Member.Status.ACTIVE
    ).delete()
    rows = (
        Member.objects.filter(in_batch, status=Member.Status.ACTIVE)
        .annotate(**_aggregates(rules))
        .annotate(computed_segment=_segment_case(rules))
        .values_list("pk", "computed_segment", "spend_12m")
    )
    now = timezone.now()
    MemberSegment.objects.bulk_create(
        [
            MemberSegment(member_id=member_id, segment=segment, spend_12m_fen=spend, run=run, computed_at=now)
            for member_id, segment, spend in rows
        ],
        update_conflicts=True,
        unique_fields=["member"],
        # high_value keeps yesterday's tag until this run's threshold replaces it.
        update_fields=["segment", "spend_12m_fen", "run", "computed_at"],
    )


def _aggregates(rules: Rules) -> dict:
    seen = Q(visits__kind__in=VISIT_KINDS, visits__occurred_at__lte=rules.as_of)
    bought = Q(visits__kind__in=PURCHASE_KINDS, visits__occurred_at__lte=rules.as_of)
    last_12m = Q(visits__occurred_at__gt=rules.as_of - YEAR)
    aggregates = {
        "last_seen": Coalesce(Max("visits__occurred_at", filter=seen), "created_at"),
        "visits_12m": Count("visits", filter=seen & last_12m),
        "purchases_ever": Count("visits", filter=bought),
        "spend_12m": Coalesce(Sum("visits__amount_fen", filter=bought & last_12m), 0),
    }
    for i, (start, end) in enumerate(rules.loyal_months):
        aggregates[f"purchases_month_{i}"] = Count(
            "visits", filter=bought & Q(visits__occurred_at__gte=start, visits__occurred_at__lt=end)
        )
    return aggregates


def _segment_case(rules: Rules) -> Case:
    bought_every_month = {f"purchases_month_{i}__gt": 0 for i in range(len(rules.loyal_months))}
    return Case(
        When(last_seen__lte=rules.as_of - timedelta(days=rules.lapsed_days), then=Value(Segment.LAPSED)),
        When(**bought_every_month, then=Value(Segment.LOYAL)),
        When(Q(visits_12m__gte=rules.occasional_min_visits) | Q(purchases_ever__gte=2), then=Value(Segment.OCCASIONAL)),
        When(purchases_ever=1, then=Value(Segment.ONE_TIME)),
        default=Value(Segment.POTENTIAL),
        output_field=CharField(),
    )


def _high_value_threshold(*, share_pct: int) -> int | None:
    """The 12-month spend of the ceil(N × share / 100)-th biggest spender of N.

    Every row is this run's once the classify phase is through (each member id up to
    the mark was written or deleted), so the query reads the spend index alone.
    """
    spenders = MemberSegment.objects.filter(spend_12m_fen__gt=0)
    top = (spenders.count() * share_pct + 99) // 100
    if top == 0:
        return None
    return spenders.order_by("-spend_12m_fen").values_list("spend_12m_fen", flat=True)[top - 1]


def _tag_high_value(*, threshold_fen: int | None, after: int, upto: int) -> None:
    rows = MemberSegment.objects.filter(member_id__gt=after, member_id__lte=upto)
    if threshold_fen is None:
        rows.filter(high_value=True).update(high_value=False)
        return
    rows.update(high_value=Case(When(spend_12m_fen__gte=threshold_fen, then=Value(True)), default=Value(False)))


def _snapshot_write(*, run: SegmentRun) -> None:
    counts = {
        row["segment"]: row
        for row in MemberSegment.objects.values("segment").annotate(
            members=Count("pk"), high_value_members=Count("pk", filter=Q(high_value=True))
        ).order_by()
    }
    SegmentSnapshot.objects.bulk_create(
        [
            SegmentSnapshot(
                day=run.day,
                segment=segment,
                members=counts.get(segment, {}).get("members", 0),
                high_value_members=counts.get(segment, {}).get("high_value_members", 0),
            )
            for segment in Segment.values
        ],
        update_conflicts=True,
        unique_fields=["day", "segment"],
        update_fields=["members", "high_value_members"],
    )


def _summary(run: SegmentRun, *, ran: bool, batches: int) -> SegmentsSummary:
    return SegmentsSummary(
        day=run.day,
        run_id=run.pk,
        ran=ran,
        batches=batches,
        high_value_threshold_fen=run.high_value_threshold_fen,
        sizes=segment_sizes(day=run.day),
    )
