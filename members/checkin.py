"""Check-in: a shopper scans a plaza's QR code and earns mall-funded points.

At most one check-in per member, plaza and local day (a database constraint, and
the ledger key ``checkin:<member>:<plaza>:<date>``). Every CHECKIN_STREAK_DAYS-th
consecutive day with a check-in anywhere in the group adds CHECKIN_STREAK_BONUS.
"""

from dataclasses import dataclass
from datetime import date, timedelta

from django.conf import settings
from django.core import signing
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.errors import ApplicationError, NotFound
from members import ledger, pushes
from members.models import Checkin, Member, Plaza, Visit
from members.services import visit_record

TOKEN_SALT = "members.checkin.plaza"
SCENE_PREFIX = "checkin:"


class CheckinTokenInvalid(ApplicationError):
    """This check-in link is not valid."""

    code = "checkin_token_invalid"


@dataclass(frozen=True)
class CheckinResult:
    checkin: Checkin
    already: bool  # today's check-in at this plaza had been done before
    points: int  # points this check-in gave (0 when already)
    bonus_points: int
    streak: int
    points_balance: int
    plaza: Plaza


def checkin_token_make(*, plaza: Plaza) -> str:
    """The signed token of a plaza's printed check-in link (/m/checkin/<token>/).

    Permanent: printed posters do not expire. Signed with SECRET_KEY, so a token
    for a plaza cannot be made up; the salt keeps it from passing for any other token.
    """
    return signing.dumps({"p": plaza.code}, salt=TOKEN_SALT, compress=True)


def checkin_token_read(token: str) -> Plaza:
    try:
        code = signing.loads(token, salt=TOKEN_SALT)["p"]
    except (signing.BadSignature, KeyError, TypeError):
        raise CheckinTokenInvalid() from None
    return plaza_for_checkin(code=code)


def checkin_scene(*, plaza: Plaza) -> str:
    """The scene of a plaza's WeChat parametric QR code."""
    return SCENE_PREFIX + plaza.code


def plaza_for_checkin(*, code: str) -> Plaza:
    plaza = Plaza.objects.filter(code=code, is_active=True).first()
    if plaza is None:
        raise NotFound("no such plaza", code="plaza_not_found")
    return plaza


def _streak_on(member: Member, day: date) -> int:
    """The streak a check-in on ``day`` makes: one more than yesterday's, or 1."""
    today = Checkin.objects.filter(member=member, day=day).order_by("-streak").values_list("streak", flat=True).first()
    if today:
        return today
    yesterday = Checkin.objects.filter(member=member, day=day - timedelta(days=1)).order_by("-streak").values_list("streak", flat=True).first()
    return (yesterday or 0) + 1


def checkin(*, member: Member, plaza: Plaza, push: bool = True) -> CheckinResult:
    """Check ``member`` in at ``plaza`` today. Safe to repeat: the second time is ``already``.

    ``push=False`` when the caller answers the shopper itself (a bot's reply to the
    scan): the check-in still lands in the inbox's history, but no second message.
    """
    now = timezone.now()
    day = timezone.localdate(now)
    existing = Checkin.objects.filter(member=member, plaza=plaza, day=day).first()
    if existing is None:
        try:
            with transaction.atomic():
                existing = _checkin_new(member, plaza, day, now, push)
                already = False
        except IntegrityError:  # the same scan arrived twice at once
            existing = Checkin.objects.get(member=member, plaza=plaza, day=day)
            already = True
    else:
        already = True
    return CheckinResult(
        checkin=existing, already=already, points=0 if already else existing.points,
        bonus_points=0 if already else existing.bonus_points, streak=existing.streak,
        points_balance=ledger.member_points_balance(member=member), plaza=plaza,
    )


def _checkin_new(member: Member, plaza: Plaza, day: date, now, push: bool) -> Checkin:
    streak = _streak_on(member, day)
    first_today = not Checkin.objects.filter(member=member, day=day).exists()
    bonus = settings.CHECKIN_STREAK_BONUS if first_today and streak % settings.CHECKIN_STREAK_DAYS == 0 else 0
    record = Checkin.objects.create(
        member=member, plaza=plaza, day=day, streak=streak, points=settings.CHECKIN_POINTS, bonus_points=bonus, created_at=now
    )
    if settings.CHECKIN_POINTS > 0:
        ledger.points_grant(
            member=member, points=settings.CHECKIN_POINTS, reason=f"check-in at {plaza.code}",
            idempotency_key=f"checkin:{member.pk}:{plaza.code}:{day.isoformat()}",
        )
    if bonus:
        ledger.points_grant(
            member=member, points=bonus, reason=f"{streak}-day check-in streak",
            idempotency_key=f"checkin-streak:{member.pk}:{day.isoformat()}",
        )
    visit_record(member=member, plaza=plaza, kind=Visit.Kind.CHECKIN, at=now)
    if push:
        pushes.push_checkin(member=member, plaza=plaza, checkin=record)
    return record
