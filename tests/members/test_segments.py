"""Lifecycle segments (members.segments): the rules, their precedence and boundaries,
the high-value tag, the sizes kept per day, and the nightly job's resumability."""

import io
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django_q.models import Schedule

from members import identity, segments, services, tasks
from members.models import Identity, Member, MemberSegment, Push, Segment, SegmentRun, SegmentSnapshot, Visit
from tests.factories import make_member, make_store

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _english(settings):
    """These tests read English texts; the admin speaks zh-Hans by default (tests/members/test_admin_chinese.py)."""
    settings.LANGUAGE_CODE = "en"

LOCAL = ZoneInfo("Asia/Shanghai")
# A Monday in June: the last three complete months are March, April and May.
NOW = datetime(2026, 6, 15, 10, 0, tzinfo=LOCAL)
TODAY = NOW.date()


@pytest.fixture(autouse=True)
def clock():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def store():
    return make_store()


def joined(*, ago: timedelta = timedelta(0)) -> Member:
    with time_machine.travel(NOW - ago, tick=False):
        return make_member()


def visit(member, store, kind, at, amount_fen=0):
    services.visit_record(member=member, plaza=store.plaza, store=store, kind=kind, amount_fen=amount_fen, at=at)


def purchase(member, store, at, amount_fen=10_000):
    visit(member, store, Visit.Kind.PURCHASE, at, amount_fen)


def local(year, month, day, hour=12, minute=0, second=0):
    return datetime(year, month, day, hour, minute, second, tzinfo=LOCAL)


def segment_of(member) -> str | None:
    row = segments.member_segment(member=member)
    return row.segment if row else None


def results() -> dict[int, tuple[str, bool, int]]:
    return {row.member_id: (row.segment, row.high_value, row.spend_12m_fen) for row in MemberSegment.objects.all()}


# --- the rules ----------------------------------------------------------------------


def test_loyal_is_a_purchase_in_each_of_the_last_three_complete_calendar_months(store):
    member = joined(ago=timedelta(days=200))
    for month in (3, 4, 5):
        purchase(member, store, local(2026, month, 10))

    segments.segments_tag()

    assert segment_of(member) == Segment.LOYAL


def test_loyal_ignores_the_month_in_progress(store):
    member = joined(ago=timedelta(days=200))
    for month in (4, 5, 6):
        purchase(member, store, local(2026, month, 10))

    segments.segments_tag()

    assert segment_of(member) == Segment.OCCASIONAL  # March is missing


def test_a_payment_by_qr_is_a_purchase_for_loyalty(store):
    member = joined(ago=timedelta(days=200))
    purchase(member, store, local(2026, 3, 10))
    visit(member, store, Visit.Kind.PAYMENT, local(2026, 4, 10), 5_000)
    purchase(member, store, local(2026, 5, 10))

    segments.segments_tag()

    assert segment_of(member) == Segment.LOYAL


def test_loyal_months_are_local_calendar_months_to_the_second(store):
    first_instant = joined(ago=timedelta(days=200))
    purchase(first_instant, store, local(2026, 3, 1, 0, 0, 0))
    purchase(first_instant, store, local(2026, 4, 15))
    purchase(first_instant, store, local(2026, 5, 31, 23, 59, 59))
    a_second_early = joined(ago=timedelta(days=200))
    purchase(a_second_early, store, local(2026, 2, 28, 23, 59, 59))
    purchase(a_second_early, store, local(2026, 4, 15))
    purchase(a_second_early, store, local(2026, 5, 31, 23, 59, 59))
    a_second_late = joined(ago=timedelta(days=200))
    purchase(a_second_late, store, local(2026, 3, 15))
    purchase(a_second_late, store, local(2026, 4, 15))
    purchase(a_second_late, store, local(2026, 6, 1, 0, 0, 0))

    segments.segments_tag()

    assert segment_of(first_instant) == Segment.LOYAL
    assert segment_of(a_second_early) == Segment.OCCASIONAL
    assert segment_of(a_second_late) == Segment.OCCASIONAL


