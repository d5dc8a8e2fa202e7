"""Tiers that follow spend: up at once on a sale, down at night after a grace period.

The rules:

- **Qualifying spend** is what the member bought with the shopper present — a POS sale
  whose member code was scanned (``Purchase.member_present``) or an order the shopper
  paid — less what was refunded of it. A sale booked by a bare member number does not
  count: anyone can type a number.
- **The window** is the local calendar month (``TIME_ZONE``) of the latest sale and the
  11 before it: spend of March 2024 stops counting on 1 April 2025. Whole months, as the
  mall reports a month, so the figure on the member's row rolls by dropping a month's
  total, with no 12-month scan.
- **Upgrade** at once: the sale that brings the spend to a higher tier's threshold moves
  the member to the highest tier reached, writes a TierChange and pushes
  ``tier_upgraded`` (once per change). A sale never moves a member down.
- **Downgrade** only in the nightly review, after a grace period: the first review that
  finds the spend below the member's tier notes it (``Member.tier_below_since``); a
  review ``TIER_GRACE_DAYS`` (90) days or more after that, still finding it below, moves
  the member down to the tier the spend qualifies for (straight there, not one step at a
  time). A review that finds the spend back at the tier's threshold clears the note.
  Merged and banned members are not reviewed.

The hot path (``tier_spend_record``, ``tier_spend_refund``) runs inside the sale's
transaction: it locks the member's row, which the sale's visit has just updated anyway
(``last_visit_at``), adds to the month's total in ``Member.tier_spend_months`` and
writes the row back with one UPDATE — no merchant row, no other table unless the member
moves up. Month totals on the row, not a (member, month) table, because that would be an
extra upsert on every sale, and twelve small numbers are all the window needs.

The nightly review (``tiers_review``) recomputes every active member's months from the
sales themselves, in batches of member ids. A batch locks its members' rows before it
reads their sales, so a sale committing meanwhile is either seen by the read or adds to
what the batch wrote, never lost. Only rows that differ are written. A run (TierRun, one
per local day) keeps its high-water mark in the batch's transaction: killed half-way and
run again the same day it goes on from there; run again once done it does nothing.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Max, Min, Q, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import override

from core.jobs import deadline_check
from core.money import fen_to_yuan
from members import pushes
from members.models import Member, Tier, TierChange, TierRun

EVENT_TIER_UPGRADED = "tier_upgraded"
WINDOW_MONTHS = 12

# progress(done, total) after each batch, in the span of member ids (first to last).
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class TiersSummary:
    day: date
    run_id: int
    # False when the day's run was already done and this call changed nothing.
    ran: bool
    batches: int
    # Over the whole day's run, including earlier slices of it.
    upgrades: int
    downgrades: int


# --- on each sale ---------------------------------------------------------------------


def tier_spend_record(*, member: Member, amount_fen: int, at: datetime) -> TierChange | None:
    """A qualifying sale of ``amount_fen`` at ``at``: add it to the member's spend and move
    them up if it reaches a higher tier. Call inside the sale's transaction, once per sale.
    Returns the upgrade, if any."""
    if amount_fen <= 0:
        return None
    return _spend_move(member_id=member.pk, delta_fen=amount_fen, month=_month_index(at), at=at)


def tier_spend_refund(*, member: Member, amount_fen: int, sold_at: datetime, at: datetime) -> None:
    """A refund of ``amount_fen`` of a qualifying sale made at ``sold_at``: its month's
    total goes down (nothing, if that month has left the window). Never a downgrade."""
    if amount_fen > 0:
        _spend_move(member_id=member.pk, delta_fen=-amount_fen, month=_month_index(sold_at), at=at)


def _spend_move(*, member_id: int, delta_fen: int, month: int, at: datetime) -> TierChange | None:
    with transaction.atomic():
        member = (
            Member.objects.select_for_update(no_key=True)
            .only("pk", "status", "tier_id", "tier_spend_months", "tier_below_since")
            .get(pk=member_id)
        )
        months = dict(member.tier_spend_months or {})
        end = max([_month_index(at), month] + [_key_index(key) for key in months])
        key = _month_key(month)
        months[key] = max(months.get(key, 0) + delta_fen, 0)
        months = _window(months, end=end)
        spend = sum(months.values())
        fields = {"tier_spend_months": months, "tier_spend_fen": spend}
        change = None
        if delta_fen > 0 and member.status == Member.Status.ACTIVE:
            tiers = _tiers()
            target = _tier_for(tiers, spend)
            if _is_higher(target, tiers.get(member.tier_id)):
                fields.update(tier=target, tier_below_since=None)
                change = TierChange(
                    member_id=member.pk, from_tier_id=member.tier_id, to_tier=target, reason=TierChange.Reason.UPGRADE,
                    spend_fen=spend, created_at=at,
                )
        Member.objects.filter(pk=member.pk).update(**fields)
        if change is not None:
            change.save()
            _push_upgraded(member=member, change=change)
        return change


# --- at night -------------------------------------------------------------------------


def tiers_review(
    *, at: datetime | None = None, batch_size: int = 5000, progress: Progress | None = None, deadline=None,
) -> TiersSummary:
    """Run (or finish) the tier review of ``at``'s local day. Safe to run twice."""
    at = at or timezone.now()
    run, _ = TierRun.objects.get_or_create(day=timezone.localdate(at), defaults={"as_of": at, "started_at": timezone.now()})
    if run.finished_at is not None:
        return _summary(run, ran=False, batches=0)
    batches = 0
    while (step := _step(run_id=run.pk, batch_size=batch_size)) is not None:
        batches += 1
        if progress is not None:
            progress(*step)
        deadline_check(deadline)
    run.refresh_from_db()
    return _summary(run, ran=True, batches=batches)


