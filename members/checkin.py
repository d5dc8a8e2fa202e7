"""Check-in: a shopper at a plaza proves they are there and earns mall-funded points.

At most one check-in per member, plaza and local day (a database constraint, and
the ledger key ``checkin:<member>:<plaza>:<date>``). Every CHECKIN_STREAK_DAYS-th
consecutive day with a check-in anywhere in the group adds CHECKIN_STREAK_BONUS.

A check-in brings a code of the plaza, and the plaza decides which codes prove presence
(``Plaza.checkin_accepts_*``); ``checkin_attempt`` checks the proof, then ``checkin``
books it. The codes:

- permanent: the WeChat scene ``checkin:<plaza>`` and a link signed without expiry
  ({"p": code}). A photo of them works from home, every day: accepted only by a plaza
  that accepts the permanent code (new plazas do, as the contract says).
- printed: a link signed with an expiry ({"p": code, "e": unix time}), chosen by staff
  when they print the poster.
- screen: the rotating code of the check-in screen (``checkin_screen_code``): a new one
  every CHECKIN_SCREEN_REFRESH_SECONDS (30), each valid CHECKIN_SCREEN_TOKEN_SECONDS (60).
  In WeChat a temporary QR code with scene ``checkin:<plaza>:<token>``; elsewhere a
  link signed with its expiry ({"p", "e", "k": "s"}).

A location inside the plaza's geofence is a proof of its own, with any of the plaza's
codes (even an expired one is not: an expired code is always refused). The location
comes from the phone — the mini-program's or the browser's, or the official account's
LOCATION report — and a phone can be made to lie about it: it is a weaker proof than
the rotating code, for plazas without a screen.
"""

import logging
import math
import re
import zlib
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import timezone as dt_timezone

from django.conf import settings
from django.core import signing
from django.core.cache import cache
from django.db import IntegrityError, models, transaction
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac

from core import geo
from core.errors import ApplicationError, NotFound, PlatformError
from core.platforms import wechat_configured, wechat_temporary_qr_create
from members import ledger, pushes
from members.models import Checkin, Member, Plaza, Visit
from members.services import visit_record

logger = logging.getLogger(__name__)

TOKEN_SALT = "members.checkin.plaza"
SCREEN_SALT = "members.checkin.screen"
SCENE_PREFIX = "checkin:"
# WeChat's scene_str is at most 64 characters: "checkin:" + a plaza code (≤ 32) + ":" + this.
SCREEN_MAC_CHARS = 12
_SCREEN_TOKEN = re.compile(rf"([0-9a-f]{{1,12}})\.([0-9a-f]{{{SCREEN_MAC_CHARS}}})")


def screen_refresh_seconds() -> int:
    """How often the check-in screen shows a new code."""
    return getattr(settings, "CHECKIN_SCREEN_REFRESH_SECONDS", 30)


def _screen_ttl() -> int:
    return getattr(settings, "CHECKIN_SCREEN_TOKEN_SECONDS", 60)


def location_max_age() -> timedelta:
    """How long a reported location (the official account's LOCATION report) stands."""
    return timedelta(seconds=getattr(settings, "CHECKIN_LOCATION_MAX_AGE_SECONDS", 600))


def _seen_grace() -> timedelta:
    return timedelta(seconds=getattr(settings, "CHECKIN_SEEN_GRACE_SECONDS", 300))


def printed_link_days() -> int:
    """How long a printed poster's link stays valid unless staff choose otherwise."""
    return getattr(settings, "CHECKIN_PRINTED_LINK_DAYS", 30)


class Proof(models.TextChoices):
    PERMANENT = "permanent", "Permanent code"
    PRINTED = "printed", "Printed link with an expiry"
    SCREEN = "screen", "Rotating code on a screen"
    LOCATION = "location", "Location inside the geofence"


# --- errors: the code is not ours, or does not prove presence ------------------------


class CheckinTokenInvalid(ApplicationError):
    """This check-in link is not valid."""

    code = "checkin_token_invalid"


class CheckinRefused(ApplicationError):
    """A code of the plaza that does not prove presence. ``plaza`` says what it accepts;
    the API tells it as ``accepts`` so that the app can say how to check in."""

    status = 403

    def __init__(self, plaza: Plaza, **kwargs):
        self.plaza = plaza
        extra = {"accepts": plaza_proofs_accepted(plaza=plaza), **kwargs.pop("extra", {})}
        super().__init__(extra=extra, **kwargs)


