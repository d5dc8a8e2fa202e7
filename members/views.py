"""The shopper's H5 pages under /m/: member card, points history, inbox, the check-in
and pay-at-shop landings of printed QR codes, login, and those QR images themselves.

Mobile first and light for a slow phone: server-rendered HTML with the codes drawn
inline as SVG, one small stylesheet, and a few lines of JavaScript that fetch the next
member code before the shown one expires. Chinese by default, English on request.
"""

import hashlib
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from functools import wraps

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import get_conditional_response, patch_cache_control
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django.views.i18n import set_language

from core.barcode import code128_svg
from core.links import public_url
from core.errors import ApplicationError, NotFound, PlatformError
from core.qr import qr_png, qr_svg, qr_svg_once
from members import checkin as checkins
from members import codes, ledger, pushes, shopper, web_auth
from members.identity import MemberBanned
from members.models import Checkin, Member, Plaza, PointsTransaction, Store
from members.public_notes import transaction_public_description

PAGE_SIZE = 20
# The check-in codes this browser opened while they were valid: {digest of token: unix time}.
SESSION_CHECKIN_SEEN = "checkin_seen"
# The most a printed poster's link may be valid for, in days.
PRINTED_LINK_MAX_DAYS = 366
EXPIRING_WITHIN_DAYS = 30
# Printed QR codes never change for a given link; the ETag covers a change of host.
QR_MAX_AGE_SECONDS = 30 * 24 * 3600
# The language a shopper picks is kept for a year unless LANGUAGE_COOKIE_AGE says otherwise.
LANGUAGE_COOKIE_MAX_AGE = 365 * 24 * 3600

TRANSACTION_LABELS = {
    PointsTransaction.Kind.EARN: gettext_lazy("Purchase"),
    PointsTransaction.Kind.REDEEM: gettext_lazy("Paid with points"),
    PointsTransaction.Kind.GRANT: gettext_lazy("Gift"),
    PointsTransaction.Kind.REVERSE: gettext_lazy("Refund"),
    PointsTransaction.Kind.ADJUST: gettext_lazy("Adjustment"),
    PointsTransaction.Kind.EXPIRE: gettext_lazy("Expired"),
    PointsTransaction.Kind.TRANSFER: gettext_lazy("Merged membership"),
}
# Grants named by their idempotency key (members.checkin): said better than their reason.
GRANT_LABELS = {
    "checkin:": gettext_lazy("Check-in"),
    "checkin-streak:": gettext_lazy("Check-in streak bonus"),
}
# What an inbox message may link to: our pages and the web, never javascript: and the like.
WEB_LINK = ("/", "https://", "http://")


# --- helpers --------------------------------------------------------------------------


def _message(request, *, title, message, status, link=None, link_text=None):
    """A friendly page for a dead end: unknown code, refused login, suspended member."""
    context = {"title": title, "message": message, "link": link or reverse("h5:card"), "link_text": link_text}
    return render(request, "members/message.html", context, status=status)


def _not_found(request, message):
    return _message(request, title=_("Not found"), message=message, status=404)


def _refused(request):
    return _message(
        request,
        title=_("Membership suspended"),
        message=_("This membership is suspended. Please ask at the mall's service desk."),
        status=403,
        link=reverse("h5:login"),
        link_text=_("Back"),
    )