def tier_grace_days() -> int:
    return getattr(settings, "TIER_GRACE_DAYS", 90)


def _step(*, run_id: int, batch_size: int) -> tuple[int, int] | None:
    """One batch, committed with the run's high-water mark; (done, total) for the bar, or
    None once the run is done."""
    with transaction.atomic(durable=True):
        # The lock makes two runners of the same day take turns, batch by batch.
        run = TierRun.objects.select_for_update().get(pk=run_id)
        if run.finished_at is not None:
            return None
        ids = list(Member.objects.filter(pk__gt=run.last_member_id).order_by("pk").values_list("pk", flat=True)[:batch_size])
        if not ids:
            run.finished_at = timezone.now()
            run.save(update_fields=["finished_at"])
            return None
        upgrades, downgrades = _review(after=run.last_member_id, upto=ids[-1], as_of=run.as_of)
        before = run.last_member_id
        run.last_member_id = ids[-1]
        run.upgrades += upgrades
        run.downgrades += downgrades
        run.save(update_fields=["last_member_id", "upgrades", "downgrades"])
        span = Member.objects.aggregate(first=Min("pk"), last=Max("pk"))
        start = min(span["first"] or 1, before + 1) - 1
        return ids[-1] - start, max(span["last"] or ids[-1], ids[-1]) - start


