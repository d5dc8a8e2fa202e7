"""The coupon services: discounts, issue rules, void, expiry."""

from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from coupons import services
from coupons.models import Coupon, CouponEvent, CouponTemplate
from members.models import Member
from tests.coupons.conftest import issue, make_template, window
from tests.factories import make_member

pytestmark = pytest.mark.django_db

Kind = CouponTemplate.Kind


# --- discounts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "fields", "amount_fen", "discount_fen"),
    [
        (Kind.CASH_OFF, {"face_value_fen": 2_000, "min_spend_fen": 10_000}, 10_000, 2_000),
        (Kind.CASH_OFF, {"face_value_fen": 2_000, "min_spend_fen": 10_000}, 9_999, 0),
        (Kind.CASH_OFF, {"face_value_fen": 2_000, "min_spend_fen": 0}, 1_500, 1_500),
        (Kind.PERCENT_OFF, {"percent_off_bp": 1_500, "max_discount_fen": 3_000}, 10_001, 1_500),
        (Kind.PERCENT_OFF, {"percent_off_bp": 1_500, "max_discount_fen": 3_000}, 100_000, 3_000),
        (Kind.PERCENT_OFF, {"percent_off_bp": 1_500, "max_discount_fen": None}, 100_000, 15_000),
        (Kind.VOUCHER, {"face_value_fen": 5_000}, 3_000, 3_000),
        (Kind.VOUCHER, {"face_value_fen": 5_000}, 8_000, 5_000),
        (Kind.GIFT, {"gift_description": "latte"}, 8_000, 0),
    ],
)
def test_discount_by_kind(kind, fields, amount_fen, discount_fen):
    template = CouponTemplate(kind=kind, **fields)

    assert services.coupon_discount_fen(template=template, amount_fen=amount_fen) == discount_fen


# --- templates: what the database refuses -----------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"kind": Kind.CASH_OFF, "face_value_fen": 0, "valid_days": 7},
        {"kind": Kind.PERCENT_OFF, "percent_off_bp": 10_000, "valid_days": 7},
        {"kind": Kind.GIFT, "gift_description": "", "valid_days": 7},
        {"kind": Kind.VOUCHER, "face_value_fen": 100},  # neither a window nor days
        {"kind": Kind.VOUCHER, "face_value_fen": 100, "valid_days": 7, **window(1, 1)},  # both
        {"kind": Kind.VOUCHER, "face_value_fen": 100, **window(-2, -1)} | {"valid_until": timezone.now() - timedelta(days=3)},
        {"kind": Kind.VOUCHER, "face_value_fen": 100, "valid_days": 7, "funded_by": "merchant"},  # the mall's, merchant-funded
        {"kind": Kind.VOUCHER, "face_value_fen": 100, "valid_days": 7, "per_member_limit": 0},
        {"kind": Kind.VOUCHER, "face_value_fen": 100, "valid_days": 7, "total_quota": 1, "issued_count": 2},
    ],
)
def test_database_refuses_an_inconsistent_template(fields):
    with pytest.raises(IntegrityError), transaction.atomic():
        CouponTemplate.objects.create(name="bad", **fields)


# --- issue ----------------------------------------------------------------------------------


def test_issue_with_valid_days_runs_from_the_issue(template, member):
    at = timezone.now()

    coupon = issue(template, member, at=at)

    assert (coupon.status, coupon.valid_from, coupon.valid_until) == (Coupon.Status.ISSUED, at, at + timedelta(days=30))
    assert len(coupon.code) == 16 and coupon.code.isalnum()
    template.refresh_from_db()
    assert template.issued_count == 1
    assert list(coupon.events.values_list("kind", "detail")) == [("issued", {"via": "admin"})]


def test_issue_with_a_window_copies_the_window(member):
    fields = window(1, 5)
    template = make_template(kind=Kind.VOUCHER, **fields)

    coupon = issue(template, member)

    assert (coupon.valid_from, coupon.valid_until) == (fields["valid_from"], fields["valid_until"])


def test_issue_refuses_beyond_the_total_quota(member):
    template = make_template(total_quota=2, per_member_limit=5)
    issue(template, member)
    issue(template, member)

    with pytest.raises(services.QuotaExhausted):
        issue(template, member)

    template.refresh_from_db()
    assert (template.issued_count, Coupon.objects.count()) == (2, 2)


