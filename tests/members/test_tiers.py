"""Tiers that follow spend (members.tiers): up at once on a sale with the shopper present,
down at night after the grace period, a history row for each change, one push an upgrade.

The default ladder (migration 0002): 普卡 from 0, 银卡 from ¥5,000, 金卡 from ¥20,000,
黑卡 from ¥100,000 of 12-month spend.
"""

from datetime import datetime, timedelta
from io import StringIO

import pytest
import time_machine
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.utils import timezone

from core.jobs import Deadline, DeadlinePassed
from members import tasks, tiers
from members.models import Member, Push, Tier, TierChange, TierRun
from payments import services as sales
from payments.gateways import sandbox
from payments.models import Order, Purchase
from tests.concurrency import race_all_succeed
from tests.factories import make_member
from tests.payments.conftest import build_shop, code_for
from tests.payments.orders_support import Shopper

pytestmark = pytest.mark.django_db

SILVER_FEN = 500_000
GOLD_FEN = 2_000_000
# Mid-month, mid-day in the mall's time zone, so a few days either way stay in the month.
NOW = timezone.make_aware(datetime(2025, 6, 15, 12, 0))


def tier_of(member: Member) -> str:
    return Member.objects.select_related("tier").get(pk=member.pk).tier.code


def spend_of(member: Member) -> int:
    return Member.objects.get(pk=member.pk).tier_spend_fen


def changes_of(member: Member) -> list[tuple]:
    return list(
        TierChange.objects.filter(member=member).order_by("created_at", "pk").values_list("from_tier__code", "to_tier__code", "reason")
    )


def upgrade_pushes(member: Member) -> list[Push]:
    return list(Push.objects.filter(member=member, event="tier_upgraded"))


def scanned_sale(shop, member, amount_fen, *, key=None):
    response = shop.api.purchase(store_code=shop.store.code, amount_fen=amount_fen, member_code=code_for(member), key=key)
    assert response.status_code == 201, response.content
    return response


def pos_sale(shop, member, amount_fen, *, at=None, present=True) -> Purchase:
    """A POS sale through the service, at a past ``at`` (as seed_demo books them)."""
    with time_machine.travel(at or timezone.now(), tick=False):
        return sales.purchase_record(
            merchant=shop.merchant, store=shop.store, member=member, amount_fen=amount_fen,
            idempotency_key=f"sale-{Purchase.objects.count()}", member_present=present,
        )


# --- on each sale ---------------------------------------------------------------------


def test_a_scanned_purchase_that_reaches_a_threshold_moves_the_member_up_at_once():
    shop, member = build_shop(), make_member()
    assert tier_of(member) == "standard"

    scanned_sale(shop, member, SILVER_FEN - 1)
    assert (tier_of(member), spend_of(member)) == ("standard", SILVER_FEN - 1)

    scanned_sale(shop, member, 1)

    assert (tier_of(member), spend_of(member)) == ("silver", SILVER_FEN)
    assert changes_of(member) == [("standard", "silver", "upgrade")]
    assert TierChange.objects.get(member=member).spend_fen == SILVER_FEN
    [push] = upgrade_pushes(member)
    assert "银卡" in push.title and "5000.00" in push.body and "×1.2" in push.body


def test_a_sale_that_jumps_two_tiers_lands_on_the_highest_reached():
    shop, member = build_shop(), make_member()

    scanned_sale(shop, member, GOLD_FEN)

    assert tier_of(member) == "gold"
    assert changes_of(member) == [("standard", "gold", "upgrade")]


def test_a_replayed_purchase_counts_once_and_pushes_the_upgrade_once():
    shop, member = build_shop(), make_member()

    first = scanned_sale(shop, member, SILVER_FEN, key="till-1")
    again = shop.api.purchase(store_code=shop.store.code, amount_fen=SILVER_FEN, member_code=code_for(member), key="till-1")

    assert again.status_code in (200, 201) and again.json()["id"] == first.json()["id"]
    assert spend_of(member) == SILVER_FEN
    assert len(changes_of(member)) == 1
    assert len(upgrade_pushes(member)) == 1