def _next_url(request, value: str | None) -> str:
    """``value`` if it is a page of this site, else the member card."""
    if value and url_has_allowed_host_and_scheme(value, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return value
    return reverse("h5:card")


def checkin_link(request: HttpRequest, token: str) -> str:
    return public_url(request, reverse("h5:checkin", args=[token]))


def pay_link(request: HttpRequest, store: Store) -> str:
    return public_url(request, reverse("pay:page", args=[store.code]))


def member_required(view=None, *, as_json=False):
    """The logged-in member as ``request.member``; else the login page (``next`` kept),
    or a 401 JSON answer for ``as_json`` endpoints. A banned member is logged out."""

    def decorate(view):
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            member = web_auth.session_member(request)
            if member is None:
                if as_json:
                    return JsonResponse({"code": "login_required", "message": _("Please log in.")}, status=401)
                return redirect_to_login(request.get_full_path(), login_url=reverse("h5:login"))
            if member.status == Member.Status.BANNED:
                web_auth.session_logout(request)
                if as_json:
                    return JsonResponse({"code": MemberBanned.code, "message": _("This membership is suspended.")}, status=403)
                return _refused(request)
            request.member = member
            return view(request, *args, **kwargs)

        return never_cache(wrapper)

    return decorate(view) if view is not None else decorate


def _member_code(member: Member) -> dict:
    now = timezone.now()
    issued = codes.member_code_issue(member=member, now=now)
    code = issued.code
    return {
        "code": code,
        "code_display": " ".join(code[i : i + 4] for i in range(0, len(code), 4)),
        "expires_at": issued.expires_at.isoformat(),
        # Seconds, from the server's clock: a phone whose clock is off still refreshes in time.
        "refresh_in": round(max((issued.expires_at - now).total_seconds(), 0), 3),
        # A member code is shown once, so it bypasses the QR memo kept for printed codes.
        "qr_svg": qr_svg_once(code),
        "barcode_svg": code128_svg(code),
    }


# --- member pages ---------------------------------------------------------------------


@require_GET
@member_required
def card(request):
    member = request.member
    context = {
        "member": member,
        "points_balance": ledger.member_points_balance(member=member),
        "points_expiring": ledger.member_points_expiring(member=member, within_days=EXPIRING_WITHIN_DAYS),
        "expiring_days": EXPIRING_WITHIN_DAYS,
        "unread": shopper.member_inbox_unread(member=member),
        "code": _member_code(member),
    }
    return render(request, "members/card.html", context)


@require_GET
@member_required(as_json=True)
def card_code(request):
    return JsonResponse(_member_code(request.member))


def _history_row(txn: PointsTransaction, member: Member) -> dict:
    label = TRANSACTION_LABELS.get(txn.kind, txn.kind)
    if txn.kind == PointsTransaction.Kind.GRANT:
        label = next((text for prefix, text in GRANT_LABELS.items() if txn.idempotency_key.startswith(prefix)), label)
    shop = txn.store.name if txn.store_id else (txn.merchant.name if txn.merchant_id else "")
    # A transfer is recorded on the member it left; the other side sees it arrive.
    points = txn.points if txn.member_id == member.pk else -txn.points
    # The shopper-facing description, never the staff's reason (members.public_notes).
    return {"at": txn.created_at, "label": label, "shop": shop, "reason": transaction_public_description(txn), "points": points}


@require_GET
@member_required
def history(request):
    page = Paginator(ledger.member_points_history(member=request.member), PAGE_SIZE).get_page(request.GET.get("page"))
    rows = [_history_row(txn, request.member) for txn in page]
    return render(request, "members/history.html", {"page": page, "rows": rows})


@require_GET
@member_required
def inbox(request):
    messages = shopper.member_inbox(member=request.member)
    page = Paginator(messages, PAGE_SIZE).get_page(request.GET.get("page"))
    rows = [
        {"message": message, "unread": message.read_at is None, "link": message.link if message.link.startswith(WEB_LINK) else ""}
        for message in page
    ]
    unread = [row["message"].pk for row in rows if row["unread"]]
    if unread:
        pushes.inbox_mark_read(member=request.member, message_ids=unread)
    return render(request, "members/inbox.html", {"page": page, "rows": rows})


# --- landings of printed QR codes -----------------------------------------------------


def _checkin_seen_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:24]


def _checkin_seen_at(request, token: str) -> datetime | None:
    """When this browser opened ``token`` while it was valid (logging in takes time)."""
    seen = request.session.get(SESSION_CHECKIN_SEEN, {}).get(_checkin_seen_key(token))
    return datetime.fromtimestamp(seen, tz=dt_timezone.utc) if isinstance(seen, int) else None


def _checkin_seen(request, token: str, code: checkins.CheckinCode) -> None:
    """Remember that this browser opened a code that expires, while it was valid."""
    if code.expires_at is None or _checkin_seen_at(request, token) is not None:
        return
    now = int(timezone.now().timestamp())
    # Only a few recent ones are kept: the grace is minutes long.
    seen = {key: at for key, at in request.session.get(SESSION_CHECKIN_SEEN, {}).items() if now - at < 3600}
    seen[_checkin_seen_key(token)] = now
    request.session[SESSION_CHECKIN_SEEN] = dict(sorted(seen.items(), key=lambda item: item[1])[-10:])


def _checkin_ways(plaza: Plaza) -> str:
    """How to check in at ``plaza``: the proofs it accepts, the strongest first."""
    labels = {
        checkins.Proof.SCREEN: _("scan the code on the check-in screen at the service desk"),
        checkins.Proof.PRINTED: _("scan a current check-in poster at the plaza"),
        checkins.Proof.LOCATION: _("open this page at the plaza and let it use your location"),
        checkins.Proof.PERMANENT: _("scan the plaza's check-in QR code"),
    }
    ways = [labels[proof] for proof in checkins.plaza_proofs_accepted(plaza=plaza)]
    if not ways:
        return _("This plaza does not take check-ins at the moment.")
    return _("To check in: %(ways)s.") % {"ways": _(", or ").join(ways)}


