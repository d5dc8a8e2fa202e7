"""Coupon templates are edited here; coupons are read here and changed only through the
services (issue to a member, void)."""

import uuid
from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext, gettext_lazy, ngettext

from core.admin_fields import UnitsAdminMixin, format_percent, format_yuan, percent_column, yuan_column
from core.errors import ApplicationError
from coupons import claims, exchange_refunds, services
from coupons.models import Coupon, CouponEvent, CouponTemplate
from members.models import Member

VOID_MAX_COUPONS = 500


class IssueForm(forms.Form):
    member_no = forms.CharField(label=gettext_lazy("member number"), max_length=16)
    # Sent back with the form, so that a double submit issues once.
    token = forms.CharField(widget=forms.HiddenInput)

    def clean_member_no(self):
        member = Member.objects.filter(member_no=self.cleaned_data["member_no"].strip()).first()
        if member is None:
            raise forms.ValidationError(gettext_lazy("No member has this number."))
        return member


def template_value(template: CouponTemplate) -> str:
    """What the template gives, in one phrase: "¥20.00 off ¥100.00", "15% off (at most ¥30.00)"."""
    kind = template.kind
    if kind == CouponTemplate.Kind.CASH_OFF:
        if template.min_spend_fen:
            return gettext("%(value)s off %(min)s") % {
                "value": format_yuan(template.face_value_fen), "min": format_yuan(template.min_spend_fen)}
        return gettext("%(value)s off") % {"value": format_yuan(template.face_value_fen)}
    if kind == CouponTemplate.Kind.PERCENT_OFF:
        text = gettext("%(percent)s off") % {"percent": format_percent(template.percent_off_bp)}
        if template.max_discount_fen:
            text += gettext(" (at most %(max)s)") % {"max": format_yuan(template.max_discount_fen)}
        return text
    if kind == CouponTemplate.Kind.VOUCHER:
        return format_yuan(template.face_value_fen)
    return template.gift_description


# Shown in place of the stored integers where the page cannot be edited.
VALUE_COLUMNS = {
    "face_value_fen": "face_value_yuan", "min_spend_fen": "min_spend_yuan", "max_discount_fen": "max_discount_yuan",
    "percent_off_bp": "percent_off_shown",
}


class TemplateValueMixin(UnitsAdminMixin):
    """Coupon templates' money in yuan and their percentage in % (core.admin_fields): typed as
    such in the form, and shown as such in the list and on a page that cannot be edited."""

    face_value_yuan = staticmethod(yuan_column("face_value_fen", model=CouponTemplate))
    min_spend_yuan = staticmethod(yuan_column("min_spend_fen", model=CouponTemplate))
    max_discount_yuan = staticmethod(yuan_column("max_discount_fen", model=CouponTemplate))
    percent_off_shown = staticmethod(percent_column("percent_off_bp", model=CouponTemplate))

    @admin.display(description=gettext_lazy("value"))
    def value(self, obj):
        return template_value(obj)

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if self._editable(request, obj):
            return fieldsets
        return [(name, {**options, "fields": [VALUE_COLUMNS.get(f, f) for f in options["fields"]]})
                for name, options in fieldsets]

    def get_readonly_fields(self, request, obj=None):
        readonly = list(super().get_readonly_fields(request, obj))
        if self._editable(request, obj):
            return readonly
        return [VALUE_COLUMNS.get(f, f) for f in readonly] + [c for c in VALUE_COLUMNS.values() if c not in readonly]

    def _editable(self, request, obj) -> bool:
        return self.has_change_permission(request, obj) if obj is not None else self.has_add_permission(request)