@override_settings(SEGMENT_LOYAL_MONTHS=2)
def test_loyal_months_are_configurable(store):
    member = joined(ago=timedelta(days=200))
    purchase(member, store, local(2026, 4, 10))
    purchase(member, store, local(2026, 5, 10))

    segments.segments_tag()

    assert segment_of(member) == Segment.LOYAL


def test_check_ins_count_as_visits_for_occasional(store):
    member = joined()
    visit(member, store, Visit.Kind.CHECKIN, NOW - timedelta(days=300))
    visit(member, store, Visit.Kind.CHECKIN, NOW - timedelta(days=3))

    segments.segments_tag()

    assert segment_of(member) == Segment.OCCASIONAL


def test_one_purchase_and_a_check_in_within_12_months_is_occasional_not_one_time(store):
    member = joined()
    purchase(member, store, NOW - timedelta(days=40))
    visit(member, store, Visit.Kind.CHECKIN, NOW - timedelta(days=3))

    segments.segments_tag()

    assert segment_of(member) == Segment.OCCASIONAL


def test_visits_older_than_365_days_do_not_make_occasional(store):
    member = joined(ago=timedelta(days=800))
    visit(member, store, Visit.Kind.CHECKIN, NOW - timedelta(days=365))
    visit(member, store, Visit.Kind.CHECKIN, NOW - timedelta(days=3))

    segments.segments_tag()

    assert segment_of(member) == Segment.POTENTIAL


@override_settings(SEGMENT_OCCASIONAL_MIN_VISITS=3)
def test_occasional_visits_are_configurable(store):
    member = joined()
    purchase(member, store, NOW - timedelta(days=40))
    visit(member, store, Visit.Kind.CHECKIN, NOW - timedelta(days=3))

    segments.segments_tag()

    assert segment_of(member) == Segment.ONE_TIME


def test_one_time_is_exactly_one_purchase_ever(store):
    recent = joined()
    purchase(recent, store, NOW - timedelta(days=10))
    long_ago = joined(ago=timedelta(days=900))
    purchase(long_ago, store, NOW - timedelta(days=800))
    visit(long_ago, store, Visit.Kind.CHECKIN, NOW - timedelta(days=10))

    segments.segments_tag()

    assert segment_of(recent) == Segment.ONE_TIME
    assert segment_of(long_ago) == Segment.ONE_TIME


def test_a_repeat_buyer_seen_once_this_year_is_occasional(store):
    member = joined(ago=timedelta(days=900))
    purchase(member, store, NOW - timedelta(days=800))
    purchase(member, store, NOW - timedelta(days=500))
    visit(member, store, Visit.Kind.CHECKIN, NOW - timedelta(days=10))

    segments.segments_tag()

    assert segment_of(member) == Segment.OCCASIONAL


def test_potential_is_a_member_who_never_bought(store):
    new = joined()
    checked_in_once = joined()
    visit(checked_in_once, store, Visit.Kind.CHECKIN, NOW - timedelta(days=5))
    redeemed = joined()
    visit(redeemed, store, Visit.Kind.REDEMPTION, NOW - timedelta(days=5))

    segments.segments_tag()

    assert segment_of(new) == Segment.POTENTIAL
    assert segment_of(checked_in_once) == Segment.POTENTIAL
    assert segment_of(redeemed) == Segment.POTENTIAL


def test_lapsed_from_exactly_120_days_without_a_visit(store):
    exactly = joined(ago=timedelta(days=300))
    purchase(exactly, store, NOW - timedelta(days=120))
    a_second_less = joined(ago=timedelta(days=300))
    purchase(a_second_less, store, NOW - timedelta(days=120) + timedelta(seconds=1))

    segments.segments_tag()

    assert segment_of(exactly) == Segment.LAPSED
    assert segment_of(a_second_less) == Segment.ONE_TIME


