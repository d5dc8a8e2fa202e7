"""core.bulk_sql.rows_insert writes what bulk_create writes, defaults included, on both databases."""

from datetime import timedelta

import pytest
from django.db import IntegrityError
from django.utils import timezone

from core.bulk_sql import rows_insert
from coupons.models import Campaign, CampaignTarget, CouponTemplate
from members.models import Push
from tests.factories import make_member

pytestmark = pytest.mark.django_db

COMPARED = ("member_id", "event", "event_key", "title", "body", "link", "data", "status", "channel", "recipient",
            "payload", "attempts", "next_attempt_at", "last_error", "sent_at")


def _row(push: Push) -> tuple:
    return tuple(getattr(push, name) for name in COMPARED)


def test_rows_are_written_as_bulk_create_writes_them_defaults_json_and_times_included():
    member = make_member()
    when = timezone.now().replace(microsecond=123456) + timedelta(minutes=3)
    values = {"member_id": member.pk, "event": "wake_up", "title": "标题", "body": "正文 ¥20",
              "data": {"coupon_id": 7, "nested": ["一", None, 1.5]}, "next_attempt_at": when}
    Push.objects.bulk_create([Push(event_key="orm", **values)])
    returned = rows_insert(Push, [{"event_key": "raw", **values}], returning=("id", "event_key"))

    orm, raw = Push.objects.get(event_key="orm"), Push.objects.get(event_key="raw")
    assert returned == [(raw.pk, "raw")]
    assert _row(raw)[:2] == _row(orm)[:2] and _row(raw)[3:] == _row(orm)[3:]
    assert raw.data == {"coupon_id": 7, "nested": ["一", None, 1.5]} and raw.next_attempt_at == when
    assert raw.created_at is not None and raw.payload == {} and raw.status == Push.Status.PENDING


def test_a_column_without_a_default_must_be_given():
    with pytest.raises(KeyError):
        rows_insert(Push, [{"event_key": "k", "event": "e", "title": "t", "body": "b"}])  # no member
    assert not Push.objects.exists()


def test_conflicts_are_skipped_when_asked_and_refused_otherwise():
    member, other = make_member(), make_member()
    template = CouponTemplate.objects.create(name="t", kind="voucher", face_value_fen=100, valid_days=3)
    campaign = Campaign.objects.create(name="c", template=template, message_title="t", message_body="b",
                                       starts_at=timezone.now())
    row = {"campaign_id": campaign.pk, "member_id": member.pk, "group": "treated", "targeted_at": timezone.now()}
    rows_insert(CampaignTarget, [row])

    inserted = rows_insert(CampaignTarget, [row, {**row, "member_id": other.pk, "group": "holdout"}],
                           ignore_conflicts=True, returning=("member_id",))

    assert inserted == [(other.pk,)]
    assert dict(CampaignTarget.objects.values_list("member_id", "group")) == {member.pk: "treated", other.pk: "holdout"}
    with pytest.raises(IntegrityError):
        rows_insert(CampaignTarget, [row])


def test_nothing_to_insert_is_nothing_done(django_assert_num_queries):
    with django_assert_num_queries(0):
        assert rows_insert(Push, []) == []
