"""Shoppers' H5 sessions: who is logged in, and logging in through the platforms' web OAuth.

A shopper never types a password. Inside WeChat the page asks the official account's
web OAuth for the shopper's openid (scope ``snsapi_base``: silent, no consent screen);
inside Alipay, the app's ``auth_base`` for the user_id (the open_id, for apps on Alipay's
open_id standard: every app created since 2023). The member behind that identity
is found or created on the spot (``members.identity``), and the session carries the
member's id from then on.

A random ``state`` kept in the session ties the platform's callback to the browser
that started the login and is used once: without it, anyone could send a victim a
callback link carrying the attacker's code and log the victim into the attacker's
membership (login CSRF).
"""

import hmac
import secrets
import time
from urllib.parse import quote, urlencode

from django.conf import settings
from django.http import HttpRequest
from django.middleware.csrf import rotate_token

from core import platforms
from core.errors import ApplicationError, NotFound
from core.platforms import PlatformBadResponse, PlatformRejected
from members.identity import alipay_identity, member_active, member_for_identity
from members.models import Identity, Member

SESSION_MEMBER = "h5_member_id"
SESSION_OAUTH = "h5_oauth"
# A login left at the platform's page longer than this must start again.
STATE_MAX_AGE_SECONDS = 600

WECHAT = "wechat"
ALIPAY = "alipay"
# seed_demo gives its shoppers these official-account openids; the sandbox demo
# login offers them and nobody else.
DEMO_OPENID_PREFIX = "demo-openid-"
DEMO_MEMBERS_SHOWN = 40


class LoginStateInvalid(ApplicationError):
    """This login expired or was started in another browser."""

    code = "login_state_invalid"


class LoginFailed(ApplicationError):
    """The platform did not confirm who the shopper is."""

    code = "login_failed"


# --- the session ----------------------------------------------------------------------


def session_member(request: HttpRequest) -> Member | None:
    """The member logged in on this session (followed through merges), banned or not."""
    member_id = request.session.get(SESSION_MEMBER)
    if member_id is None:
        return None
    member = Member.objects.select_related("tier").filter(pk=member_id).first()
    if member is None:
        del request.session[SESSION_MEMBER]
        return None
    member = member_active(member)
    if member.pk != member_id:
        request.session[SESSION_MEMBER] = member.pk
    return member


def session_login(request: HttpRequest, member: Member) -> None:
    """Log ``member`` in on a new session key, as django.contrib.auth's login does: a
    key an attacker planted before the login is worth nothing after it."""
    if request.session.get(SESSION_MEMBER) not in (None, member.pk):
        request.session.flush()
    else:
        request.session.cycle_key()
    request.session[SESSION_MEMBER] = member.pk
    rotate_token(request)


def session_logout(request: HttpRequest) -> None:
    request.session.flush()


# --- web OAuth ------------------------------------------------------------------------


def oauth_configured(platform: str) -> bool:
    if platform == WECHAT:
        return platforms.wechat_configured()
    if platform == ALIPAY:
        return platforms.alipay_configured()
    return False


def oauth_authorize_url(request: HttpRequest, *, platform: str, redirect_uri: str, next_url: str) -> str:
    """Where to send the browser to log in with ``platform``; remembers ``next_url``."""
    # Both platforms accept only letters and digits in state.
    state = secrets.token_hex(16)
    request.session[SESSION_OAUTH] = {"platform": platform, "state": state, "next": next_url, "at": int(time.time())}
    if platform == WECHAT:
        base = settings.WECHAT_OAUTH_AUTHORIZE_URL
        # WeChat checks the order of these parameters and needs the #wechat_redirect.
        query = [
            ("appid", settings.WECHAT_APP_ID),
            ("redirect_uri", redirect_uri),
            ("response_type", "code"),
            ("scope", "snsapi_base"),
            ("state", state),
        ]
        return f"{base}?{urlencode(query, quote_via=quote)}#wechat_redirect"
    if platform == ALIPAY:
        base = settings.ALIPAY_OAUTH_AUTHORIZE_URL
        query = [
            ("app_id", settings.ALIPAY_APP_ID),
            ("scope", "auth_base"),
            ("redirect_uri", redirect_uri),
            ("state", state),
        ]
        return f"{base}?{urlencode(query, quote_via=quote)}"
    raise NotFound(code="login_platform_unknown")