def test_a_member_who_joined_and_never_came_lapses_from_joining(store):
    joined_120_days_ago = joined(ago=timedelta(days=120))
    joined_119_days_ago = joined(ago=timedelta(days=119))

    segments.segments_tag()

    assert segment_of(joined_120_days_ago) == Segment.LAPSED
    assert segment_of(joined_119_days_ago) == Segment.POTENTIAL


@override_settings(LAPSED_AFTER_DAYS=30)
def test_lapsed_takes_precedence_over_loyal(store):
    member = joined(ago=timedelta(days=200))
    for month in (3, 4, 5):
        purchase(member, store, local(2026, month, 10))  # the last one 36 days ago

    segments.segments_tag()

    assert segment_of(member) == Segment.LAPSED


def test_redemptions_chats_and_opened_pushes_never_count_as_visits(store):
    member = joined(ago=timedelta(days=200))
    visit(member, store, Visit.Kind.REDEMPTION, NOW - timedelta(days=1))
    Identity.objects.create(
        member=member, channel=Identity.Channel.WECHAT_OPENID, external_id="o-chatty", is_following=True,
        last_inbound_at=NOW - timedelta(hours=1),
    )
    Push.objects.create(member=member, event="wake_up", event_key="wake:1", title="t", body="b", status=Push.Status.SENT, sent_at=NOW)

    segments.segments_tag()

    assert segment_of(member) == Segment.LAPSED


def test_visits_after_the_run_instant_are_not_counted(store):
    member = joined()
    purchase(member, store, NOW + timedelta(minutes=5))

    segments.segments_tag()

    assert segments.member_segment(member=member).spend_12m_fen == 0
    assert segment_of(member) == Segment.POTENTIAL


# --- merged and banned members ----------------------------------------------------------


def test_banned_members_get_no_segment_and_lose_the_one_they_had(store):
    member = joined()
    purchase(member, store, NOW - timedelta(days=1))
    segments.segments_tag()
    assert segment_of(member) == Segment.ONE_TIME

    Member.objects.filter(pk=member.pk).update(status=Member.Status.BANNED)
    segments.segments_tag(at=NOW + timedelta(days=1))

    assert segments.member_segment(member=member) is None
    assert segments.segment_sizes(day=TODAY + timedelta(days=1))[Segment.ONE_TIME].members == 0


def test_a_merged_member_gets_no_segment_and_its_visits_count_for_the_member_it_joined(store):
    source, target = joined(), joined()
    purchase(source, store, NOW - timedelta(days=20))
    purchase(target, store, NOW - timedelta(days=10))
    identity.member_merge(source=source, target=target, reason="same person")

    segments.segments_tag()

    assert segments.member_segment(member=source) is None
    assert segment_of(target) == Segment.OCCASIONAL
    assert MemberSegment.objects.count() == 1


# --- high-value ---------------------------------------------------------------------


def test_high_value_is_the_top_20_percent_of_spenders_across_segments(store):
    spenders = []
    for i in range(1, 11):
        member = joined(ago=timedelta(days=200))
        purchase(member, store, NOW - timedelta(days=100 + i), amount_fen=i * 1_000)
        spenders.append(member)
    lapsed_big_spender = spenders[-1]
    Visit.objects.filter(member=lapsed_big_spender).update(occurred_at=NOW - timedelta(days=200))
    non_spenders = [joined() for _ in range(5)]

    summary = segments.segments_tag()

    high_value = set(MemberSegment.objects.filter(high_value=True).values_list("member_id", flat=True))
    assert high_value == {spenders[-1].pk, spenders[-2].pk}
    assert summary.high_value_threshold_fen == 9_000
    assert segment_of(lapsed_big_spender) == Segment.LAPSED
    assert segment_of(spenders[-2]) == Segment.ONE_TIME
    assert not MemberSegment.objects.filter(member__in=non_spenders, high_value=True).exists()