def test_a_sale_booked_by_a_bare_member_number_does_not_count():
    shop, member = build_shop(), make_member()

    response = shop.api.purchase(store_code=shop.store.code, amount_fen=GOLD_FEN, member=member)

    assert response.status_code == 201, response.content
    assert (tier_of(member), spend_of(member)) == ("standard", 0)
    assert changes_of(member) == [] and upgrade_pushes(member) == []
    tiers.tiers_review()  # nor does the night's recount
    assert (tier_of(member), spend_of(member)) == ("standard", 0)


@pytest.fixture
def sandbox_on(settings):
    settings.O2O_SANDBOX = True


@pytest.mark.usefixtures("sandbox_on")
def test_an_order_the_shopper_paid_moves_them_up():
    shop, member = build_shop(), make_member()
    out_trade_no = Shopper(member).order(store_code=shop.store.code, amount_fen=SILVER_FEN).json()["out_trade_no"]

    headers, raw = sandbox.trade_pay(out_trade_no=out_trade_no)
    answer = Client().post("/payments/notify/sandbox/", data=raw, content_type="application/json", headers=headers)

    assert answer.status_code == 200
    assert Order.objects.get(out_trade_no=out_trade_no).status == "paid"
    assert (tier_of(member), spend_of(member)) == ("silver", SILVER_FEN)
    assert changes_of(member) == [("standard", "silver", "upgrade")]
    assert len(upgrade_pushes(member)) == 1


def test_a_refund_takes_its_share_off_the_spend_and_never_moves_the_member_down():
    shop, member = build_shop(), make_member()
    purchase_id = scanned_sale(shop, member, SILVER_FEN).json()["id"]
    assert tier_of(member) == "silver"

    response = shop.api.refund_purchase(purchase_id, 200_000)

    assert response.status_code == 201, response.content
    assert spend_of(member) == SILVER_FEN - 200_000
    assert tier_of(member) == "silver"  # down only at night, after the grace period
    assert Member.objects.get(pk=member.pk).tier_spend_months == {"%04d-%02d" % (timezone.localdate().year, timezone.localdate().month): 300_000}


def test_spend_older_than_the_window_stops_counting_on_the_next_sale():
    shop, member = build_shop(), make_member()
    pos_sale(shop, member, 400_000, at=NOW - timedelta(days=366))  # June 2024: out of the window in June 2025
    pos_sale(shop, member, 90_000, at=NOW - timedelta(days=300))  # August 2024: in it

    pos_sale(shop, member, 20_000, at=NOW)

    assert spend_of(member) == 110_000
    assert Member.objects.get(pk=member.pk).tier_spend_months == {"2024-08": 90_000, "2025-06": 20_000}
    assert tier_of(member) == "standard"


def test_a_banned_member_is_not_moved_up():
    member = make_member()
    Member.objects.filter(pk=member.pk).update(status=Member.Status.BANNED)

    tiers.tier_spend_record(member=member, amount_fen=GOLD_FEN, at=NOW)

    assert (tier_of(member), spend_of(member)) == ("standard", GOLD_FEN)


# --- at night -------------------------------------------------------------------------


def test_the_nightly_review_recounts_spend_from_the_sales_and_their_refunds():
    shop, member, other = build_shop(), make_member(), make_member()
    purchase = pos_sale(shop, member, 300_000, at=NOW - timedelta(days=40))
    sales.purchase_refund(purchase=purchase, amount_fen=50_000, idempotency_key="r1")
    pos_sale(shop, member, 1_000_000, at=NOW - timedelta(days=20), present=False)  # a bare number: not counted
    Member.objects.filter(pk__in=[member.pk, other.pk]).update(tier_spend_fen=9_999_999, tier_spend_months={"2025-06": 9_999_999})

    with time_machine.travel(NOW, tick=False):
        summary = tiers.tiers_review()

    assert summary.ran and (summary.upgrades, summary.downgrades) == (0, 0)
    assert spend_of(member) == 250_000 and spend_of(other) == 0
    assert Member.objects.get(pk=member.pk).tier_spend_months == {"2025-05": 250_000}
    assert Member.objects.get(pk=other.pk).tier_spend_months == {}