def _checkin_refused(request, refused: checkins.CheckinRefused) -> HttpResponse:
    plaza = refused.plaza
    if isinstance(refused, checkins.CheckinTokenExpired):
        title, status = _("Check-in code expired"), 410
        message = _("This check-in code has expired.")
    elif isinstance(refused, checkins.CheckinOutOfRange):
        title, status = _("Not at the plaza"), 403
        message = _("Your location is about %(metres)d m from %(plaza)s: too far to check in.") % {
            "metres": refused.extra.get("distance_m", 0), "plaza": plaza.name,
        }
    elif isinstance(refused, checkins.CheckinLocationRequired):
        title, status = _("Location needed"), 403
        message = _("%(plaza)s needs your location to accept this code.") % {"plaza": plaza.name}
    else:
        title, status = _("Check in at the plaza"), 403
        message = _("%(plaza)s asks you to check in on the spot: this code does not check you in.") % {"plaza": plaza.name}
    return _message(request, title=title, message=f"{message} {_checkin_ways(plaza)}", status=status)


def _posted_location(request) -> checkins.Location | None:
    """The location the page's script read from the browser (WGS-84), if any. The phone
    says it: a weaker proof than a code that expires (members.checkin)."""
    latitude, longitude = request.POST.get("latitude", ""), request.POST.get("longitude", "")
    if not latitude or not longitude:
        return None
    return checkins.checkin_location(latitude=latitude, longitude=longitude, datum="wgs84")


@require_http_methods(["GET", "POST"])
@never_cache
def checkin(request, token):
    """GET shows the plaza (and today's check-in, if done), or why this code does not
    check in here; POST checks the member in, if the code proves they are there."""
    try:
        code = checkins.checkin_token_read(token)
    except (checkins.CheckinTokenInvalid, NotFound):
        return _not_found(request, _("This check-in code is not valid. Please scan the code at the mall again."))
    plaza = code.plaza
    member = web_auth.session_member(request)
    if member is not None and member.status == Member.Status.BANNED:
        web_auth.session_logout(request)
        return _refused(request)
    today = None
    if member is not None:
        today = Checkin.objects.filter(member=member, plaza=plaza, day=timezone.localdate()).first()
    needs_location = False
    if today is None:
        try:
            checkins.checkin_proof_check(code=code, seen_at=_checkin_seen_at(request, token))
        except checkins.CheckinLocationRequired:
            needs_location = True  # the page asks the browser for it
        except checkins.CheckinRefused as refused:
            return _checkin_refused(request, refused)
        _checkin_seen(request, token, code)
    if request.method == "POST" and today is None:
        if member is None:
            return redirect_to_login(request.get_full_path(), login_url=reverse("h5:login"))
        try:
            checkins.checkin_attempt(
                member=member, code=code, location=_posted_location(request), seen_at=_checkin_seen_at(request, token)
            )
        except checkins.CheckinRefused as refused:
            return _checkin_refused(request, refused)
        except ApplicationError:
            return _message(
                request, title=_("Check-in failed"), message=_("Sorry, the check-in did not go through. Please try again."),
                status=409, link=request.path, link_text=_("Try again"),
            )
        return redirect(request.path)
    if request.method == "POST":
        return redirect(request.path)
    context = {"plaza": plaza, "member": member, "today": today, "needs_location": needs_location}
    if member is not None:
        context["points_balance"] = ledger.member_points_balance(member=member)
    return render(request, "members/checkin.html", context)


@require_GET
def qr_image(request, kind, key, fmt):
    """The QR code of a plaza's check-in link (``key`` is its signed token) or of a
    shop's payment link (``key`` is the store code), as PNG or SVG. Only those links:
    this is no QR service for arbitrary content."""
    if kind == "checkin":
        try:
            checkins.checkin_token_read(key)
        except (checkins.CheckinTokenInvalid, NotFound):
            raise Http404("no such check-in code") from None
        link = checkin_link(request, key)
    else:
        store = Store.objects.filter(code=key, is_active=True).first()
        if store is None:
            raise Http404("no such store")
        link = pay_link(request, store)
    etag = '"' + hashlib.sha256(f"{fmt}:{link}".encode()).hexdigest()[:32] + '"'
    response = get_conditional_response(request, etag=etag)
    if response is None:
        if fmt == "png":
            response = HttpResponse(qr_png(link), content_type="image/png")
        else:
            response = HttpResponse(qr_svg(link), content_type="image/svg+xml")
    response["ETag"] = etag
    patch_cache_control(response, public=True, max_age=QR_MAX_AGE_SECONDS)
    return response