def test_high_value_includes_members_tied_with_the_threshold(store):
    for amount_fen in (5_000, 5_000, 5_000, 1_000, 1_000):
        purchase(joined(), store, NOW - timedelta(days=1), amount_fen=amount_fen)

    summary = segments.segments_tag()

    assert summary.high_value_threshold_fen == 5_000
    assert MemberSegment.objects.filter(high_value=True).count() == 3


def test_high_value_spend_is_12_months_of_purchases_and_payments(store):
    member = joined(ago=timedelta(days=800))
    purchase(member, store, NOW - timedelta(days=365), amount_fen=1_000_000)  # just outside
    purchase(member, store, NOW - timedelta(days=364), amount_fen=3_000)
    visit(member, store, Visit.Kind.PAYMENT, NOW - timedelta(days=2), 4_000)
    visit(member, store, Visit.Kind.REDEMPTION, NOW - timedelta(days=1), 50_000)

    segments.segments_tag()

    assert segments.member_segment(member=member).spend_12m_fen == 7_000


@override_settings(SEGMENT_HIGH_VALUE_SHARE_PCT=50)
def test_high_value_share_is_configurable(store):
    for i in range(1, 5):
        purchase(joined(), store, NOW - timedelta(days=1), amount_fen=i * 1_000)

    segments.segments_tag()

    assert sorted(MemberSegment.objects.filter(high_value=True).values_list("spend_12m_fen", flat=True)) == [3_000, 4_000]


def test_nobody_is_high_value_when_nobody_spent(store):
    joined()

    summary = segments.segments_tag()

    assert summary.high_value_threshold_fen is None
    assert not MemberSegment.objects.filter(high_value=True).exists()


def test_a_member_who_stopped_spending_loses_high_value_the_next_day(store):
    member = joined()
    purchase(member, store, NOW - timedelta(days=364), amount_fen=9_000)
    purchase(joined(), store, NOW - timedelta(days=1), amount_fen=1_000)
    segments.segments_tag()
    assert segments.member_segment(member=member).high_value

    segments.segments_tag(at=NOW + timedelta(days=1))

    assert not segments.member_segment(member=member).high_value


# --- sizes over time -------------------------------------------------------------------


def test_sizes_are_kept_per_day_for_every_segment(store):
    purchase(joined(), store, NOW - timedelta(days=1), amount_fen=5_000)
    joined()
    joined()
    joined(ago=timedelta(days=130))

    summary = segments.segments_tag()

    sizes = segments.segment_sizes(day=TODAY)
    assert {s: (size.members, size.high_value_members) for s, size in sizes.items()} == {
        Segment.LAPSED: (1, 0),
        Segment.LOYAL: (0, 0),
        Segment.OCCASIONAL: (0, 0),
        Segment.ONE_TIME: (1, 1),
        Segment.POTENTIAL: (2, 0),
    }
    assert summary.sizes == sizes
    assert summary.members == 4
    assert segments.segment_sizes(day=TODAY - timedelta(days=1)) == {}


def test_each_day_keeps_its_own_sizes(store):
    member = joined()
    segments.segments_tag()
    purchase(member, store, NOW + timedelta(hours=20))

    segments.segments_tag(at=NOW + timedelta(days=1))

    assert segments.segment_sizes(day=TODAY)[Segment.POTENTIAL].members == 1
    assert segments.segment_sizes(day=TODAY + timedelta(days=1))[Segment.ONE_TIME].members == 1
    assert SegmentSnapshot.objects.count() == 2 * len(Segment)


# --- the job: batches, resuming, idempotence ----------------------------------------------