class CheckinTokenExpired(CheckinRefused):
    """This check-in code has expired: scan the current one at the plaza."""

    code = "checkin_token_expired"
    status = 400


class CheckinProofRequired(CheckinRefused):
    """This plaza does not take this kind of check-in code."""

    code = "checkin_proof_required"


class CheckinLocationRequired(CheckinRefused):
    """This plaza takes this code only with a location inside its geofence."""

    code = "checkin_location_required"


class CheckinOutOfRange(CheckinRefused):
    """The location is outside this plaza's geofence."""

    code = "checkin_out_of_range"


@dataclass(frozen=True)
class CheckinCode:
    """A code a shopper scanned: whose it is and what kind of proof it is."""

    plaza: Plaza
    proof: Proof  # PERMANENT, PRINTED or SCREEN
    expires_at: datetime | None = None  # None: never


@dataclass(frozen=True)
class Location:
    """Where a phone says it is, in GCJ-02 (the datum of Plaza.latitude/longitude)."""

    latitude: float
    longitude: float


@dataclass(frozen=True)
class CheckinResult:
    checkin: Checkin
    already: bool  # today's check-in at this plaza had been done before
    points: int  # points this check-in gave (0 when already)
    bonus_points: int
    streak: int
    points_balance: int
    plaza: Plaza


@dataclass(frozen=True)
class ScreenCode:
    """What the check-in screen shows now."""

    plaza: Plaza
    token: str  # short, for the WeChat scene
    scene: str  # checkin:<plaza>:<token>
    link_token: str  # for /m/checkin/<link_token>/
    issued_at: datetime
    expires_at: datetime
    refresh_at: datetime  # when the screen shows the next one


def plaza_for_checkin(*, code: str) -> Plaza:
    plaza = Plaza.objects.filter(code=code, is_active=True).first()
    if plaza is None:
        raise NotFound("no such plaza", code="plaza_not_found")
    return plaza


def plaza_proofs_accepted(*, plaza: Plaza) -> list[str]:
    flags = [
        (Proof.SCREEN, plaza.checkin_accepts_screen),
        (Proof.PRINTED, plaza.checkin_accepts_printed),
        (Proof.LOCATION, plaza.checkin_accepts_location and plaza.latitude is not None),
        (Proof.PERMANENT, plaza.checkin_accepts_permanent),
    ]
    return [proof.value for proof, accepted in flags if accepted]


# --- printed links and the screen's links (/m/checkin/<token>/) ----------------------


def checkin_token_make(*, plaza: Plaza, expires_at: datetime | None = None) -> str:
    """The signed token of a plaza's printed check-in link (/m/checkin/<token>/).

    With ``expires_at`` (what staff print today) the link is refused after it; without,
    it is a permanent link, accepted only where the plaza accepts the permanent code.
    Signed with SECRET_KEY, so a token for a plaza cannot be made up, nor its expiry
    moved; the salt keeps it from passing for any other token.
    """
    payload = {"p": plaza.code}
    if expires_at is not None:
        payload["e"] = math.ceil(expires_at.timestamp())
    return signing.dumps(payload, salt=TOKEN_SALT, compress=True)


def checkin_token_read(token: str) -> CheckinCode:
    """The code a link's token stands for. Expired or not: ``checkin_proof_check`` says."""
    try:
        payload = signing.loads(token, salt=TOKEN_SALT)
    except (signing.BadSignature, ValueError, UnicodeError, zlib.error):
        raise CheckinTokenInvalid() from None
    if not isinstance(payload, dict) or not isinstance(payload.get("p"), str):
        raise CheckinTokenInvalid()
    expires, kind = payload.get("e"), payload.get("k")
    if expires is not None and (not isinstance(expires, int) or isinstance(expires, bool)):
        raise CheckinTokenInvalid()
    if kind not in (None, "s") or (kind == "s" and expires is None):
        raise CheckinTokenInvalid()
    plaza = plaza_for_checkin(code=payload["p"])
    if expires is None:
        return CheckinCode(plaza=plaza, proof=Proof.PERMANENT)
    expires_at = datetime.fromtimestamp(expires, tz=dt_timezone.utc)
    return CheckinCode(plaza=plaza, proof=Proof.SCREEN if kind == "s" else Proof.PRINTED, expires_at=expires_at)