# --- login, logout, language ----------------------------------------------------------


@require_GET
@never_cache
def login(request):
    """Inside WeChat or Alipay, straight on to the platform's silent login; elsewhere
    a page with the ways in there are (and the demo shoppers, in the sandbox)."""
    next_url = _next_url(request, request.GET.get("next"))
    if web_auth.session_member(request) is not None:
        return HttpResponseRedirect(next_url)
    user_agent = request.headers.get("User-Agent", "")
    query = "?" + request.GET.urlencode() if request.GET else ""
    if "MicroMessenger" in user_agent and web_auth.oauth_configured(web_auth.WECHAT):
        return HttpResponseRedirect(reverse("h5:login-wechat") + query)
    if "AlipayClient" in user_agent and web_auth.oauth_configured(web_auth.ALIPAY):
        return HttpResponseRedirect(reverse("h5:login-alipay") + query)
    context = {
        "next": next_url,
        "wechat": web_auth.oauth_configured(web_auth.WECHAT),
        "alipay": web_auth.oauth_configured(web_auth.ALIPAY),
        "sandbox": settings.O2O_SANDBOX,
    }
    return render(request, "members/login.html", context)


@require_GET
@never_cache
def oauth_start(request, platform):
    if not web_auth.oauth_configured(platform):
        raise Http404("this platform is not configured")
    callback = request.build_absolute_uri(reverse(f"h5:login-{platform}-callback"))
    url = web_auth.oauth_authorize_url(
        request, platform=platform, redirect_uri=callback, next_url=_next_url(request, request.GET.get("next"))
    )
    return HttpResponseRedirect(url)


@require_GET
@never_cache
def oauth_callback(request, platform):
    if not web_auth.oauth_configured(platform):
        raise Http404("this platform is not configured")
    # WeChat sends ?code=, Alipay ?auth_code=.
    code = request.GET.get("auth_code" if platform == web_auth.ALIPAY else "code", "")
    again = reverse("h5:login")
    try:
        _member, next_url = web_auth.oauth_login(request, platform=platform, code=code, state=request.GET.get("state", ""))
    except web_auth.LoginStateInvalid:
        return _message(
            request, title=_("Login expired"), status=400, link=again, link_text=_("Log in again"),
            message=_("This login has expired or was started in another browser. Please log in again."),
        )
    except MemberBanned:
        return _refused(request)
    except PlatformError:
        return _message(
            request, title=_("Please try again"), status=503, link=again, link_text=_("Log in again"),
            message=_("The login service is not answering right now. Please try again in a moment."),
        )
    except ApplicationError:  # LoginFailed, or an identity the platform should not have sent
        return _message(
            request, title=_("Login failed"), status=400, link=again, link_text=_("Log in again"),
            message=_("We could not confirm who you are. Please log in again."),
        )
    return HttpResponseRedirect(_next_url(request, next_url))


@require_http_methods(["GET", "POST"])
@never_cache
def demo_login(request):
    """The sandbox's login: pick one of seed_demo's shoppers. Absent outside the sandbox."""
    if not settings.O2O_SANDBOX:
        raise Http404("the demo login exists only in the sandbox")
    next_url = _next_url(request, request.POST.get("next") or request.GET.get("next"))
    if request.method == "POST":
        try:
            web_auth.demo_login(request, openid=request.POST.get("openid", ""))
        except MemberBanned:
            return _refused(request)
        except ApplicationError:
            return _not_found(request, _("There is no such demo shopper."))
        return HttpResponseRedirect(next_url)
    return render(request, "members/demo_login.html", {"identities": web_auth.demo_identities(), "next": next_url})


@require_POST
def logout(request):
    web_auth.session_logout(request)
    return render(request, "members/logged_out.html")