def population(store, count: int) -> list[Member]:
    """Members of every segment, several visits each."""
    members = []
    for i in range(count):
        member = joined(ago=timedelta(days=400))
        kind = i % 5
        if kind == 0:
            for month in (3, 4, 5):
                purchase(member, store, local(2026, month, 10), amount_fen=(i + 1) * 1_000)
        elif kind == 1:
            visit(member, store, Visit.Kind.CHECKIN, NOW - timedelta(days=20))
            visit(member, store, Visit.Kind.CHECKIN, NOW - timedelta(days=10))
        elif kind == 2:
            purchase(member, store, NOW - timedelta(days=5), amount_fen=(i + 1) * 1_000)
        elif kind == 3:
            purchase(member, store, NOW - timedelta(days=200), amount_fen=(i + 1) * 1_000)
        members.append(member)
    return members


def test_a_run_killed_half_way_finishes_when_run_again_with_the_result_of_a_clean_run(store, monkeypatch):
    population(store, 11)
    real_classify = segments._classify
    calls = []

    def classify_then_die(**kwargs):
        calls.append(kwargs["upto"])
        if len(calls) == 2:
            raise RuntimeError("killed")
        real_classify(**kwargs)

    monkeypatch.setattr(segments, "_classify", classify_then_die)
    with pytest.raises(RuntimeError):
        segments.segments_tag(batch_size=3)
    run = SegmentRun.objects.get(day=TODAY)
    assert (run.phase, run.last_member_id) == (SegmentRun.Phase.CLASSIFY, calls[0])
    assert MemberSegment.objects.count() == 3
    assert not SegmentSnapshot.objects.exists()

    monkeypatch.setattr(segments, "_classify", real_classify)
    with time_machine.travel(NOW + timedelta(hours=1), tick=False):
        resumed = segments.segments_tag(batch_size=3)
    resumed_results, resumed_snapshot = results(), list(SegmentSnapshot.objects.values_list("segment", "members", "high_value_members"))

    assert resumed.ran and resumed.batches == 3 + 4  # the classify batches left, then all the tagging ones
    assert SegmentSnapshot.objects.filter(day=TODAY).count() == len(Segment)
    SegmentSnapshot.objects.all().delete()
    MemberSegment.objects.all().delete()
    SegmentRun.objects.all().delete()
    clean = segments.segments_tag(batch_size=3)
    assert results() == resumed_results
    assert list(SegmentSnapshot.objects.values_list("segment", "members", "high_value_members")) == resumed_snapshot
    assert clean.high_value_threshold_fen == resumed.high_value_threshold_fen
    assert clean.sizes == resumed.sizes


def test_a_run_killed_while_tagging_high_value_finishes_when_run_again(store, monkeypatch):
    population(store, 10)
    real_tag = segments._tag_high_value

    def die(**kwargs):
        raise RuntimeError("killed")

    monkeypatch.setattr(segments, "_tag_high_value", die)
    with pytest.raises(RuntimeError):
        segments.segments_tag(batch_size=4)
    assert SegmentRun.objects.get(day=TODAY).phase == SegmentRun.Phase.HIGH_VALUE
    monkeypatch.setattr(segments, "_tag_high_value", real_tag)

    summary = segments.segments_tag(batch_size=4)

    assert SegmentRun.objects.get(day=TODAY).phase == SegmentRun.Phase.DONE
    assert summary.members == 10
    assert sum(size.high_value_members for size in summary.sizes.values()) == 2


def test_a_second_run_the_same_day_writes_nothing(store):
    population(store, 6)
    first = segments.segments_tag(batch_size=4)
    purchase(joined(), store, NOW - timedelta(hours=1))  # too late for today's run

    with time_machine.travel(NOW + timedelta(hours=3), tick=False), CaptureQueriesContext(connection) as queries:
        second = segments.segments_tag(batch_size=4)

    writes = [q["sql"] for q in queries if q["sql"].split()[0].upper() in {"INSERT", "UPDATE", "DELETE"}]
    assert writes == []
    assert not second.ran
    assert second.sizes == first.sizes
    assert SegmentSnapshot.objects.count() == len(Segment)


