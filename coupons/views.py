"""The shopper's coupon pages under /m/coupons/: my coupons, the free ones to claim and the
points mall on one page; a coupon with its rotating till code; a claim QR's landing; and,
for staff, the claim QR's printable poster.

Every form posts a one-time token of its own, drawn when the page is rendered: it is the
claim's or the exchange's idempotency key, so a double tap, a resubmitted form or a
retry after a lost answer takes one coupon (and one debit of points), never two. Django's
CSRF check guards the same forms from other sites.
"""

import secrets

from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext, pgettext
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from core.barcode import code128_svg
from core.errors import ApplicationError
from core.links import public_url
from core.money import fen_to_yuan
from core.qr import qr_png, qr_svg, qr_svg_once
from coupons import claims, codes, services
from coupons.models import Coupon, CouponTemplate
from members import ledger
from members.views import _message, _not_found, _refused, member_required

PAST_SHOWN = 20
# What the shopper is told when a claim or an exchange is refused, by error code.
REFUSALS = {
    "coupon_template_not_found": gettext_lazy("This coupon is not on offer."),
    "coupon_for_points": gettext_lazy("This coupon is sold for points in the points mall."),
    "coupon_claim_not_open": gettext_lazy("This coupon cannot be claimed yet."),
    "coupon_template_paused": gettext_lazy("This coupon is not being given out now."),
    "coupon_template_ended": gettext_lazy("This coupon's offer has ended."),
    "coupon_quota_exhausted": gettext_lazy("All of these coupons have been taken."),
    "coupon_member_limit_reached": gettext_lazy("You already have as many of these coupons as one member may."),
    "coupon_not_for_points": gettext_lazy("This coupon is not for sale for points."),
    "merchant_not_active": gettext_lazy("This shop is not giving out coupons now."),
    "idempotency_conflict": gettext_lazy("This page is out of date. Please try again."),
}
STALE_FORM = gettext_lazy("This page is out of date. Please try again.")


# --- how a coupon reads -------------------------------------------------------------------------


def _yuan(amount_fen: int) -> str:
    """2000 → "20", 1250 → "12.5": a price as people say it."""
    return fen_to_yuan(amount_fen).rstrip("0").rstrip(".")


def _percent(bp: int) -> str:
    whole, rest = divmod(bp, 100)
    return f"{whole}.{rest:02d}".rstrip("0") if rest else str(whole)


def template_value(template: CouponTemplate) -> dict:
    """The headline (big: "¥20", "15%") and the value in words ("¥20 off orders of ¥100")."""
    kind = CouponTemplate.Kind
    if template.kind == kind.CASH_OFF:
        off = _yuan(template.face_value_fen)
        if template.min_spend_fen:
            words = _("¥%(off)s off orders of ¥%(min)s") % {"off": off, "min": _yuan(template.min_spend_fen)}
        else:
            words = _("¥%(off)s off") % {"off": off}
        return {"headline": f"¥{off}", "words": words}
    if template.kind == kind.PERCENT_OFF:
        percent = _percent(template.percent_off_bp)
        if template.max_discount_fen:
            words = _("%(percent)s%% off, at most ¥%(cap)s") % {"percent": percent, "cap": _yuan(template.max_discount_fen)}
        else:
            words = _("%(percent)s%% off") % {"percent": percent}
        return {"headline": f"{percent}%", "words": words}
    if template.kind == kind.VOUCHER:
        value = _yuan(template.face_value_fen)
        return {"headline": f"¥{value}", "words": _("¥%(value)s voucher") % {"value": value}}
    return {"headline": pgettext("coupon kind", "Gift"), "words": _("Gift: %(gift)s") % {"gift": template.gift_description}}


def template_validity(template: CouponTemplate) -> str:
    if template.valid_days:
        return ngettext(
            "Valid for %(days)s day once yours", "Valid for %(days)s days once yours", template.valid_days
        ) % {"days": template.valid_days}
    return _("Valid %(start)s to %(end)s") % {
        "start": f"{timezone.localtime(template.valid_from):%Y-%m-%d}", "end": f"{timezone.localtime(template.valid_until):%Y-%m-%d}",
    }


def _min_spend(template: CouponTemplate) -> str:
    """The minimum spend to tell apart from the value ("" when none, or said in the value already)."""
    if not template.min_spend_fen or template.kind == CouponTemplate.Kind.CASH_OFF:
        return ""
    return _yuan(template.min_spend_fen)


def _template_view(template: CouponTemplate, **extra) -> dict:
    return {
        "template": template, **template_value(template), "validity": template_validity(template),
        "merchant": template.merchant.name if template.merchant_id else "", "token": secrets.token_urlsafe(16), **extra,
    }


