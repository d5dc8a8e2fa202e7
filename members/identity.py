"""Who a channel user is: find or create the member behind an identity, link by unionid,
and merge two members who turn out to be one person.

A shopper never fills in a form: the first time WeChat or Alipay tells us an openid,
user_id or open_id we have not seen, that person becomes a member on the spot. WeChat's
unionid is the same for one person across our official account and mini-program, so it
links their identities into one member; if both already had a member, the newer is
merged into the older through the ledger (points are moved, never created or lost).

Alipay names a user by their user_id, the same in every app, or, in apps on its open_id
standard (every app created since 2023), by an open_id, one per person and app: the
Alipay identity is whichever the platform gives (``alipay_identity``).
"""

from collections.abc import Mapping
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from core.errors import ApplicationError
from members import ledger, services, tiers
from members.models import Identity, Member, MiniappSubscription, Plaza, Visit

Channel = Identity.Channel


class MemberBanned(ApplicationError):
    """This member is banned."""

    code = "member_banned"
    status = 403


@dataclass(frozen=True)
class Found:
    member: Member
    created: bool


def member_active(member: Member) -> Member:
    """Follow a merged member to the one it was merged into."""
    seen = set()
    while member.status == Member.Status.MERGED and member.merged_into_id and member.pk not in seen:
        seen.add(member.pk)
        member = Member.objects.select_related("tier").get(pk=member.merged_into_id)
    return member


def member_by_identity(*, channel: str, external_id: str) -> Member | None:
    """The (active) member a channel knows as ``external_id``, or None. Reads only."""
    return _member_of(channel, external_id)


def _member_of(channel: str, external_id: str) -> Member | None:
    identity = Identity.objects.select_related("member__tier").filter(channel=channel, external_id=external_id).first()
    return member_active(identity.member) if identity else None


def member_for_identity(
    *,
    channel: str,
    external_id: str,
    unionid: str | None = None,
    join_channel: str,
    plaza: Plaza | None = None,
    nickname: str = "",
    refuse_banned: bool = True,
) -> Found:
    """The member behind ``channel:external_id`` (and ``unionid``), created if new."""
    external_id = (external_id or "").strip()
    unionid = (unionid or "").strip() or None
    if not external_id or len(external_id) > 128 or (unionid and len(unionid) > 128):
        raise ApplicationError("a channel identity is required", code="identity_invalid")
    for attempt in range(3):
        try:
            with transaction.atomic():
                found = _find_or_create(channel, external_id, unionid, join_channel, plaza, nickname)
            break
        except IntegrityError:
            # The same new shopper arrived twice at once; the other request created them.
            if attempt == 2:
                raise
    if refuse_banned and found.member.status == Member.Status.BANNED:
        raise MemberBanned(extra={"member_no": found.member.member_no})
    return found


def _find_or_create(channel, external_id, unionid, join_channel, plaza, nickname) -> Found:
    by_channel = _member_of(channel, external_id)
    by_union = _member_of(Channel.WECHAT_UNIONID, unionid) if unionid else None
    if by_channel and by_union and by_channel.pk != by_union.pk:
        older, newer = sorted([by_channel, by_union], key=lambda m: m.pk)
        return Found(member_merge(source=newer, target=older, reason=f"same unionid {unionid}"), created=False)
    member = by_channel or by_union
    created = member is None
    if created:
        member = services.member_create(join_channel=join_channel, plaza=plaza, nickname=nickname)
    if by_channel is None:
        Identity.objects.create(member=member, channel=channel, external_id=external_id)
    if unionid and by_union is None:
        Identity.objects.create(member=member, channel=Channel.WECHAT_UNIONID, external_id=unionid)
    return Found(member, created)


def alipay_identity(answer: Mapping) -> tuple[str, str] | None:
    """``(channel, external_id)`` of the user an Alipay answer names (alipay.system.oauth.token):
    its ``user_id``, else its ``open_id``; None when it names neither usably."""
    for channel, field in ((Channel.ALIPAY_USER_ID, "user_id"), (Channel.ALIPAY_OPEN_ID, "open_id")):
        value = answer.get(field)
        if isinstance(value, str) and 0 < len(value.strip()) <= 128:
            return channel, value.strip()
    return None