def test_queries_per_batch_do_not_depend_on_members_or_visits(store, django_assert_max_num_queries):
    population(store, 4)
    with CaptureQueriesContext(connection) as small:
        segments.segments_tag(batch_size=2)  # 2 + 2 batches
    MemberSegment.objects.all().delete()
    SegmentSnapshot.objects.all().delete()
    SegmentRun.objects.all().delete()
    for member in population(store, 8):  # 12 members, many more visits each: 6 + 6 batches
        for day in range(1, 20):
            visit(member, store, Visit.Kind.CHECKIN, NOW - timedelta(days=day))

    # savepoint, lock the run, ids, delete the inactive, aggregate, upsert, mark, end, release
    per_classify_batch = 9
    # savepoint, lock the run, ids, update, mark, end, release
    per_tag_batch = 7
    with django_assert_max_num_queries(len(small) + 4 * per_classify_batch + 4 * per_tag_batch):
        segments.segments_tag(batch_size=2)

    assert MemberSegment.objects.count() == 12


# --- entry points ------------------------------------------------------------------------


def test_nightly_task_tags_every_member_and_is_scheduled(store):
    purchase(joined(), store, NOW - timedelta(days=1))
    joined()

    assert tasks.segments_tag_nightly() == 2
    assert tasks.segments_tag_nightly() == 2
    schedule = Schedule.objects.get(name="segments: tag members")
    assert (schedule.func, schedule.schedule_type) == ("members.tasks.segments_tag_nightly", Schedule.DAILY)


def test_command_prints_progress_and_sizes_and_does_nothing_the_second_time(store):
    population(store, 5)
    out = io.StringIO()

    call_command("segments_tag", "--batch-size", "2", stdout=out)

    lines = out.getvalue().splitlines()
    # Not a terminal: plain progress lines (core.progress), each phase up to its end.
    assert [line.split(":")[0] for line in lines[:-6]] == ["Segments"] * 3 + ["High-value tag"] * 3
    assert lines[2].endswith(" 5/5") and lines[5].endswith(" 5/5")
    assert lines[-6:] == [
        f"Segments of {TODAY}: 5 members; high-value from 4000 fen of 12-month spend",
        "  Lapsed                2  (1 high-value)",
        "  Loyal                 1  (0 high-value)",
        "  Occasional            1  (0 high-value)",
        "  One-time              1  (0 high-value)",
        "  Potential             0  (0 high-value)",
    ]
    out = io.StringIO()
    call_command("segments_tag", stdout=out)
    assert "already done; nothing to do" in out.getvalue()


def test_command_refuses_a_batch_size_below_one():
    with pytest.raises(CommandError, match="batch-size"):
        call_command("segments_tag", "--batch-size", "0", stdout=io.StringIO())


def test_member_segment_is_none_before_any_run():
    assert segments.member_segment(member=joined()) is None



def test_admin_shows_sizes_and_runs_read_only(admin_client, store):
    purchase(joined(), store, NOW - timedelta(days=1))
    segments.segments_tag()
    snapshot = SegmentSnapshot.objects.get(day=TODAY, segment=Segment.ONE_TIME)
    run = SegmentRun.objects.get(day=TODAY)

    for model, obj in ((SegmentSnapshot, snapshot), (SegmentRun, run)):
        name = model._meta.model_name
        assert admin_client.get(reverse(f"admin:members_{name}_changelist")).status_code == 200
        page = admin_client.get(reverse(f"admin:members_{name}_change", args=[obj.pk]))
        assert page.status_code == 200 and b'name="_save"' not in page.content
        assert admin_client.get(reverse(f"admin:members_{name}_add")).status_code == 403
        assert admin_client.post(reverse(f"admin:members_{name}_delete", args=[obj.pk]), {"post": "yes"}).status_code == 403
    assert SegmentSnapshot.objects.filter(pk=snapshot.pk).exists()