def test_issue_refuses_beyond_the_per_member_limit(member):
    template = make_template(per_member_limit=2)
    issue(template, member)
    issue(template, member)

    with pytest.raises(services.MemberLimitReached):
        issue(template, member)

    assert sorted(Coupon.objects.values_list("seq", flat=True)) == [1, 2]
    issue(template, make_member())  # another member is not limited by this one


def test_issue_with_the_same_key_returns_the_first_coupon(template, member):
    first = issue(template, member, idempotency_key="campaign:1:member")

    again = issue(template, member, idempotency_key="campaign:1:member")

    assert again.pk == first.pk
    template.refresh_from_db()
    assert template.issued_count == 1


def test_issue_key_of_another_template_is_a_conflict(template, member):
    issue(template, member, idempotency_key="k1")

    with pytest.raises(services.ledger.IdempotencyConflict):
        issue(make_template(), member, idempotency_key="k1")


def test_issue_refuses_a_paused_template_an_ended_window_and_a_banned_member(template, member):
    paused = make_template(status=CouponTemplate.Status.PAUSED)
    ended = make_template(kind=Kind.VOUCHER, **window(10, -1))
    banned = make_member()
    Member.objects.filter(pk=banned.pk).update(status=Member.Status.BANNED)  # staff ban in the admin
    banned.refresh_from_db()

    with pytest.raises(services.TemplatePaused):
        issue(paused, member)
    with pytest.raises(services.TemplateEnded):
        issue(ended, member)
    with pytest.raises(services.ledger.MemberNotActive):
        issue(template, banned)
    assert not Coupon.objects.exists()


# --- void and expire --------------------------------------------------------------------------


def test_void_cancels_an_unused_coupon_once(template, member, admin_user):
    coupon = issue(template, member)

    services.coupon_void(coupon=coupon, reason="wrong member", operator=admin_user)

    coupon.refresh_from_db()
    assert coupon.status == Coupon.Status.VOID
    event = coupon.events.get(kind=CouponEvent.Kind.VOIDED)
    assert (event.operator, event.detail) == (admin_user, {"reason": "wrong member"})
    with pytest.raises(services.CouponVoid):
        services.coupon_void(coupon=coupon, reason="again")


def test_expire_due_expires_only_issued_coupons_past_their_end(template, member):
    now = timezone.now()
    due = [issue(template, make_member(), at=now - timedelta(days=31)) for _ in range(3)]
    fresh = issue(template, member, at=now)
    voided = issue(template, make_member(), at=now - timedelta(days=40))
    services.coupon_void(coupon=voided, reason="test")

    assert services.coupons_expire_due(now=now, batch_size=2) == 3
    assert services.coupons_expire_due(now=now) == 0

    assert set(Coupon.objects.filter(status=Coupon.Status.EXPIRED).values_list("pk", flat=True)) == {c.pk for c in due}
    assert Coupon.objects.get(pk=fresh.pk).status == Coupon.Status.ISSUED
    assert Coupon.objects.get(pk=voided.pk).status == Coupon.Status.VOID
    assert CouponEvent.objects.filter(kind=CouponEvent.Kind.EXPIRED).count() == 3


def test_the_nightly_task_expires_coupons_past_their_validity_and_its_schedule_exists():
    from django_q.models import Schedule

    from coupons import tasks

    assert Schedule.objects.filter(func="coupons.tasks.coupons_expire_due", schedule_type="D").count() == 1
    assert tasks.coupons_expire_due() == 0


def test_the_expiry_command_expires_what_is_past_with_progress_and_twice_does_nothing(member):
    from io import StringIO

    from django.core.management import call_command

    template = make_template(per_member_limit=3)
    coupons = [issue(template, member) for _ in range(3)]
    Coupon.objects.filter(pk__in=[c.pk for c in coupons[:2]]).update(
        valid_from=timezone.now() - timedelta(days=2), valid_until=timezone.now() - timedelta(minutes=1)
    )
    out = StringIO()
    call_command("coupons_expire", "--batch-size", "1", stdout=out)
    assert "coupons expired: 2/2" in out.getvalue() and "2 coupons expired." in out.getvalue()
    out = StringIO()
    call_command("coupons_expire", stdout=out)
    assert "nothing to do" in out.getvalue()
    assert CouponEvent.objects.filter(kind=CouponEvent.Kind.EXPIRED).count() == 2
    assert Coupon.objects.get(pk=coupons[2].pk).status == Coupon.Status.ISSUED
