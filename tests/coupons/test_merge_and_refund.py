"""A merged member's coupons follow the person (coupons.merge), and a coupon bought in
the points mall can be taken back with its points (coupons.exchange_refunds)."""

import pytest

from coupons import services
from coupons.exchange_refunds import NotBoughtWithPoints, coupon_exchange_refund
from coupons.models import Campaign, CampaignTarget, Coupon, CouponEvent, CouponTemplate
from coupons.services import CouponUsed
from members import ledger
from members.identity import member_merge
from members.models import Account, Entry, Member
from tests.coupons.conftest import issue, make_template
from tests.factories import assert_ledger_invariants, make_member
from tests.payments.conftest import grant

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def ledger_stays_consistent():
    yield
    assert_ledger_invariants()


# --- merge -------------------------------------------------------------------------------------


def test_merge_moves_every_coupon_renumbered_with_its_history(shop):
    template = make_template(merchant=shop.merchant, per_member_limit=2)
    older, newer = make_member(), make_member()
    kept = issue(template, older)
    moved = [issue(template, newer), issue(template, newer)]
    services.coupon_void(coupon=moved[1], reason="test")

    member_merge(source=newer, target=older, reason="same unionid")

    assert not Coupon.objects.filter(member=newer).exists()
    rows = {c.pk: (c.member_id, c.seq, c.status) for c in Coupon.objects.filter(template=template)}
    assert rows[kept.pk] == (older.pk, 1, Coupon.Status.ISSUED)
    assert {rows[moved[0].pk][1], rows[moved[1].pk][1]} == {2, 3}
    assert rows[moved[1].pk][2] == Coupon.Status.VOID
    assert CouponEvent.objects.filter(coupon=moved[0], kind=CouponEvent.Kind.MOVED).count() == 1
    # The moved coupon still works for the person it now belongs to.
    assert services.member_coupon(member=older, coupon_id=moved[0].pk).pk == moved[0].pk


def test_merge_twice_moves_nothing_twice(shop):
    template = make_template(merchant=shop.merchant)
    older, newer = make_member(), make_member()
    coupon = issue(template, newer)
    member_merge(source=newer, target=older, reason="x")
    member_merge(source=newer, target=older, reason="x")
    assert CouponEvent.objects.filter(coupon=coupon, kind=CouponEvent.Kind.MOVED).count() == 1
    assert Coupon.objects.get(pk=coupon.pk).member_id == older.pk


def test_merge_keeps_each_campaigns_groups_as_drawn(shop):
    template = make_template()
    older, newer = make_member(), make_member()
    from django.utils import timezone
    now = timezone.now()
    both = Campaign.objects.create(name="both", template=template, message_title="t", message_body="b", starts_at=now)
    only_newer = Campaign.objects.create(name="one", template=template, message_title="t", message_body="b", starts_at=now)
    CampaignTarget.objects.create(campaign=both, member=older, group="holdout", targeted_at=now)
    CampaignTarget.objects.create(campaign=both, member=newer, group="treated", targeted_at=now)
    CampaignTarget.objects.create(campaign=only_newer, member=newer, group="treated", targeted_at=now)

    member_merge(source=newer, target=older, reason="x")

    assert CampaignTarget.objects.get(campaign=only_newer).member_id == older.pk
    assert set(CampaignTarget.objects.filter(campaign=both).values_list("member_id", "group")) == {
        (older.pk, "holdout"), (newer.pk, "treated"),
    }


# --- points mall refunds ----------------------------------------------------------------------


def _bought(member, **fields):
    template = make_template(kind=CouponTemplate.Kind.VOUCHER, points_price=300, **fields)
    grant(member, 1_000)
    return services.coupon_exchange(member=member, template=template, idempotency_key="k1")


def test_mall_coupon_refund_gives_the_points_back_from_promotions(shop):
    member = make_member()
    coupon = _bought(member)
    assert ledger.member_points_balance(member=member) == 700

    reversal = coupon_exchange_refund(coupon=coupon, reason="shopper changed their mind")

    assert ledger.member_points_balance(member=member) == 1_000
    assert Coupon.objects.get(pk=coupon.pk).status == Coupon.Status.VOID
    legs = dict(Entry.objects.filter(transaction=reversal, lot__isnull=True).values_list("account__kind", "amount"))
    assert legs == {Account.Kind.PROMOTIONS: -300}
    # Again: the same reversal, nothing more.
    assert coupon_exchange_refund(coupon=coupon, reason="again").pk == reversal.pk
    assert ledger.member_points_balance(member=member) == 1_000


def test_merchant_coupon_refund_takes_the_points_from_its_acceptance_account(shop):
    member = make_member()
    coupon = _bought(member, merchant=shop.merchant)
    reversal = coupon_exchange_refund(coupon=coupon, reason="x")
    legs = dict(Entry.objects.filter(transaction=reversal, lot__isnull=True).values_list("account__kind", "amount"))
    assert legs == {Account.Kind.MERCHANT_ACCEPTANCE: -300}
    assert ledger.member_points_balance(member=member) == 1_000


def test_a_void_coupon_cannot_be_refunded_and_nothing_moves(shop):
    member = make_member()
    coupon = _bought(member)
    Coupon.objects.filter(pk=coupon.pk).update(status=Coupon.Status.VOID)
    coupon.refresh_from_db()
    with pytest.raises(Exception) as raised:
        coupon_exchange_refund(coupon=coupon, reason="x")
    assert getattr(raised.value, "code", "") in {"coupon_void", CouponUsed.code}
    assert ledger.member_points_balance(member=member) == 700


def test_a_coupon_not_bought_with_points_has_nothing_to_refund(shop):
    member = make_member()
    coupon = issue(make_template(), member)
    with pytest.raises(NotBoughtWithPoints):
        coupon_exchange_refund(coupon=coupon, reason="x")
    assert Coupon.objects.get(pk=coupon.pk).status == Coupon.Status.ISSUED


def test_refund_after_merge_credits_the_member_it_lives_on(shop):
    older, newer = make_member(), make_member()
    coupon = _bought(newer)
    member_merge(source=newer, target=older, reason="x")
    coupon.refresh_from_db()
    coupon_exchange_refund(coupon=coupon, reason="x")
    assert ledger.member_points_balance(member=older) == 1_000
    assert Member.objects.get(pk=newer.pk).status == Member.Status.MERGED
