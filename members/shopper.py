"""The shopper's own account, as the mini-programs see it: logging in with a WeChat or
Alipay identity, the WeChat session key, binding the phone WeChat vouches for, the
profile and the inbox.

A login finds or creates the member behind the platform's identity
(``identity.member_for_identity``): nothing is written before the platform has
answered, so a refused code or a platform that is down leaves no trace.
"""

import base64
import binascii
import json
import secrets
from datetime import date

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from core import platforms
from core.errors import ApplicationError, Conflict, NotFound, PermissionDenied
from core.platforms import PlatformBadResponse, PlatformRejected, PlatformUnavailable
from members import services
from members.identity import Found, MemberBanned, alipay_identity, member_active, member_for_identity
from members.models import Identity, InboxMessage, Member

# WeChat errcodes of jscode2session: the code is wrong or was used already; WeChat
# holds the user to be at risk and refuses them; WeChat is busy.
WECHAT_CODE_INVALID = frozenset({"40029", "40163"})
WECHAT_LOGIN_REFUSED = frozenset({"40226"})
WECHAT_BUSY = frozenset({"-1"})
# Alipay sub_codes of alipay.system.oauth.token: the auth_code is wrong, used, expired,
# or was issued to another app; Alipay's own failures.
ALIPAY_CODE_INVALID = frozenset({"isv.code-invalid", "isv.unmatched-app-id"})
ALIPAY_BUSY = frozenset({"isp.unknow-error", "aop.unknow-error"})

# Identities of demo shoppers (seed_demo's demo-openid-NNN, demo logins' own) start
# with this; real openids and user_ids never do.
DEMO_PREFIX = "demo-"

# Birthdays the profile accepts: from this day to today.
EARLIEST_BIRTHDAY = date(1900, 1, 1)


class PlatformNotConfigured(ApplicationError):
    """This platform is not configured here."""

    code = "platform_not_configured"
    status = 503


class LoginCodeInvalid(ApplicationError):
    """The login code is wrong, expired or already used: get a new one and try again."""

    code = "login_code_invalid"


class LoginRefused(PermissionDenied):
    """The platform refuses to log this user in."""

    code = "login_refused"


class WeChatSessionExpired(Conflict):
    """No WeChat session for this member: call wx.login, log in again, then retry."""

    code = "wechat_session_expired"


class PhoneDataInvalid(ApplicationError):
    """The phone number data cannot be decrypted with this member's WeChat session."""

    code = "phone_data_invalid"


class PhoneDataWrongApp(ApplicationError):
    """The phone number data was issued to another mini-program."""

    code = "phone_data_wrong_app"


class DemoMemberNotFound(NotFound):
    """No demo shopper has this member number."""

    code = "demo_member_not_found"


# --- logging in ---------------------------------------------------------------------------


def shopper_login_wechat(*, code: str) -> Found:
    """Exchange a wx.login ``code`` (jscode2session) for the member behind it.

    The openid and, when WeChat sends it, the unionid find the member, linking or
    merging them with an official-account follower who is the same person. The
    session key is kept server-side for ``member_phone_bind_wechat``.
    """
    if not platforms.miniapp_configured():
        raise PlatformNotConfigured("WeChat mini-program login is not configured here.")
    try:
        session = platforms.miniapp_client().wxa.code_to_session(code)
    except PlatformRejected as exc:
        raise _login_refusal(exc, invalid=WECHAT_CODE_INVALID, refused=WECHAT_LOGIN_REFUSED, busy=WECHAT_BUSY) from None
    openid = _platform_id(session.get("openid"), what="an openid", platform="WeChat")
    unionid = session.get("unionid")
    if unionid is not None:
        unionid = _platform_id(unionid, what="a usable unionid", platform="WeChat")
    session_key = session.get("session_key")
    if not isinstance(session_key, str) or not session_key:
        raise PlatformBadResponse("WeChat answered without a session key")
    found = member_for_identity(
        channel=Identity.Channel.MINIAPP_OPENID, external_id=openid, unionid=unionid, join_channel=Member.Channel.MINIAPP
    )
    cache.set(_session_key_cache_key(found.member), session_key, _session_key_ttl())
    return found


def shopper_login_alipay(*, auth_code: str) -> Found:
    """Exchange an Alipay mini-program ``auth_code`` (alipay.system.oauth.token) for the
    member behind its user_id, or its open_id for apps on Alipay's open_id standard
    (apps created since 2023). An open_id is per app: an identity of its own channel,
    the one the H5 login and the service window file it under too."""
    if not platforms.alipay_configured():
        raise PlatformNotConfigured("Alipay login is not configured here.")
    try:
        answer = platforms.alipay_call("alipay.system.oauth.token", grant_type="authorization_code", code=auth_code)
    except PlatformRejected as exc:
        raise _login_refusal(exc, invalid=ALIPAY_CODE_INVALID, refused=frozenset(), busy=ALIPAY_BUSY) from None
    identity = alipay_identity(answer)
    if identity is None:
        raise PlatformBadResponse("Alipay answered without a user_id or an open_id")
    channel, external_id = identity
    return member_for_identity(channel=channel, external_id=external_id, join_channel=Member.Channel.ALIPAY)