def test_the_nightly_review_moves_up_a_member_the_hot_path_missed():
    shop, member = build_shop(), make_member()
    pos_sale(shop, member, SILVER_FEN, at=NOW - timedelta(days=3))
    Member.objects.filter(pk=member.pk).update(tier=Tier.objects.get(code="standard"), tier_spend_fen=0, tier_spend_months={})
    TierChange.objects.all().delete()

    with time_machine.travel(NOW, tick=False):
        summary = tiers.tiers_review()

    assert summary.upgrades == 1 and tier_of(member) == "silver"
    assert changes_of(member) == [("standard", "silver", "upgrade")]
    assert len(upgrade_pushes(member)) == 2  # one per change: the first one's, and this one's


def test_a_member_whose_spend_fell_keeps_the_tier_for_the_grace_period_then_moves_down(settings):
    settings.TIER_GRACE_DAYS = 90
    shop, member = build_shop(), make_member()
    pos_sale(shop, member, GOLD_FEN, at=NOW - timedelta(days=380))  # May 2024
    pos_sale(shop, member, SILVER_FEN, at=NOW - timedelta(days=10))  # June 2025
    assert tier_of(member) == "gold"

    with time_machine.travel(NOW, tick=False):
        tiers.tiers_review()
    below_since = Member.objects.get(pk=member.pk).tier_below_since
    assert (tier_of(member), spend_of(member), below_since) == ("gold", SILVER_FEN, NOW)

    with time_machine.travel(NOW + timedelta(days=89), tick=False):
        assert tiers.tiers_review().downgrades == 0
    assert tier_of(member) == "gold"

    with time_machine.travel(NOW + timedelta(days=90), tick=False):
        summary = tiers.tiers_review()

    assert summary.downgrades == 1
    assert tier_of(member) == "silver"  # straight to the tier the spend holds
    assert changes_of(member)[-1] == ("gold", "silver", "downgrade")
    assert Member.objects.get(pk=member.pk).tier_below_since is None
    assert len(upgrade_pushes(member)) == 1  # the upgrade to gold; a downgrade is not pushed


def test_spend_back_above_the_tier_within_the_grace_period_clears_it(settings):
    settings.TIER_GRACE_DAYS = 90
    shop, member = build_shop(), make_member()
    pos_sale(shop, member, SILVER_FEN, at=NOW - timedelta(days=380))
    with time_machine.travel(NOW, tick=False):
        tiers.tiers_review()
    assert Member.objects.get(pk=member.pk).tier_below_since == NOW

    pos_sale(shop, member, SILVER_FEN, at=NOW + timedelta(days=30))
    with time_machine.travel(NOW + timedelta(days=31), tick=False):
        tiers.tiers_review()
    with time_machine.travel(NOW + timedelta(days=120), tick=False):
        tiers.tiers_review()

    assert tier_of(member) == "silver"
    assert Member.objects.get(pk=member.pk).tier_below_since is None
    assert [reason for _, _, reason in changes_of(member)] == ["upgrade"]


def test_a_second_review_the_same_day_changes_nothing_and_the_next_day_nothing_new(settings):
    settings.TIER_GRACE_DAYS = 0
    shop = build_shop()
    members = [make_member() for _ in range(3)]
    for member in members:
        pos_sale(shop, member, GOLD_FEN, at=NOW - timedelta(days=400))
    with time_machine.travel(NOW, tick=False):
        first = tiers.tiers_review(batch_size=2)
        again = tiers.tiers_review(batch_size=2)
    with time_machine.travel(NOW + timedelta(days=1), tick=False):
        next_day = tiers.tiers_review(batch_size=2)

    assert first.ran and first.downgrades == 3
    assert not again.ran and again.downgrades == 3 and again.batches == 0
    assert next_day.ran and (next_day.upgrades, next_day.downgrades) == (0, 0)
    assert TierChange.objects.filter(reason="downgrade").count() == 3
    assert {tier_of(m) for m in members} == {"standard"}


def test_a_review_killed_between_batches_goes_on_where_it_stopped(settings):
    settings.TIER_GRACE_DAYS = 0
    shop = build_shop()
    members = [make_member() for _ in range(5)]
    for member in members:
        pos_sale(shop, member, GOLD_FEN, at=NOW - timedelta(days=400))

    with time_machine.travel(NOW, tick=False):
        with pytest.raises(DeadlinePassed):
            tiers.tiers_review(batch_size=2, deadline=Deadline(at=0))
        run = TierRun.objects.get()
        assert run.finished_at is None and run.downgrades == 2 and run.last_member_id > 0
        with pytest.raises(DeadlinePassed):
            tiers.tiers_review(batch_size=2, deadline=Deadline(at=0))
        summary = tiers.tiers_review(batch_size=2)

    assert summary.ran and summary.downgrades == 5
    assert TierRun.objects.get().finished_at is not None
    assert TierChange.objects.filter(reason="downgrade").count() == 5
    assert {tier_of(m) for m in members} == {"standard"}


