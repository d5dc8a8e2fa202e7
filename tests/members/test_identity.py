import pytest

from members import identity, ledger
from members.models import Identity, Member
from tests.factories import assert_ledger_invariants, make_store

pytestmark = pytest.mark.django_db
Channel = Identity.Channel


def find(channel, external_id, unionid=None):
    return identity.member_for_identity(channel=channel, external_id=external_id, unionid=unionid, join_channel=Member.Channel.WECHAT)


def test_a_new_openid_becomes_a_member_on_the_spot():
    found = find(Channel.WECHAT_OPENID, "o-1")
    assert found.created and found.member.wallet.balance == 0
    again = find(Channel.WECHAT_OPENID, "o-1")
    assert not again.created and again.member.pk == found.member.pk
    assert Member.objects.count() == 1


def test_unionid_links_a_follower_and_a_mini_program_user_into_one_member():
    follower = find(Channel.WECHAT_OPENID, "oa-1", unionid="u-1").member
    shopper = find(Channel.MINIAPP_OPENID, "mp-1", unionid="u-1").member
    assert shopper.pk == follower.pk
    assert set(follower.identities.values_list("channel", flat=True)) == {Channel.WECHAT_OPENID, Channel.MINIAPP_OPENID, Channel.WECHAT_UNIONID}


def test_two_members_that_share_a_unionid_are_merged_through_the_ledger():
    store = make_store()
    follower = find(Channel.WECHAT_OPENID, "oa-1").member
    shopper = find(Channel.MINIAPP_OPENID, "mp-1").member
    ledger.points_earn(member=follower, store=store, amount_fen=10_000, idempotency_key="a")
    ledger.points_earn(member=shopper, store=store, amount_fen=25_000, idempotency_key="b")
    assert find(Channel.WECHAT_OPENID, "oa-1", unionid="u-1").member.pk == follower.pk  # unionid learned
    merged = find(Channel.MINIAPP_OPENID, "mp-1", unionid="u-1").member
    assert merged.pk == follower.pk  # the older member survives
    shopper.refresh_from_db()
    assert shopper.status == Member.Status.MERGED and shopper.merged_into_id == follower.pk
    assert ledger.member_points_balance(member=follower) == 350
    assert ledger.member_points_balance(member=shopper) == 0
    assert find(Channel.MINIAPP_OPENID, "mp-1").member.pk == follower.pk
    assert_ledger_invariants()


def test_unionid_learned_later_merges_once():
    follower = find(Channel.WECHAT_OPENID, "oa-1").member
    shopper = find(Channel.MINIAPP_OPENID, "mp-1", unionid="u-1").member
    ledger.points_grant(member=follower, points=30, reason="x", idempotency_key="g")
    survivor = identity.identity_link_unionid(member=follower, unionid="u-1")
    assert survivor.pk == follower.pk
    assert identity.identity_link_unionid(member=follower, unionid="u-1").pk == follower.pk
    assert Member.objects.get(pk=shopper.pk).status == Member.Status.MERGED
    assert ledger.member_points_balance(member=follower) == 30


def test_merge_moves_phone_and_keeps_the_better_tier():
    older = find(Channel.WECHAT_OPENID, "oa-1").member
    newer = find(Channel.ALIPAY_USER_ID, "2088-1").member
    Member.objects.filter(pk=newer.pk).update(phone="+8613800138000")
    newer.refresh_from_db()
    newer.tier = newer.tier.__class__.objects.get(code="gold")
    newer.save(update_fields=["tier"])
    survivor = identity.member_merge(source=newer, target=older, reason="staff")
    assert survivor.phone == "+8613800138000" and survivor.tier.code == "gold"
    assert Member.objects.get(pk=newer.pk).phone is None
    assert identity.member_merge(source=newer, target=older, reason="staff").pk == older.pk


def test_a_banned_member_is_refused():
    member = find(Channel.WECHAT_OPENID, "o-1").member
    Member.objects.filter(pk=member.pk).update(status=Member.Status.BANNED)
    with pytest.raises(identity.MemberBanned) as exc:
        find(Channel.WECHAT_OPENID, "o-1")
    assert exc.value.code == "member_banned" and exc.value.status == 403


@pytest.mark.parametrize("external_id", ["", "   ", "x" * 129])
def test_an_empty_or_oversized_identity_is_refused(external_id):
    with pytest.raises(identity.ApplicationError) as exc:
        find(Channel.WECHAT_OPENID, external_id)
    assert exc.value.code == "identity_invalid"
    assert not Member.objects.exists()


def test_touch_records_following_and_the_last_inbound_message():
    member = find(Channel.WECHAT_OPENID, "o-1").member
    identity.identity_touch(channel=Channel.WECHAT_OPENID, external_id="o-1", following=True)
    ident = member.identities.get(channel=Channel.WECHAT_OPENID)
    assert ident.is_following and ident.last_inbound_at is not None
    identity.identity_touch(channel=Channel.WECHAT_OPENID, external_id="o-1", following=False)
    assert not member.identities.get(channel=Channel.WECHAT_OPENID).is_following


def test_merge_carries_mini_program_subscriptions_over():
    from members.models import MiniappSubscription

    older = find(Channel.WECHAT_OPENID, "oa-1").member
    newer = find(Channel.MINIAPP_OPENID, "mp-1").member
    MiniappSubscription.objects.create(member=older, template_id="T1", remaining=1)
    MiniappSubscription.objects.create(member=newer, template_id="T1", remaining=2)
    MiniappSubscription.objects.create(member=newer, template_id="T2", remaining=1)
    identity.member_merge(source=newer, target=older, reason="same person")
    held = dict(MiniappSubscription.objects.filter(member=older).values_list("template_id", "remaining"))
    assert held == {"T1": 3, "T2": 1}
    assert not MiniappSubscription.objects.filter(member=newer).exists()


def test_member_by_identity_reads_without_creating_and_follows_merges():
    assert identity.member_by_identity(channel=Channel.WECHAT_OPENID, external_id="nobody") is None
    assert not Member.objects.exists()
    older = find(Channel.WECHAT_OPENID, "oa-1").member
    newer = find(Channel.MINIAPP_OPENID, "mp-1").member
    identity.member_merge(source=newer, target=older, reason="same person")
    assert identity.member_by_identity(channel=Channel.MINIAPP_OPENID, external_id="mp-1").pk == older.pk
