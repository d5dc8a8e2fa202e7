"""Reminders of points about to expire: one push per member and expiry day.

Set-based and in batches: one grouped query finds, for a batch of members, the points
expiring on each local day within the window; the pushes and their inbox copies are
written with two bulk INSERTs. The push's event key (``expiry_reminder:<member>:<day>``,
unique) makes every run idempotent: killed half-way and run again, it writes only what
is missing. Delivery is the outbox's: the every-minute sweep sends due pushes (within
each member's daily cap).
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.conf import settings
from django.db import IntegrityError
from django.db.models import Sum
from django.db.models.functions import TruncDate
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import override

from core.jobs import deadline_check
from members.models import Lot, Member
from members.pushes import pushes_write

EVENT_EXPIRY_REMINDER = "expiry_reminder"
REMINDER_WINDOW_DAYS = 30


@dataclass(frozen=True)
class ReminderRun:
    members: int  # members with points expiring in the window
    written: int  # reminders written by this run (the rest existed already)


def reminder_key(member_id: int, day: date) -> str:
    return f"{EVENT_EXPIRY_REMINDER}:{member_id}:{day.isoformat()}"


def _expiring(now: datetime, horizon: datetime):
    return Lot.objects.filter(
        status=Lot.Status.AVAILABLE, remaining__gt=0, expires_at__gt=now, expires_at__lte=horizon,
        member__status=Member.Status.ACTIVE,
    )


def _message(points: int, day: date) -> tuple[str, str]:
    values = {"points": points, "date": f"{day.month}月{day.day}日"}
    with override(settings.LANGUAGE_CODE):
        title = _("你有 %(points)s 积分即将过期") % values
        body = _("你有 %(points)s 积分将于%(date)s过期，记得到店使用。") % values
    return title, body


def _write(wanted: dict, now: datetime) -> int:
    new = []
    for key, row in wanted.items():
        title, body = _message(row["points"], row["day"])
        new.append({
            "member_id": row["member_id"], "event": EVENT_EXPIRY_REMINDER, "event_key": key, "title": title, "body": body,
            "data": {"points": row["points"], "expires_on": row["day"].isoformat()}, "next_attempt_at": now,
        })
    return len(pushes_write(pushes=new))


def expiry_reminders_send(
    *, at: datetime | None = None, within_days: int = REMINDER_WINDOW_DAYS, batch_size: int = 2000,
    progress: Callable[[int, int], None] | None = None, deadline=None,
) -> ReminderRun:
    """Write a reminder for every (member, local day) with points expiring within ``within_days``."""
    now = at or timezone.now()
    expiring = _expiring(now, now + timedelta(days=within_days))
    member_ids = list(expiring.order_by("member_id").values_list("member_id", flat=True).distinct())
    written = 0
    for start in range(0, len(member_ids), batch_size):
        batch = member_ids[start:start + batch_size]
        rows = (
            expiring.filter(member_id__in=batch)
            .annotate(day=TruncDate("expires_at", tzinfo=timezone.get_current_timezone()))
            .values("member_id", "day").annotate(points=Sum("remaining")).order_by("member_id", "day")
        )
        wanted = {reminder_key(row["member_id"], row["day"]): row for row in rows}
        for attempt in range(3):
            try:
                written += _write(wanted, now)
                break
            except IntegrityError:  # another run wrote some of these meanwhile: skip them now
                if attempt == 2:
                    raise
        if progress is not None:
            progress(min(start + batch_size, len(member_ids)), len(member_ids))
        deadline_check(deadline)
    return ReminderRun(members=len(member_ids), written=written)