@require_POST
def language(request):
    """Django's set_language, remembered for a year rather than for the browser session."""
    response = set_language(request)
    cookie = response.cookies.get(settings.LANGUAGE_COOKIE_NAME)
    if cookie is not None and cookie.value:
        response.set_cookie(
            settings.LANGUAGE_COOKIE_NAME,
            cookie.value,
            max_age=settings.LANGUAGE_COOKIE_AGE or LANGUAGE_COOKIE_MAX_AGE,
            path=settings.LANGUAGE_COOKIE_PATH,
            domain=settings.LANGUAGE_COOKIE_DOMAIN,
            secure=settings.LANGUAGE_COOKIE_SECURE,
            httponly=settings.LANGUAGE_COOKIE_HTTPONLY,
            samesite=settings.LANGUAGE_COOKIE_SAMESITE,
        )
    return response


# --- printable QR posters (for the admin) ---------------------------------------------


def printed_link_days(value) -> int:
    """The validity staff asked for (``?days=``), within 1 to PRINTED_LINK_MAX_DAYS; else the default."""
    try:
        days = int(value)
    except (TypeError, ValueError):
        return checkins.printed_link_days()
    return min(max(days, 1), PRINTED_LINK_MAX_DAYS)


def qr_posters(
    request, *, plazas=(), stores=(), back: str = "", valid_days: int | None = None, validity_form: dict | None = None
) -> HttpResponse:
    """A printable page with one poster per plaza (its check-in QR) and per store
    (its payment QR): the QR, the name and the link it carries.

    A plaza's link is valid for ``valid_days`` days, today included, and says until when:
    a photo of the poster must not check anyone in for ever. ``validity_form`` is where
    the page's "valid for" form goes to print them again: ``{"method", "action", "hidden"}``.
    """
    posters = []
    valid_days = valid_days or checkins.printed_link_days()
    last_day = timezone.localdate() + timedelta(days=valid_days - 1)
    # Valid through the last day, local time: the poster says "until <date>".
    expires_at = timezone.make_aware(datetime.combine(last_day + timedelta(days=1), datetime.min.time()))
    for plaza in plazas:
        token = checkins.checkin_token_make(plaza=plaza, expires_at=expires_at)
        posters.append({
            "kind": "checkin", "name": plaza.name, "place": plaza.city, "url": checkin_link(request, token),
            "valid_until": last_day,
            "svg": reverse("h5:qr", kwargs={"kind": "checkin", "key": token, "fmt": "svg"}),
            "png": reverse("h5:qr", kwargs={"kind": "checkin", "key": token, "fmt": "png"}),
        })
    for store in stores:
        place = store.plaza.name + (f" · {store.unit}" if store.unit else "")
        posters.append({
            "kind": "pay", "name": store.name, "place": place, "url": pay_link(request, store),
            "svg": reverse("h5:qr", kwargs={"kind": "pay", "key": store.code, "fmt": "svg"}),
            "png": reverse("h5:qr", kwargs={"kind": "pay", "key": store.code, "fmt": "png"}),
        })
    title = _("Check-in QR codes") if plazas else _("Payment QR codes")
    context = {
        "title": title, "posters": posters, "back": back, "valid_days": valid_days if plazas else None,
        "max_days": PRINTED_LINK_MAX_DAYS, "validity_form": validity_form,
    }
    return render(request, "members/print_qr.html", context)


# --- the check-in screen (for the admin) -----------------------------------------------


def _checkin_screen_data(request, plaza: Plaza) -> dict:
    now = timezone.now()
    screen = checkins.checkin_screen_code(plaza=plaza, at=now)
    link = checkin_link(request, screen.link_token)
    wechat_url = checkins.checkin_screen_wechat_qr(screen=screen)
    return {
        "link": link,
        # Each code is shown for one time step only: drawn, not memoised.
        "link_svg": qr_svg_once(link),
        "wechat_svg": qr_svg_once(wechat_url) if wechat_url else "",
        "expires_at": screen.expires_at.isoformat(),
        # From the server's clock, a moment after the next step starts.
        "refresh_in": round(max((screen.refresh_at - now).total_seconds(), 0) + 0.5, 3),
    }


def checkin_screen(request, *, plaza: Plaza, code_url: str, back: str = "") -> HttpResponse:
    """A full-screen page for a display at the plaza: its rotating check-in code, fetched
    again from ``code_url`` every time step. The caller checks the staff's permission."""
    context = {
        "plaza": plaza, "code": _checkin_screen_data(request, plaza), "code_url": code_url, "back": back,
        "refresh_seconds": checkins.screen_refresh_seconds(),
    }
    return render(request, "members/checkin_screen.html", context)


def checkin_screen_code(request, *, plaza: Plaza) -> JsonResponse:
    response = JsonResponse(_checkin_screen_data(request, plaza))
    patch_cache_control(response, no_store=True, private=True)
    return response