# --- WeChat scenes and the screen's rotating code --------------------------------------


def checkin_scene(*, plaza: Plaza) -> str:
    """The scene of a plaza's permanent WeChat parametric QR code."""
    return SCENE_PREFIX + plaza.code


def _screen_mac(plaza_code: str, step: int) -> str:
    digest = salted_hmac(SCREEN_SALT, f"{plaza_code}:{step}", algorithm="sha256").hexdigest()
    return digest[:SCREEN_MAC_CHARS]


def _screen_step(at: datetime) -> int:
    return int(at.timestamp()) // screen_refresh_seconds()


def _screen_step_start(step: int) -> datetime:
    return datetime.fromtimestamp(step * screen_refresh_seconds(), tz=dt_timezone.utc)


def checkin_screen_token(*, plaza: Plaza, at: datetime) -> str:
    """The screen's code for the time step holding ``at``: the step in hex, ".", and a
    truncated HMAC of plaza and step (48 bits: one guess in 2^48, valid a minute)."""
    step = _screen_step(at)
    return f"{step:x}.{_screen_mac(plaza.code, step)}"


def _screen_issued_at(plaza_code: str, token: str) -> datetime:
    match = _SCREEN_TOKEN.fullmatch(token)
    if match is None or not constant_time_compare(match[2], _screen_mac(plaza_code, int(match[1], 16))):
        raise CheckinTokenInvalid()
    return _screen_step_start(int(match[1], 16))


def checkin_screen_code(*, plaza: Plaza, at: datetime | None = None) -> ScreenCode:
    """What a plaza's check-in screen shows at ``at``: the same on every screen of the
    plaza (and on every server) for the whole time step, valid for a minute from its start."""
    at = at or timezone.now()
    token = checkin_screen_token(plaza=plaza, at=at)
    issued_at = _screen_step_start(_screen_step(at))
    expires_at = issued_at + timedelta(seconds=_screen_ttl())
    link_token = signing.dumps(
        {"p": plaza.code, "e": math.ceil(expires_at.timestamp()), "k": "s"}, salt=TOKEN_SALT, compress=True
    )
    return ScreenCode(
        plaza=plaza, token=token, scene=f"{SCENE_PREFIX}{plaza.code}:{token}", link_token=link_token,
        issued_at=issued_at, expires_at=expires_at, refresh_at=issued_at + timedelta(seconds=screen_refresh_seconds()),
    )


def checkin_scene_read(scene: str) -> CheckinCode | None:
    """The code of a WeChat / Alipay QR scene; None when it is no check-in scene.
    ``checkin:<plaza>`` is permanent, ``checkin:<plaza>:<token>`` the screen's."""
    if not (scene or "").startswith(SCENE_PREFIX):
        return None
    plaza_code, colon, token = scene[len(SCENE_PREFIX):].partition(":")
    if not colon:
        return CheckinCode(plaza=plaza_for_checkin(code=plaza_code), proof=Proof.PERMANENT)
    issued_at = _screen_issued_at(plaza_code, token)
    plaza = plaza_for_checkin(code=plaza_code)
    return CheckinCode(plaza=plaza, proof=Proof.SCREEN, expires_at=issued_at + timedelta(seconds=_screen_ttl()))


def checkin_screen_wechat_qr(*, screen: ScreenCode) -> str | None:
    """The URL a WeChat temporary QR code of the screen's scene encodes, or None when
    the official account is not configured (the sandbox) or WeChat does not answer:
    the screen then shows the link's QR alone. One qrcode/create per plaza and time
    step, however many screens ask (the cache holds it for the step)."""
    if not wechat_configured():
        return None
    key = f"members.checkin.screen_qr:{screen.scene}"
    url = cache.get(key)
    if url is None:
        try:
            url = wechat_temporary_qr_create(scene=screen.scene, expire_seconds=_screen_ttl())["url"]
        except PlatformError:
            logger.warning("No WeChat check-in QR for %s this time: WeChat failed", screen.plaza.code, exc_info=True)
            return None
        cache.set(key, url, _screen_ttl())
    return url


# --- location (the arithmetic is in core/geo.py) ------------------------------------------