@admin.register(CouponTemplate)
class CouponTemplateAdmin(TemplateValueMixin, admin.ModelAdmin):
    list_display = ["name", "kind", "value", "merchant", "funded_by", "status", "issued_count", "total_quota", "redeemed"]
    list_filter = ["status", "kind", "funded_by"]
    search_fields = ["name", "merchant__name"]
    autocomplete_fields = ["merchant"]
    filter_horizontal = ["stores"]
    readonly_fields = ["issued_count", "redeemed", "issue_link", "claim_qr", "created_at"]
    actions = ["claim_code_reset"]
    fieldsets = [
        (None, {"fields": ["name", "description", "kind", "merchant", "funded_by", "status", "issue_link"]}),
        (gettext_lazy("Value"), {"fields": ["face_value_fen", "min_spend_fen", "percent_off_bp", "max_discount_fen", "gift_description"]}),
        (gettext_lazy("Validity: a window, or days from issue"), {"fields": ["valid_from", "valid_until", "valid_days"]}),
        (gettext_lazy("Limits"), {"fields": ["total_quota", "per_member_limit", "issued_count", "redeemed"]}),
        (gettext_lazy("Use"), {"fields": ["stores", "combines_with_points", "points_price"]}),
        (gettext_lazy("Claiming"), {"fields": ["claimable", "claim_qr"]}),
        (None, {"fields": ["created_at"]}),
    ]

    @admin.display(description=gettext_lazy("redeemed"))
    def redeemed(self, obj):
        if obj.pk is None:
            return 0
        return obj.coupons.filter(status=Coupon.Status.REDEEMED).count()

    @admin.display(description=gettext_lazy("issue"))
    def issue_link(self, obj):
        if obj.pk is None:
            return "—"
        return format_html('<a href="{}">{}</a>', reverse("admin:coupons_coupontemplate_issue", args=[obj.pk]),
                           gettext("Issue to a member"))

    @admin.display(description=gettext_lazy("claim QR"))
    def claim_qr(self, obj):
        if obj.pk is None:
            return "—"
        if obj.points_price is not None:
            return gettext("Sold for points: not claimed free.")
        return format_html('<a href="{}">{}</a>', reverse("admin:coupons_coupontemplate_claim_qr", args=[obj.pk]),
                           gettext("Print the claim QR poster"))

    @admin.action(description=gettext_lazy("New claim QR codes for the selected templates (printed posters stop working)"),
                  permissions=["change"])
    def claim_code_reset(self, request, queryset):
        reset = [template for template in queryset.exclude(claim_code=None)]
        for template in reset:
            claims.template_claim_code_reset(template)
        message = ngettext("%(n)d template has a new claim QR code.", "%(n)d templates have a new claim QR code.", len(reset))
        self.message_user(request, message % {"n": len(reset)})

    def get_urls(self):
        return [
            path("<path:object_id>/issue/", self.admin_site.admin_view(self.issue_view), name="coupons_coupontemplate_issue"),
            path("<path:object_id>/claim-qr/", self.admin_site.admin_view(self.claim_qr_view),
                 name="coupons_coupontemplate_claim_qr"),
            *super().get_urls(),
        ]

    def claim_qr_view(self, request, object_id):
        """The template's claim QR poster, its code made on first use."""
        if not self.has_change_permission(request):
            raise PermissionDenied
        template = self.get_object(request, object_id)
        if template is None or template.points_price is not None:
            raise Http404
        code = claims.template_claim_code_ensure(template)
        back = reverse("admin:coupons_coupontemplate_change", args=[template.pk])
        return redirect(reverse("coupons:claim-print", args=[code]) + "?" + urlencode({"back": back}))

    def issue_view(self, request, object_id):
        if not self.has_change_permission(request):
            raise PermissionDenied
        template = self.get_object(request, object_id)
        if template is None:
            raise Http404
        if request.method == "POST":
            form = IssueForm(request.POST)
            if form.is_valid():
                try:
                    coupon = services.coupon_issue(
                        template=template, member=form.cleaned_data["member_no"], via=Coupon.Via.ADMIN,
                        idempotency_key=f"admin:{form.cleaned_data['token']}", operator=request.user,
                    )
                except ApplicationError as exc:
                    form.add_error(None, exc.message)
                else:
                    self.message_user(request, gettext("Issued coupon %(code)s to member %(member)s.") % {
                        "code": coupon.code, "member": coupon.member.member_no})
                    return redirect("admin:coupons_coupontemplate_change", template.pk)
        else:
            form = IssueForm(initial={"token": uuid.uuid4()})
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": gettext("Issue “%(name)s” to a member") % {"name": template.name},
            "form": form,
            "carry": [],
            "submit_label": gettext("Issue"),
            "submit_name": "issue",
        }
        return TemplateResponse(request, "admin/members/form_page.html", context)


class CouponEventInline(admin.TabularInline):
    model = CouponEvent
    fields = ["created_at", "kind", "detail", "operator"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Coupon)
class CouponAdmin(admin.ModelAdmin):
    list_display = ["code", "template", "member", "status", "valid_until", "issued_via", "redeemed_at", "created_at"]
    list_filter = ["status", "issued_via", ("created_at", admin.DateFieldListFilter), "template"]
    search_fields = ["=code", "=member__member_no"]
    list_select_related = ["template", "member"]
    date_hierarchy = "created_at"
    inlines = [CouponEventInline]
    actions = ["void", "refund_points"]
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_void_permission(self, request):
        return request.user.has_perm("coupons.change_coupon")

    @admin.action(description=gettext_lazy("Void the selected coupons"), permissions=["void"])
    def void(self, request, queryset):
        self._each(request, queryset, lambda coupon: services.coupon_void(
            coupon=coupon, reason="voided by staff", operator=request.user,
        ), done=gettext("Voided %(n)d coupons."), not_done=gettext("Not voided: %(list)s"))

    @admin.action(description=gettext_lazy("Take back the selected points-mall coupons and give their points back"),
                  permissions=["void"])
    def refund_points(self, request, queryset):
        self._each(request, queryset, lambda coupon: exchange_refunds.coupon_exchange_refund(
            coupon=coupon, reason="taken back by staff", operator=request.user,
        ), done=gettext("%(n)d coupons taken back, their points given back."), not_done=gettext("Not taken back: %(list)s"))

    def _each(self, request, queryset, act, *, done: str, not_done: str) -> None:
        """``act`` on each selected coupon (at most VOID_MAX_COUPONS), then say how many and which refused why."""
        coupons = list(queryset.order_by("pk")[: VOID_MAX_COUPONS + 1])
        if len(coupons) > VOID_MAX_COUPONS:
            self.message_user(request, gettext("Void at most %(max)d coupons at a time.") % {"max": VOID_MAX_COUPONS}, messages.ERROR)
            return
        acted, refused = 0, []
        for coupon in coupons:
            try:
                act(coupon)
                acted += 1
            except ApplicationError as exc:
                refused.append(f"{coupon.code}: {exc.code}")
        if acted:
            self.message_user(request, done % {"n": acted})
        if refused:
            self.message_user(request, not_done % {"list": ", ".join(refused)}, messages.WARNING)