def _review(*, after: int, upto: int, as_of: datetime) -> tuple[int, int]:
    """Recompute, upgrade and downgrade the active members with ids in (after, upto]."""
    members = list(
        Member.objects.select_for_update(no_key=True)
        .filter(pk__gt=after, pk__lte=upto, status=Member.Status.ACTIVE)
        .order_by("pk")
        .only("pk", "tier_id", "tier_spend_fen", "tier_spend_months", "tier_below_since")
    )
    if not members:
        return 0, 0
    end = _month_index(as_of)
    spent = _months_spent(after=after, upto=upto, end=end)
    tiers = _tiers()
    grace = timedelta(days=tier_grace_days())
    changed, changes = [], []
    for member in members:
        months = spent.get(member.pk, {})
        months = _window(months, end=max([end] + [_key_index(key) for key in months]))
        spend = sum(months.values())
        current = tiers.get(member.tier_id)
        qualified = _tier_for(tiers, spend)
        tier, below_since = current, None
        if _is_higher(qualified, current):
            tier = qualified
        elif qualified is not None and _is_higher(current, qualified):
            below_since = member.tier_below_since or as_of
            if as_of >= below_since + grace:
                tier, below_since = qualified, None
        if tier is not current:
            changes.append(
                TierChange(
                    member_id=member.pk, from_tier=current, to_tier=tier, spend_fen=spend, created_at=as_of,
                    reason=TierChange.Reason.UPGRADE if _is_higher(tier, current) else TierChange.Reason.DOWNGRADE,
                )
            )
        new = {"tier_id": tier.pk if tier else None, "tier_spend_fen": spend, "tier_spend_months": months, "tier_below_since": below_since}
        if any(getattr(member, name) != value for name, value in new.items()):
            for name, value in new.items():
                setattr(member, name, value)
            changed.append(member)
    if changed:
        Member.objects.bulk_update(changed, ["tier", "tier_spend_fen", "tier_spend_months", "tier_below_since"])
    TierChange.objects.bulk_create(changes)
    by_pk = {member.pk: member for member in members}
    for change in changes:
        if change.reason == TierChange.Reason.UPGRADE:
            _push_upgraded(member=by_pk[change.member_id], change=change)
    upgrades = sum(change.reason == TierChange.Reason.UPGRADE for change in changes)
    return upgrades, len(changes) - upgrades


def _months_spent(*, after: int, upto: int, end: int) -> dict[int, dict[str, int]]:
    """Qualifying spend by member and local month, from the 11 months before ``end`` on
    (a sale after ``end``'s month lands in the month after it): POS sales with the
    shopper present and paid orders, less their refunds."""
    # Imported here: the sales live in payments, which builds on members, not the other way round.
    from payments.models import Order, Purchase

    first = end - WINDOW_MONTHS + 1
    starts = [_month_start(first + i) for i in range(WINDOW_MONTHS + 1)]

    def by_month(field_name: str) -> dict:
        buckets = {}
        for i, start in enumerate(starts):
            in_month = Q(**{f"{field_name}__gte": start})
            if i + 1 < len(starts):
                in_month &= Q(**{f"{field_name}__lt": starts[i + 1]})
            buckets[f"m{i}"] = Coalesce(Sum(F("amount_fen") - F("refunded_fen"), filter=in_month), 0)
        return buckets

    sources = [
        Purchase.objects.filter(member_present=True, created_at__gte=starts[0]).values("member_id").annotate(**by_month("created_at")),
        Order.objects.filter(
            member__isnull=False, paid_at__gte=starts[0],
            status__in=(Order.Status.PAID, Order.Status.PARTIALLY_REFUNDED, Order.Status.REFUNDED),
        ).values("member_id").annotate(**by_month("paid_at")),
    ]
    # A merged member's sales count for the member they were merged into (member_merge).
    owner = _absorbed(after=after, upto=upto)
    spent: dict[int, dict[str, int]] = {}
    for rows in sources:
        in_batch = Q(member_id__gt=after, member_id__lte=upto)
        if owner:
            in_batch |= Q(member_id__in=list(owner))
        for row in rows.filter(in_batch).order_by():
            months = spent.setdefault(owner.get(row["member_id"], row["member_id"]), {})
            for i in range(len(starts)):
                if row[f"m{i}"]:
                    key = _month_key(first + i)
                    months[key] = months.get(key, 0) + row[f"m{i}"]
    return spent


def _absorbed(*, after: int, upto: int) -> dict[int, int]:
    """Members merged, directly or through a chain of merges, into a member with an id in
    (after, upto]: {merged member id: that member's id}. Merges are rare; each level is
    one indexed read."""
    owner: dict[int, int] = {}
    level = dict(
        Member.objects.filter(merged_into_id__gt=after, merged_into_id__lte=upto, status=Member.Status.MERGED)
        .values_list("pk", "merged_into_id")
    )
    while level:
        owner.update(level)
        level = {
            pk: owner[into]
            for pk, into in Member.objects.filter(merged_into_id__in=list(level), status=Member.Status.MERGED)
            .values_list("pk", "merged_into_id")
            if pk not in owner
        }
    # A member merged into one that was merged in turn belongs to the last of the chain.
    for pk in owner:
        while owner[pk] in owner:
            owner[pk] = owner[owner[pk]]
    return owner