def checkin_location(*, latitude, longitude, datum: str) -> Location | None:
    """A reported location in GCJ-02, or None when it is no place on Earth.
    ``datum`` is "wgs84" (GPS, browsers, wx.getLocation's default, WeChat's LOCATION
    report) or "gcj02" (wx.getLocation({type: "gcj02"}), Alipay's my.getLocation)."""
    try:
        latitude, longitude = float(latitude), float(longitude)
    except (TypeError, ValueError):
        return None
    if not (math.isfinite(latitude) and math.isfinite(longitude) and -90 <= latitude <= 90 and -180 <= longitude <= 180):
        return None
    if datum == "wgs84":
        latitude, longitude = geo.wgs84_to_gcj02(latitude, longitude)
    elif datum != "gcj02":
        return None
    return Location(latitude=latitude, longitude=longitude)


def distance_m(a: Location, b: Location) -> float:
    return geo.distance_m(a.latitude, a.longitude, b.latitude, b.longitude)


# --- the proof, then the check-in -------------------------------------------------------


def checkin_proof_check(
    *, code: CheckinCode, location: Location | None = None, seen_at: datetime | None = None, now: datetime | None = None
) -> Proof:
    """The proof of presence that lets ``code`` check in at its plaza, or the refusal.

    ``seen_at``: when this browser opened the code (the H5 page keeps it in the session),
    so that logging in after the scan does not outlast a screen code; a code valid then
    is taken for CHECKIN_SEEN_GRACE_SECONDS. Only the shopper's own session vouches for
    it: a link sent to a friend has not been seen by the friend's browser.
    """
    now = now or timezone.now()
    plaza = code.plaza
    if code.expires_at is not None and now >= code.expires_at:
        seen_in_time = seen_at is not None and seen_at < code.expires_at and now - seen_at <= _seen_grace()
        if not seen_in_time:
            raise CheckinTokenExpired(plaza)
    if code.proof in plaza_proofs_accepted(plaza=plaza):
        return code.proof
    if Proof.LOCATION not in plaza_proofs_accepted(plaza=plaza):
        raise CheckinProofRequired(plaza)
    if location is None:
        raise CheckinLocationRequired(plaza)
    distance = distance_m(location, Location(latitude=plaza.latitude, longitude=plaza.longitude))
    if distance > plaza.geofence_radius_m:
        raise CheckinOutOfRange(plaza, extra={"distance_m": round(distance)})
    return Proof.LOCATION


def checkin_attempt(
    *, member: Member, code: CheckinCode, location: Location | None = None, seen_at: datetime | None = None,
    push: bool = True,
) -> CheckinResult:
    """Check ``member`` in with ``code`` if it proves presence (``checkin_proof_check``);
    a refusal raises and books nothing."""
    checkin_proof_check(code=code, location=location, seen_at=seen_at)
    return checkin(member=member, plaza=code.plaza, push=push)


def _streak_on(member: Member, day: date) -> int:
    """The streak a check-in on ``day`` makes: one more than yesterday's, or 1."""
    today = Checkin.objects.filter(member=member, day=day).order_by("-streak").values_list("streak", flat=True).first()
    if today:
        return today
    yesterday = Checkin.objects.filter(member=member, day=day - timedelta(days=1)).order_by("-streak").values_list("streak", flat=True).first()
    return (yesterday or 0) + 1


def checkin(*, member: Member, plaza: Plaza, push: bool = True, at: datetime | None = None) -> CheckinResult:
    """Check ``member`` in at ``plaza`` today. Safe to repeat: the second time is ``already``.

    Presence is the caller's business: entry points call ``checkin_attempt``, which
    checks the proof first.
    ``push=False`` when the caller answers the shopper itself (a bot's reply to the
    scan): the check-in still lands in the inbox's history, but no second message.
    ``at``: the instant, for internal callers (the demo's history); now by default.
    """
    now = at or timezone.now()
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
            idempotency_key=f"checkin:{member.pk}:{plaza.code}:{day.isoformat()}", at=now,
        )
    if bonus:
        ledger.points_grant(
            member=member, points=bonus, reason=f"{streak}-day check-in streak",
            idempotency_key=f"checkin-streak:{member.pk}:{day.isoformat()}", at=now,
        )
    visit_record(member=member, plaza=plaza, kind=Visit.Kind.CHECKIN, at=now)
    if push:
        pushes.push_checkin(member=member, plaza=plaza, checkin=record)
    return record