def test_the_task_requeues_itself_slice_by_slice_until_done(settings, monkeypatch):
    settings.TIER_GRACE_DAYS = 0
    shop = build_shop()
    members = [make_member() for _ in range(3)]
    for member in members:
        pos_sale(shop, member, GOLD_FEN, at=NOW - timedelta(days=400))
    monkeypatch.setattr("core.jobs.slice_seconds", lambda: 0)  # every slice ends after one batch
    real = tiers.tiers_review
    monkeypatch.setattr(tiers, "tiers_review", lambda **kw: real(batch_size=1, **kw))

    with time_machine.travel(NOW, tick=False):
        tasks.tiers_review_nightly()  # the requeued slices run inline in tests

    assert TierRun.objects.get().finished_at is not None
    assert TierChange.objects.filter(reason="downgrade").count() == 3


def test_the_command_reviews_with_a_progress_bar():
    shop, member = build_shop(), make_member()
    pos_sale(shop, member, SILVER_FEN)
    Member.objects.filter(pk=member.pk).update(tier=Tier.objects.get(code="standard"))
    out = StringIO()

    call_command("tiers_review", "--batch-size", "1", stdout=out)
    call_command("tiers_review", stdout=out)

    text = out.getvalue()
    assert "members reviewed" in text and "1 upgrades, 0 downgrades" in text
    assert "already reviewed; nothing to do" in text
    assert tier_of(member) == "silver"


def test_the_schedule_runs_the_review_daily():
    from django_q.models import Schedule

    schedule = Schedule.objects.get(func="members.tasks.tiers_review_nightly")
    assert schedule.schedule_type == Schedule.DAILY


# --- under real concurrency ---------------------------------------------------------------


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL row locks")
def test_two_purchases_of_one_member_at_once_both_count():
    shop, member = build_shop(), make_member()
    code = code_for(member)

    def sale():
        return shop.new_api().purchase(store_code=shop.store.code, amount_fen=300_000, member_code=code)

    responses = race_all_succeed([sale, sale], session_sql=["SET lock_timeout = '5s'"], name="tier-race")

    assert [r.status_code for r in responses] == [201, 201]
    assert spend_of(member) == 600_000
    assert tier_of(member) == "silver"
    assert changes_of(member) == [("standard", "silver", "upgrade")]
    assert len(upgrade_pushes(member)) == 1


# --- merges ---------------------------------------------------------------------------


def test_a_merge_carries_the_spend_and_the_nightly_review_keeps_counting_the_merged_sales():
    from members import identity

    shop, older, newer = build_shop(), make_member(), make_member()
    pos_sale(shop, older, 300_000, at=NOW - timedelta(days=40))
    pos_sale(shop, newer, 300_000, at=NOW - timedelta(days=10))

    with time_machine.travel(NOW, tick=False):
        identity.member_merge(source=newer, target=older, reason="same person")
        assert spend_of(older) == 600_000
        assert tiers.tiers_review().upgrades == 1

    assert tier_of(older) == "silver" and spend_of(older) == 600_000
    assert Member.objects.get(pk=older.pk).tier_spend_months == {"2025-05": 300_000, "2025-06": 300_000}


def test_a_chain_of_merges_brings_every_merged_members_sales_to_the_last_one():
    from members import identity

    shop, first, second, third = build_shop(), make_member(), make_member(), make_member()
    for member in (first, second, third):
        pos_sale(shop, member, 200_000, at=NOW - timedelta(days=5))

    with time_machine.travel(NOW, tick=False):
        identity.member_merge(source=first, target=second, reason="same person")
        identity.member_merge(source=second, target=third, reason="same person")
        Member.objects.filter(pk=third.pk).update(tier_spend_fen=0, tier_spend_months={})
        tiers.tiers_review()

    assert spend_of(third) == 600_000 and tier_of(third) == "silver"
