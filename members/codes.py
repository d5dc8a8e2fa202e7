"""The dynamic member code a POS scans: numeric, signed, rotating every minute.

Layout (23 digits, Code 128 and QR friendly):

    member_no (12) | time step mod 10 (1) | MAC (10)

The MAC is an HMAC-SHA256 of member number and time step under a key derived from
SECRET_KEY, reduced to 10 decimal digits: forging a code takes ~10^10 (> 2^33)
guesses, and every wrong guess is counted against the caller (``core.ratelimit.guesses_counted``).
A code is valid during its 60-second step and a short grace after it, so a code shown
just before rotation still scans; after that it is refused as expired, so a photo of
someone's card is worthless a minute later.
"""

import hmac
from dataclasses import dataclass
from datetime import datetime, timezone as dt_timezone

from django.utils import timezone
from django.utils.crypto import salted_hmac

from core.errors import ApplicationError, NotFound
from core.ratelimit import guesses_counted
from members.models import Member

STEP_SECONDS = 60
GRACE_SECONDS = 30
MAC_DIGITS = 10
CODE_LENGTH = 12 + 1 + MAC_DIGITS
# Wrong codes one caller may send in a window before it is refused outright.
GUESS_LIMIT = 20
GUESS_WINDOW_SECONDS = 600


class MemberCodeInvalid(ApplicationError):
    """This is not a valid member code."""

    code = "member_code_invalid"


class MemberCodeExpired(ApplicationError):
    """This member code has expired: ask the shopper to refresh their member card."""

    code = "member_code_expired"


class TooManyInvalidCodes(ApplicationError):
    """Too many invalid member codes; try again later."""

    code = "too_many_invalid_codes"
    status = 429


@dataclass(frozen=True)
class MemberCode:
    code: str
    expires_at: datetime  # when the shopper's screen should have shown the next one


def _mac(member_no: str, step: int) -> str:
    digest = salted_hmac("members.codes.member_code", f"{member_no}:{step}", algorithm="sha256").digest()
    return str(int.from_bytes(digest[:8], "big") % 10**MAC_DIGITS).zfill(MAC_DIGITS)


def _step(at: datetime) -> int:
    return int(at.timestamp()) // STEP_SECONDS


def member_code_issue(*, member: Member, now: datetime | None = None) -> MemberCode:
    step = _step(now or timezone.now())
    code = f"{member.member_no}{step % 10}{_mac(member.member_no, step)}"
    expires_at = datetime.fromtimestamp((step + 1) * STEP_SECONDS, tz=dt_timezone.utc)
    return MemberCode(code=code, expires_at=expires_at)


def member_code_check(*, code: str, caller: str, now: datetime | None = None) -> Member:
    """The member a scanned code belongs to, or an error with a stable code.

    ``caller`` names who is scanning (e.g. the API key prefix): wrong guesses are
    counted per caller, and past GUESS_LIMIT in the window every code is refused.
    """
    now = now or timezone.now()
    # A guess is reserved before the code is checked, so that however many race, at most
    # GUESS_LIMIT wrong codes are ever checked in a window (core.ratelimit).
    return guesses_counted(
        name="member-code-guesses", caller=caller, limit=GUESS_LIMIT, window_seconds=GUESS_WINDOW_SECONDS,
        attempt=lambda: _verify(code, now), wrong=(MemberCodeInvalid, MemberCodeExpired), refused=TooManyInvalidCodes,
        now=now,
    )


def _verify(code: str, now: datetime) -> Member:
    code = (code or "").strip()
    if len(code) != CODE_LENGTH or not code.isascii() or not code.isdigit():
        raise MemberCodeInvalid()
    member_no, step_digit, mac = code[:12], int(code[12]), code[13:]
    current = _step(now)
    # The step that ends in the last digit, at or before now; never one from the future.
    step = current - ((current - step_digit) % 10)
    if not hmac.compare_digest(_mac(member_no, step), mac):
        # A genuine code from up to an hour ago is "expired", not "invalid": the
        # shopper only needs to refresh their card.
        if any(hmac.compare_digest(_mac(member_no, step - 10 * k), mac) for k in range(1, 7)):
            raise MemberCodeExpired()
        raise MemberCodeInvalid()
    if now.timestamp() >= (step + 1) * STEP_SECONDS + GRACE_SECONDS:
        raise MemberCodeExpired()
    member = Member.objects.select_related("tier").filter(member_no=member_no).first()
    if member is None:
        raise NotFound(code="member_not_found")
    return member