def _coupon_state(coupon: Coupon, now) -> str:
    """"" for a coupon to use now; else what it is, in words."""
    status = Coupon.Status
    if coupon.status == status.REDEEMED:
        return _("Used")
    if coupon.status == status.VOID:
        return _("Cancelled")
    if coupon.status == status.HELD:
        return _("Held for an unpaid order")
    if coupon.status == status.EXPIRED or now >= coupon.valid_until:
        return pgettext("coupon state", "Expired")
    if now < coupon.valid_from:
        return _("Not valid yet")
    return ""


def _coupon_view(coupon: Coupon, now) -> dict:
    template = coupon.template
    state = _coupon_state(coupon, now)
    return {
        "coupon": coupon, **template_value(template), "merchant": template.merchant.name if template.merchant_id else "",
        "valid_until": timezone.localtime(coupon.valid_until), "valid_from": timezone.localtime(coupon.valid_from),
        "state": state, "usable": not state, "not_yet": coupon.status == Coupon.Status.ISSUED and now < coupon.valid_from,
    }


def _refusal(exc: ApplicationError) -> str:
    if isinstance(exc, ledger.InsufficientPoints):
        return _("Not enough points: you have %(balance)s points to spend.") % {"balance": exc.extra.get("points_balance", 0)}
    return str(REFUSALS.get(exc.code, _("Sorry, that did not go through. Please try again.")))


def _posted_token(request) -> str | None:
    """The form's one-time token: URL-safe characters, as long as token_urlsafe(16) draws
    or a little longer; anything else is a stale or forged form."""
    token = request.POST.get("token", "")
    if 16 <= len(token) <= 64 and token.isascii() and all(ch.isalnum() or ch in "-_" for ch in token):
        return token
    return None


def _posted_id(request) -> int | None:
    raw = request.POST.get("template_id", "")
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        return None
    return int(raw)


# --- my coupons, free ones, the points mall -------------------------------------------------------


def _coupons_page(request, *, error: str = "", status: int = 200):
    member, now = request.member, timezone.now()
    usable = services.member_coupons_usable(member=member, at=now)
    past = (
        services.member_coupons(member=member)
        .exclude(status=Coupon.Status.ISSUED, valid_until__gt=now)[:PAST_SHOWN]
    )
    catalogue = list(services.coupon_catalogue(at=now))
    held = claims.member_templates_held(member=member, templates=catalogue)
    spendable = ledger.member_points_spendable(member=member)
    context = {
        "error": error,
        "points_balance": spendable,
        "usable": [_coupon_view(coupon, now) for coupon in usable],
        "past": [_coupon_view(coupon, now) for coupon in past],
        "offers": [
            _template_view(offer.template, can_claim=offer.can_claim, stock_left=offer.stock_left)
            for offer in claims.claimable_templates(member=member, at=now)
        ],
        "catalogue": [
            _template_view(
                template, stock_left=None if template.total_quota is None else template.total_quota - template.issued_count,
                affordable=spendable >= template.points_price,
                at_limit=held.get(template.pk, 0) >= template.per_member_limit,
            )
            for template in catalogue
        ],
    }
    return render(request, "coupons/list.html", context, status=status)


@require_GET
@member_required
def coupons_page(request):
    return _coupons_page(request)


@require_POST
@member_required
def claim_listed(request):
    """Claim a listed free coupon from the coupons page."""
    token, template_id = _posted_token(request), _posted_id(request)
    if token is None or template_id is None:
        return _coupons_page(request, error=str(STALE_FORM), status=400)
    try:
        template = claims.claimable_template(template_id=template_id)
        coupon = claims.coupon_claim(member=request.member, template=template, via_code=False, at=timezone.now(),
                                     request_key=f"h5:{token}")
    except ledger.MemberNotActive:
        return _refused(request)
    except ApplicationError as exc:
        return _coupons_page(request, error=_refusal(exc), status=exc.status)
    return redirect(reverse("coupons:detail", args=[coupon.pk]) + "?new=claimed")


@require_POST
@member_required
def exchange(request):
    """Exchange points for a coupon of the points mall."""
    token, template_id = _posted_token(request), _posted_id(request)
    if token is None or template_id is None:
        return _coupons_page(request, error=str(STALE_FORM), status=400)
    try:
        template = services.catalogue_template(template_id=template_id)
        coupon = services.coupon_exchange(member=request.member, template=template, idempotency_key=f"h5:{token}")
    except ledger.MemberNotActive:
        return _refused(request)
    except ApplicationError as exc:
        return _coupons_page(request, error=_refusal(exc), status=exc.status)
    return redirect(reverse("coupons:detail", args=[coupon.pk]) + "?new=exchanged")


# --- one coupon and its till code -------------------------------------------------------------------