def alipay_channel_of(external_id: str) -> str:
    """The channel of an Alipay user named without saying which kind (the service
    window's FromAlipayUserId): a user_id is digits ("2088" and twelve more), an open_id
    letters and digits ("074a1CcTG1Le…")."""
    return Channel.ALIPAY_USER_ID if external_id.isascii() and external_id.isdigit() else Channel.ALIPAY_OPEN_ID


def identity_link_unionid(*, member: Member, unionid: str) -> Member:
    """Learned a follower's unionid later (user info API): link, merging if needed."""
    unionid = (unionid or "").strip()
    if not unionid:
        return member
    with transaction.atomic():
        other = _member_of(Channel.WECHAT_UNIONID, unionid)
        if other is None:
            try:
                with transaction.atomic():
                    Identity.objects.create(member=member, channel=Channel.WECHAT_UNIONID, external_id=unionid)
            except IntegrityError:
                other = _member_of(Channel.WECHAT_UNIONID, unionid)
        if other is None or other.pk == member.pk:
            return member
        older, newer = sorted([member, other], key=lambda m: m.pk)
        return member_merge(source=newer, target=older, reason=f"same unionid {unionid}")


def member_merge(*, source: Member, target: Member, reason: str) -> Member:
    """Fold ``source`` into ``target``: points (through the ledger, keeping expiry),
    identities, visits, coupons, phone and the better tier. ``source`` stays, marked merged.
    Safe to run twice."""
    if source.pk == target.pk:
        return target
    with transaction.atomic():
        # The ledger transfer locks both wallets (in id order) before anything moves.
        ledger.points_transfer(source=source, target=target, reason=f"merge: {reason}"[:200], idempotency_key=f"merge:{source.pk}:{target.pk}")
        source = Member.objects.select_related("tier").get(pk=source.pk)
        target = Member.objects.select_related("tier").get(pk=target.pk)
        if source.status == Member.Status.MERGED:
            return target
        Identity.objects.filter(member=source).update(member=target)
        Visit.objects.filter(member=source).update(member=target)
        _subscriptions_move(source, target)
        # Imported here: coupons build on members, not the other way round.
        from coupons.merge import coupons_move

        coupons_move(source=source, target=target)
        tiers.tier_spend_merge(source=source, target=target, at=timezone.now())
        changed = []
        if source.phone and not target.phone:
            phone = source.phone
            Member.objects.filter(pk=source.pk).update(phone=None)
            target.phone = phone
            changed.append("phone")
        if source.tier and (target.tier is None or source.tier.threshold_fen > target.tier.threshold_fen):
            target.tier = source.tier
            changed.append("tier")
        if source.last_visit_at and (target.last_visit_at is None or source.last_visit_at > target.last_visit_at):
            target.last_visit_at, target.last_visit_plaza_id = source.last_visit_at, source.last_visit_plaza_id
            changed += ["last_visit_at", "last_visit_plaza"]
        if source.status == Member.Status.BANNED:
            target.status = Member.Status.BANNED
            changed.append("status")
        if changed:
            target.save(update_fields=changed)
        Member.objects.filter(pk=source.pk).update(status=Member.Status.MERGED, merged_into=target)
    return target


def _subscriptions_move(source: Member, target: Member) -> None:
    """Mini-program subscribe grants follow the person: counts add up per template."""
    for grant in MiniappSubscription.objects.filter(member=source):
        moved = MiniappSubscription.objects.filter(member=target, template_id=grant.template_id).update(
            remaining=F("remaining") + grant.remaining
        )
        if moved:
            grant.delete()
        else:
            MiniappSubscription.objects.filter(pk=grant.pk).update(member=target)


def identity_touch(*, channel: str, external_id: str, following: bool | None = None) -> None:
    """Record an inbound message or event (the 48-hour window) and follow / unfollow."""
    fields = {"last_inbound_at": timezone.now()}
    if following is not None:
        fields["is_following"] = following
    Identity.objects.filter(channel=channel, external_id=external_id).update(**fields)
