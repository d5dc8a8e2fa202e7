"""H5 page: the shopper confirms paying a shop with points (/m/redeem/<store_code>/).

A scanned member code pays at most REDEEM_CODE_MAX_POINTS at the till. For more, the
shopper opens this page (from the shop's payment QR), enters the points, confirms, and
shows the cashier the redemption code it gives: single use, for this shop, this member
and at most those points, valid about two minutes (members.spend).
"""

from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods

from core.errors import ApplicationError
from core.qr import qr_svg_once
from members import ledger, spend
from members.views import _not_found, member_required


def _points_posted(raw: str) -> int | None:
    raw = (raw or "").strip()
    if not raw.isascii() or not raw.isdigit() or len(raw) > 12:
        return None
    return int(raw)


@require_http_methods(["GET", "POST"])
@member_required
def redeem(request, store_code):
    try:
        store = spend.spend_store(store_code=store_code)
    except ApplicationError:
        return _not_found(request, _("This shop's code is not valid. Please ask the shop for help."))
    member = request.member
    spendable = ledger.member_points_spendable(member=member)
    context = {
        "store": store, "member": member, "points_balance": spendable,
        "points_pending": ledger.member_points_pending(member=member), "code_limit": spend.code_spend_limit(),
    }
    if request.method == "POST":
        points = _points_posted(request.POST.get("points", ""))
        if points is None or points <= 0:
            context["error"] = _("Enter the points to pay, a whole number.")
        else:
            try:
                issued = spend.spend_token_issue(member=member, store=store, max_points=points)
            except ledger.InsufficientPoints:
                context["error"] = _("You have %(balance)s points to spend.") % {"balance": spendable}
            except ApplicationError as exc:
                context["error"] = exc.message
            else:
                context.update(
                    issued=issued, token_qr=qr_svg_once(issued.token),
                    seconds_left=max(int((issued.expires_at - timezone.now()).total_seconds()), 0),
                )
        context["points"] = request.POST.get("points", "")
    return render(request, "members/redeem.html", context, status=400 if "error" in context else 200)