def _till_code(coupon: Coupon) -> dict:
    now = timezone.now()
    issued = codes.coupon_code_issue(coupon=coupon, now=now)
    code = issued.code
    return {
        "code": code,
        "code_display": " ".join(code[i : i + 4] for i in range(0, len(code), 4)),
        "expires_at": issued.expires_at.isoformat(),
        # Seconds, from the server's clock: a phone whose clock is off still refreshes in time.
        "refresh_in": round(max((issued.expires_at - now).total_seconds(), 0), 3),
        # Shown once each: drawn, not memoised (core.qr).
        "qr_svg": qr_svg_once(code),
        "barcode_svg": code128_svg(code),
    }


@require_GET
@member_required
def detail(request, coupon_id):
    try:
        coupon = services.member_coupon(member=request.member, coupon_id=coupon_id)
    except ApplicationError:
        return _not_found(request, _("No such coupon."))
    view = _coupon_view(coupon, timezone.now())
    template = coupon.template
    context = {
        **view, "new": request.GET.get("new", ""), "min_spend": _min_spend(template),
        "stores": [store.name for store in template.stores.all()],
        "code": _till_code(coupon) if view["usable"] else None,
    }
    if context["new"] == "exchanged":
        context["points_balance"] = ledger.member_points_spendable(member=request.member)
    return render(request, "coupons/detail.html", context)


@require_GET
@member_required(as_json=True)
def code_json(request, coupon_id):
    """The next till code; once the coupon cannot be used, its error (the page reloads)."""
    try:
        coupon = services.member_coupon(member=request.member, coupon_id=coupon_id)
        if coupon.status == Coupon.Status.HELD:
            raise services.CouponUsed()
        services.coupon_usable_check(coupon=coupon, at=timezone.now())
    except ApplicationError as exc:
        return JsonResponse(exc.as_dict(), status=exc.status)
    return JsonResponse(_till_code(coupon))


# --- a claim QR -------------------------------------------------------------------------------------


def claim_link(request, template: CouponTemplate) -> str:
    return public_url(request, reverse("coupons:claim-code", args=[template.claim_code]))


@require_http_methods(["GET", "POST"])
def claim_by_code(request, claim_code):
    """A claim QR's page. An unknown code is said so before anyone is asked to log in."""
    try:
        template = claims.template_by_claim_code(claim_code)
    except ApplicationError:
        return _not_found(request, _("This coupon code is not valid. Please scan the code again."))
    return _claim_by_code(request, template)


@member_required
def _claim_by_code(request, template):
    member, now = request.member, timezone.now()
    error, status = "", 200
    if request.method == "POST":
        token = _posted_token(request)
        if token is None:
            error, status = str(STALE_FORM), 400
        else:
            try:
                coupon = claims.coupon_claim(
                    member=member, template=template, via_code=True, at=now, request_key=f"h5:{token}"
                )
            except ledger.MemberNotActive:
                return _refused(request)
            except ApplicationError as exc:
                error, status = _refusal(exc), exc.status
            else:
                return redirect(reverse("coupons:detail", args=[coupon.pk]) + "?new=claimed")
    held = claims.member_templates_held(member=member, templates=[template]).get(template.pk, 0)
    refused = ""
    if not error:
        try:
            claims.claim_check(template=template, via_code=True, at=now)
        except ApplicationError as exc:
            refused = _refusal(exc)
        if not refused and held >= template.per_member_limit:
            refused = str(REFUSALS["coupon_member_limit_reached"])
    context = {**_template_view(template), "error": error, "refused": refused, "held": held}
    return render(request, "coupons/claim.html", context, status=status)


def _admin_back(request) -> str:
    """``?back=``, when it is a page of this site (the admin page the staff came from)."""
    back = request.GET.get("back", "")
    if back and url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return back
    return ""


@require_GET
@staff_member_required
def claim_print(request, claim_code):
    """A printable poster of a template's claim QR, for staff (linked from the admin)."""
    try:
        template = claims.template_by_claim_code(claim_code)
    except ApplicationError:
        return _message(request, title=_("Not found"), message=_("No coupon has this claim code."), status=404)
    link = claim_link(request, template)
    context = {
        **_template_view(template), "link": link, "qr": qr_svg(link),
        "png": reverse("coupons:claim-png", args=[template.claim_code]), "back": _admin_back(request),
    }
    return render(request, "coupons/print_claim.html", context)


@require_GET
@staff_member_required
def claim_png(request, claim_code):
    try:
        template = claims.template_by_claim_code(claim_code)
    except ApplicationError:
        return HttpResponse(status=404)
    response = HttpResponse(qr_png(claim_link(request, template)), content_type="image/png")
    response["Content-Disposition"] = f'attachment; filename="coupon-{template.pk}-claim.png"'
    return response
