"""The rotating coupon code a shopper shows at the till: numeric, signed, one minute.

Layout (24 digits, one longer than a member code so the two never pass for each other):

    coupon id (13) | time step mod 10 (1) | MAC (10)

Like the member code (members/codes.py), but under its own key (another salt of
SECRET_KEY) and naming one coupon, not a member: forging one takes ~10^10 guesses, and
every wrong guess is counted against the caller (``core.ratelimit.guesses_counted``).
Valid during its 60-second step and a 30-second grace; older ones are expired.
"""

import hmac
from dataclasses import dataclass
from datetime import datetime, timezone as dt_timezone

from django.utils import timezone
from django.utils.crypto import salted_hmac

from core.errors import ApplicationError
from core.ratelimit import guesses_counted
from coupons.models import Coupon

STEP_SECONDS = 60
GRACE_SECONDS = 30
ID_DIGITS = 13
MAC_DIGITS = 10
CODE_LENGTH = ID_DIGITS + 1 + MAC_DIGITS
GUESS_LIMIT = 20
GUESS_WINDOW_SECONDS = 600


class CouponCodeInvalid(ApplicationError):
    """This is not a valid coupon code."""

    code = "coupon_code_invalid"


class CouponCodeExpired(ApplicationError):
    """This coupon code has expired: ask the shopper to refresh it."""

    code = "coupon_code_expired"


class TooManyInvalidCouponCodes(ApplicationError):
    """Too many invalid coupon codes; try again later."""

    code = "too_many_invalid_codes"
    status = 429


@dataclass(frozen=True)
class CouponCode:
    code: str
    expires_at: datetime


def _mac(coupon_id: str, step: int) -> str:
    digest = salted_hmac("coupons.codes.coupon_code", f"{coupon_id}:{step}", algorithm="sha256").digest()
    return str(int.from_bytes(digest[:8], "big") % 10**MAC_DIGITS).zfill(MAC_DIGITS)


def _step(at: datetime) -> int:
    return int(at.timestamp()) // STEP_SECONDS


def coupon_code_issue(*, coupon: Coupon, now: datetime | None = None) -> CouponCode:
    step = _step(now or timezone.now())
    coupon_id = str(coupon.pk).zfill(ID_DIGITS)
    expires_at = datetime.fromtimestamp((step + 1) * STEP_SECONDS, tz=dt_timezone.utc)
    return CouponCode(code=f"{coupon_id}{step % 10}{_mac(coupon_id, step)}", expires_at=expires_at)


def coupon_code_looks_rotating(code: str) -> bool:
    """Whether ``code`` has the shape of a rotating code (digits only); a coupon's static
    code has letters, and is refused at the till for another reason (shopper_required)."""
    code = (code or "").strip()
    return code.isascii() and code.isdigit()


def coupon_code_check(*, code: str, caller: str, now: datetime | None = None) -> Coupon:
    """The coupon a shown code names, or an error with a stable code; wrong guesses are
    counted per ``caller`` and past GUESS_LIMIT in the window every code is refused."""
    now = now or timezone.now()
    return guesses_counted(
        name="coupon-code-guesses", caller=caller, limit=GUESS_LIMIT, window_seconds=GUESS_WINDOW_SECONDS,
        attempt=lambda: _verify(code, now), wrong=(CouponCodeInvalid, CouponCodeExpired),
        refused=TooManyInvalidCouponCodes, now=now,
    )


def _verify(code: str, now: datetime) -> Coupon:
    code = (code or "").strip()
    if len(code) != CODE_LENGTH or not code.isascii() or not code.isdigit():
        raise CouponCodeInvalid()
    coupon_id, step_digit, mac = code[:ID_DIGITS], int(code[ID_DIGITS]), code[ID_DIGITS + 1:]
    current = _step(now)
    step = current - ((current - step_digit) % 10)
    if not hmac.compare_digest(_mac(coupon_id, step), mac):
        if any(hmac.compare_digest(_mac(coupon_id, step - 10 * k), mac) for k in range(1, 7)):
            raise CouponCodeExpired()
        raise CouponCodeInvalid()
    if now.timestamp() >= (step + 1) * STEP_SECONDS + GRACE_SECONDS:
        raise CouponCodeExpired()
    coupon = Coupon.objects.select_related("template", "member").filter(pk=int(coupon_id)).first()
    if coupon is None:  # signed by us, so it existed: deleted since
        raise CouponCodeInvalid()
    return coupon