def shopper_login_demo(*, member_no: str = "") -> Found:
    """Sandbox only: log in as the demo shopper ``member_no``, or as a new demo shopper.

    Only members with a demo identity can be logged into this way; any other member
    number is "not found", even in sandbox mode.
    """
    if not settings.O2O_SANDBOX:
        raise NotFound("No such endpoint.")
    if not member_no:
        return member_for_identity(
            channel=Identity.Channel.MINIAPP_OPENID, external_id=f"{DEMO_PREFIX}miniapp-{secrets.token_hex(8)}",
            join_channel=Member.Channel.MINIAPP, nickname="Demo shopper",
        )
    demo = (
        Identity.objects.select_related("member__tier")
        .filter(member__member_no=member_no, external_id__startswith=DEMO_PREFIX)
        .first()
    )
    if demo is None:
        raise DemoMemberNotFound()
    member = member_active(demo.member)
    if member.status == Member.Status.BANNED:
        raise MemberBanned(extra={"member_no": member.member_no})
    return Found(member, created=False)


def _login_refusal(exc: PlatformRejected, *, invalid, refused, busy) -> ApplicationError:
    if exc.platform_code in invalid:
        return LoginCodeInvalid()
    if exc.platform_code in refused:
        return LoginRefused()
    if exc.platform_code in busy:
        return PlatformUnavailable(exc.message)
    return exc  # our configuration (app id, secret, keys) is wrong: a 502 for the logs


def _platform_id(value, *, what: str, platform: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value.strip()) > 128:
        raise PlatformBadResponse(f"{platform} answered without {what}")
    return value.strip()


# --- the WeChat session key and the phone number ------------------------------------------


def _session_key_cache_key(member: Member) -> str:
    return f"miniapp-session-key:{member.pk}"


def _session_key_ttl() -> int:
    return settings.MINIAPP_SESSION_KEY_TTL_SECONDS


def member_phone_bind_wechat(*, member: Member, encrypted_data: str, iv: str) -> Member:
    """Bind the phone number from the mini-program's getPhoneNumber payload.

    The payload is AES-128-CBC under the member's current WeChat session key, and
    carries a watermark naming the mini-program it was issued to, which must be ours.
    """
    if not platforms.miniapp_configured():
        raise PlatformNotConfigured("WeChat mini-program login is not configured here.")
    session_key = _b64(cache.get(_session_key_cache_key(member)) or "", length=16)
    if session_key is None:
        raise WeChatSessionExpired()
    data = _miniapp_decrypt(key=session_key, iv=_b64(iv, length=16), ciphertext=_b64(encrypted_data))
    watermark = data.get("watermark")
    if not isinstance(watermark, dict) or watermark.get("appid") != settings.WECHAT_MINIAPP_ID:
        raise PhoneDataWrongApp()
    country, number = data.get("countryCode"), data.get("purePhoneNumber")
    if isinstance(country, str) and isinstance(number, str) and country and number:
        phone = f"+{country}{number}"
    elif isinstance(data.get("phoneNumber"), str):
        phone = data["phoneNumber"]
    else:
        raise PhoneDataInvalid("The decrypted data holds no phone number.")
    return services.member_set_phone(member=member, phone=phone)


def _b64(value: str, *, length: int | None = None) -> bytes | None:
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError, TypeError):
        return None
    if not raw or (length is not None and len(raw) != length):
        return None
    return raw


def _miniapp_decrypt(*, key: bytes, iv: bytes | None, ciphertext: bytes | None) -> dict:
    if iv is None or ciphertext is None or len(ciphertext) % 16:
        raise PhoneDataInvalid()
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        padded = decryptor.update(ciphertext) + decryptor.finalize()
        data = json.loads(unpadder.update(padded) + unpadder.finalize())
    except ValueError:  # bad padding, not UTF-8, not JSON: another key, or garbage
        raise PhoneDataInvalid() from None
    if not isinstance(data, dict):
        raise PhoneDataInvalid()
    return data


# --- the profile ----------------------------------------------------------------------------

_UNCHANGED = object()


def member_profile_update(*, member: Member, nickname=_UNCHANGED, birthday=_UNCHANGED, gender=_UNCHANGED) -> Member:
    """Change what the shopper may say about themselves; arguments left out stay as they are.

    ``nickname``: at most 64 characters; ``birthday``: a date from 1900 to today, or
    None to forget it; ``gender``: one of Member.Gender.
    """
    given = (("nickname", nickname), ("birthday", birthday), ("gender", gender))
    changes = {name: value for name, value in given if value is not _UNCHANGED}
    if "nickname" in changes and len(changes["nickname"]) > 64:
        raise ApplicationError("a nickname has at most 64 characters", code="invalid_nickname")
    if changes.get("birthday") is not None and not birthday_plausible(changes["birthday"]):
        raise ApplicationError("a birthday is a date from 1900 to today", code="invalid_birthday")
    if "gender" in changes and changes["gender"] not in Member.Gender.values:
        raise ApplicationError("gender is one of '', 'f', 'm'", code="invalid_gender")
    for name, value in changes.items():
        setattr(member, name, value)
    if changes:
        member.save(update_fields=list(changes))
    return member


def birthday_plausible(day: date) -> bool:
    return EARLIEST_BIRTHDAY <= day <= timezone.localdate()


# --- the inbox ------------------------------------------------------------------------------


def member_inbox(*, member: Member):
    """The member's messages, newest first."""
    return InboxMessage.objects.filter(member=member).order_by("-created_at", "-id")


def member_inbox_unread(*, member: Member) -> int:
    return InboxMessage.objects.filter(member=member, read_at__isnull=True).count()
