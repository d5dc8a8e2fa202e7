"""core.jobs: a nightly task stops between batches when its slice of time is over and is
queued again; the slices together do the whole job, nothing twice."""

from datetime import timedelta

import pytest
from django.utils import timezone

from core import jobs
from coupons import tasks as coupon_tasks
from coupons.models import Campaign, CampaignTarget, Coupon
from members import tasks as member_tasks
from members.models import Lot, MemberSegment, PointsTransaction, Push
from tests.coupons.conftest import make_template
from tests.factories import assert_ledger_invariants, make_member
from tests.members.test_ledger_expire import due_lot

pytestmark = pytest.mark.django_db


@pytest.fixture
def slices(monkeypatch):
    """Every slice ends after its first batch; count the tasks queued again (they run inline)."""
    queued = []
    real = jobs.async_task

    def requeue(task, *args):
        queued.append(task)
        return real(task, *args)

    monkeypatch.setattr(jobs, "slice_seconds", lambda: 0)
    monkeypatch.setattr(jobs, "async_task", requeue)
    return queued


def test_a_deadline_stops_only_once_passed():
    jobs.Deadline.after(60).check()
    jobs.deadline_check(None)
    with pytest.raises(jobs.DeadlinePassed):
        jobs.Deadline.after(0).check()


def test_expiry_in_slices_expires_every_due_lot_once(slices, monkeypatch):
    monkeypatch.setattr(member_tasks, "EXPIRE_BATCH", 2)
    for i in range(5):
        due_lot(make_member(), 10, f"s{i}")

    member_tasks.points_expire_due()

    assert slices == ["members.tasks.points_expire_due"] * 3  # 2 + 2 + 1 lots
    assert not Lot.objects.filter(remaining__gt=0).exists()
    assert PointsTransaction.objects.filter(kind="expire").count() == 5
    assert_ledger_invariants()


def test_a_campaign_run_in_slices_reaches_everyone_once(slices):
    members = [make_member() for _ in range(12)]
    campaign = Campaign.objects.create(
        name="c", template=make_template(), message_title="t", message_body="b", status=Campaign.Status.ACTIVE,
        starts_at=timezone.now() - timedelta(hours=1),
    )

    coupon_tasks.campaign_run_task(campaign.pk)

    assert slices and set(slices) == {"coupons.tasks.campaign_run_task"}
    assert CampaignTarget.objects.filter(campaign=campaign).count() == len(members)
    treated = CampaignTarget.objects.filter(campaign=campaign, group=CampaignTarget.Group.TREATED)
    assert not treated.filter(coupon=None).exists()
    assert Coupon.objects.count() == Push.objects.filter(event="wake_up").count() == treated.count()


def test_segment_tagging_in_slices_tags_every_member(slices):
    members = [make_member() for _ in range(3)]

    member_tasks.segments_tag_nightly()

    assert slices and set(slices) == {"members.tasks.segments_tag_nightly"}
    assert MemberSegment.objects.filter(member__in=members).count() == 3