def tier_spend_merge(*, source: Member, target: Member, at: datetime) -> None:
    """Fold ``source``'s rolling spend into ``target``'s, month by month (member_merge,
    inside its transaction). The better tier is the merge's own rule; this only keeps the
    spend that the next upgrade and the nightly review count from."""
    months = dict(target.tier_spend_months or {})
    for key, fen in (source.tier_spend_months or {}).items():
        months[key] = months.get(key, 0) + fen
    end = max([_month_index(at)] + [_key_index(key) for key in months])
    months = _window(months, end=end)
    Member.objects.filter(pk=target.pk).update(tier_spend_months=months, tier_spend_fen=sum(months.values()))
    target.tier_spend_months, target.tier_spend_fen = months, sum(months.values())


# --- the tier table and the push --------------------------------------------------------


def _tiers() -> dict[int, Tier]:
    return {tier.pk: tier for tier in Tier.objects.order_by("threshold_fen")}


def _tier_for(tiers: dict[int, Tier], spend_fen: int) -> Tier | None:
    """The highest tier whose threshold ``spend_fen`` reaches."""
    reached = [tier for tier in tiers.values() if tier.threshold_fen <= spend_fen]
    return max(reached, key=lambda tier: tier.threshold_fen) if reached else None


def _is_higher(tier: Tier | None, than: Tier | None) -> bool:
    if tier is None:
        return False
    return than is None or tier.threshold_fen > than.threshold_fen


def _multiplier(multiplier_bp: int) -> str:
    """15000 → "1.5", 20000 → "2"."""
    whole, part = divmod(multiplier_bp, 10000)
    return f"{whole}.{part:04d}".rstrip("0").rstrip(".")


def _push_upgraded(*, member: Member, change: TierChange) -> None:
    tier = change.to_tier
    if tier.threshold_fen == 0:
        return  # the entry tier, given to a member who had none: nothing to celebrate
    values = {"tier": tier.name, "spend": fen_to_yuan(change.spend_fen), "multiplier": _multiplier(tier.multiplier_bp)}
    with override(settings.LANGUAGE_CODE):
        title = _("恭喜升级为%(tier)s会员") % values
        body = _("你近 12 个月的消费累计 ¥%(spend)s，已升级为%(tier)s会员，消费积分 ×%(multiplier)s。") % values
    pushes.push_send(
        member=member, event=EVENT_TIER_UPGRADED, event_key=f"{EVENT_TIER_UPGRADED}:{change.pk}", title=title, body=body,
        data={**values, "tier_code": tier.code, "spend_fen": change.spend_fen},
    )


# --- months -----------------------------------------------------------------------------
# A month is an index, year × 12 + month − 1, of the local calendar; keys are "2025-03".


def _month_index(at: datetime) -> int:
    local = timezone.localtime(at)
    return local.year * 12 + local.month - 1


def _month_key(index: int) -> str:
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def _key_index(key: str) -> int:
    year, month = key.split("-")
    return int(year) * 12 + int(month) - 1


def _month_start(index: int) -> datetime:
    return timezone.make_aware(datetime(index // 12, index % 12 + 1, 1))


def _window(months: dict[str, int], *, end: int) -> dict[str, int]:
    """The non-zero totals of ``end``'s month and the 11 before it."""
    return {key: fen for key, fen in sorted(months.items()) if fen and end - WINDOW_MONTHS < _key_index(key) <= end}


def _summary(run: TierRun, *, ran: bool, batches: int) -> TiersSummary:
    return TiersSummary(
        day=run.day, run_id=run.pk, ran=ran, batches=batches, upgrades=run.upgrades, downgrades=run.downgrades,
    )