def oauth_login(request: HttpRequest, *, platform: str, code: str, state: str) -> tuple[Member, str]:
    """Finish a login the platform sent back here: check ``state``, exchange ``code``
    for the shopper's identity, find or create the member and log them in.

    Returns the member and the page to go on to. Raises ``LoginStateInvalid`` (nothing
    is asked of the platform), ``LoginFailed`` (the platform refused the code),
    ``members.identity.MemberBanned``, or another ``PlatformError`` (the platform is unavailable).
    """
    pending = request.session.pop(SESSION_OAUTH, None)
    if not (
        isinstance(pending, dict)
        and pending.get("platform") == platform
        and isinstance(pending.get("state"), str)
        and hmac.compare_digest(pending["state"].encode(), (state or "").encode())
        and time.time() - pending.get("at", 0) <= STATE_MAX_AGE_SECONDS
    ):
        raise LoginStateInvalid()
    if not code or len(code) > 512:
        raise LoginFailed()
    try:
        if platform == WECHAT:
            openid, unionid = _wechat_identity(code)
            identity = {"channel": Identity.Channel.WECHAT_OPENID, "external_id": openid, "unionid": unionid}
        else:
            channel, external_id = _alipay_identity(code)
            identity = {"channel": channel, "external_id": external_id}
    except PlatformRejected as exc:
        raise LoginFailed(extra={"platform_code": exc.platform_code}) from None
    # The member's own identity tells WeChat from Alipay; the join channel says they
    # came in through these pages.
    found = member_for_identity(**identity, join_channel=Member.Channel.H5)
    session_login(request, found.member)
    return found.member, pending.get("next") or ""


def _wechat_identity(code: str) -> tuple[str, str | None]:
    """The openid (and unionid, when WeChat tells it) behind a web OAuth code."""
    client = platforms.wechat_client()
    result = client.get_without_token(
        "sns/oauth2/access_token",
        params={"appid": client.appid, "secret": client.secret, "code": code, "grant_type": "authorization_code"},
    )
    openid, unionid = result.get("openid"), result.get("unionid")
    if not isinstance(openid, str) or not openid:
        raise PlatformBadResponse("WeChat answered an OAuth code without an openid")
    return openid, unionid if isinstance(unionid, str) and unionid else None


def _alipay_identity(auth_code: str) -> tuple[str, str]:
    """The identity channel and id (user_id, or open_id) behind an auth code."""
    result = platforms.alipay_call("alipay.system.oauth.token", grant_type="authorization_code", code=auth_code)
    identity = alipay_identity(result)
    if identity is None:
        raise PlatformBadResponse("Alipay answered an auth code without a user_id or an open_id")
    return identity


# --- the sandbox demo login -----------------------------------------------------------


def demo_identities() -> list[Identity]:
    """seed_demo's shoppers, for the sandbox's demo login page."""
    return list(
        Identity.objects.filter(channel=Identity.Channel.WECHAT_OPENID, external_id__startswith=DEMO_OPENID_PREFIX)
        .select_related("member__tier", "member__wallet")
        .order_by("external_id")[:DEMO_MEMBERS_SHOWN]
    )


def demo_login(request: HttpRequest, *, openid: str) -> Member:
    """Log in as one of seed_demo's shoppers. Only for the sandbox: the caller checks."""
    demo = Identity.objects.filter(channel=Identity.Channel.WECHAT_OPENID, external_id=openid)
    if not openid.startswith(DEMO_OPENID_PREFIX) or not demo.exists():
        raise NotFound("no such demo shopper", code="demo_member_not_found")
    found = member_for_identity(channel=Identity.Channel.WECHAT_OPENID, external_id=openid, join_channel=Member.Channel.H5)
    session_login(request, found.member)
    return found.member

