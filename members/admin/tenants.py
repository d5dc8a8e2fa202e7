"""Plazas, merchants (with their stores and API keys), stores."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Sum
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext, gettext_lazy, ngettext

from core.admin_fields import PercentField, UnitsAdminMixin
from core.errors import ApplicationError
from members import auth, roles, services, views
from members.admin.base import (
    ISSUE_KEYS_MAX_MERCHANTS,
    PlazaScopedMixin,
    ReadOnlyInline,
    ReadOnlyMixin,
    changelist_link,
)
from members.models import (
    Lot,
    Merchant,
    MerchantApiKey,
    Plaza,
    PointsTransaction,
    Store,
)

# --- tenants ----------------------------------------------------------------------

# Posters printed at once by one action: one page of QR images each.
PRINT_QR_MAX = 200


class PrintQrMixin:
    """A printable page of QR posters (members.views.qr_posters) for one object, from a
    link on its page and in its row, and for a selection, from an action. Only active
    objects have a working link, so only they are printed."""

    print_qr_label = ""

    def get_urls(self):
        name = f"{self.opts.app_label}_{self.opts.model_name}_print_qr"
        view = self.admin_site.admin_view(self.print_qr_view)
        return [path("<path:object_id>/print-qr/", view, name=name), *super().get_urls()]

    def print_qr_view(self, request, object_id):
        obj = get_object_or_404(self.get_queryset(request), pk=object_id)
        if not self.has_view_permission(request, obj):
            raise PermissionDenied
        if not obj.is_active:
            self.message_user(request, gettext("Only an active plaza or store has a working QR code."), messages.ERROR)
            return redirect(f"admin:{self.opts.app_label}_{self.opts.model_name}_change", obj.pk)
        return self.print_qr_response(request, [obj])

    @admin.display(description=gettext_lazy("QR code"))
    def print_qr_link(self, obj):
        if not obj.pk or not obj.is_active:
            return "—"
        url = reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_print_qr", args=[obj.pk])
        return format_html('<a href="{}" target="_blank">{}</a>', url, self.print_qr_label)

    @admin.action(description=gettext_lazy("Print QR codes of the selected (active) ones"))
    def print_qr(self, request, queryset):
        objects = list(queryset.filter(is_active=True)[: PRINT_QR_MAX + 1])
        if not objects or len(objects) > PRINT_QR_MAX:
            message = gettext("Select between 1 and %(max)d active ones to print.") % {"max": PRINT_QR_MAX}
            self.message_user(request, message, messages.ERROR)
            return None
        return self.print_qr_response(request, objects)


@admin.register(Plaza)
class PlazaAdmin(PlazaScopedMixin, PrintQrMixin, admin.ModelAdmin):
    list_display = ["code", "name", "city", "is_active", "created_at", "print_qr_link", "checkin_screen_link"]
    list_filter = ["is_active", "city"]
    search_fields = ["code", "name"]
    readonly_fields = ["print_qr_link", "checkin_screen_link"]
    fieldsets = [
        (None, {"fields": ["code", "name", "city", "address", "notice", "is_active", "print_qr_link", "checkin_screen_link"]}),
        (gettext_lazy("Check-in: what proves the shopper is there (any one accepted proof is enough)"), {"fields": [
            "checkin_accepts_screen", "checkin_accepts_printed", "checkin_accepts_location", "checkin_accepts_permanent",
        ]}),
        (gettext_lazy("Geofence"), {"fields": ["latitude", "longitude", "geofence_radius_m"]}),
    ]
    actions = ["print_qr"]
    print_qr_label = gettext_lazy("Print check-in QR")

    def has_delete_permission(self, request, obj=None):
        return False  # members, stores and visits point at it: deactivate instead

    def scope_to_plazas(self, queryset, plaza_ids):
        return queryset.filter(pk__in=plaza_ids)

    def print_qr_response(self, request, plazas):
        # Printed links expire: staff choose for how long (?days=, or the action's form again).
        data = request.POST if request.method == "POST" else request.GET
        changelist = reverse("admin:members_plaza_changelist")
        if request.method == "POST":
            hidden = [("action", "print_qr"), *(("_selected_action", plaza.pk) for plaza in plazas)]
            form = {"method": "post", "action": changelist, "hidden": hidden}
        else:
            form = {"method": "get", "action": "", "hidden": []}
        return views.qr_posters(
            request, plazas=plazas, back=changelist, valid_days=views.printed_link_days(data.get("days")), validity_form=form
        )

    # --- the check-in screen: a display at the plaza showing its rotating code ---

    def get_urls(self):
        screen = self.admin_site.admin_view(self.checkin_screen_view)
        code = self.admin_site.admin_view(self.checkin_screen_code_view)
        return [
            path("<path:object_id>/checkin-screen/", screen, name="members_plaza_checkin_screen"),
            path("<path:object_id>/checkin-screen/code.json", code, name="members_plaza_checkin_screen_code"),
            *super().get_urls(),
        ]

    def has_checkin_screen_permission(self, request, obj=None) -> bool:
        """Those who may change the plaza, and a screen's own login with only this permission."""
        return request.user.has_perm("members.show_checkin_screen") or self.has_change_permission(request, obj)

    def _screen_plaza(self, request, object_id) -> Plaza:
        # A plaza manager shows their own plazas' code only: another's would check in from afar.
        plaza = get_object_or_404(self.get_queryset(request), pk=object_id, is_active=True)
        if not self.has_checkin_screen_permission(request, plaza):
            raise PermissionDenied
        return plaza

    def checkin_screen_view(self, request, object_id):
        plaza = self._screen_plaza(request, object_id)
        if not plaza.checkin_accepts_screen:
            message = gettext("This plaza does not accept the rotating code: turn it on first.")
            self.message_user(request, message, messages.ERROR)
            return redirect("admin:members_plaza_change", plaza.pk)
        code_url = reverse("admin:members_plaza_checkin_screen_code", args=[plaza.pk])
        back = reverse("admin:members_plaza_change", args=[plaza.pk]) if self.has_view_permission(request, plaza) else ""
        return views.checkin_screen(request, plaza=plaza, code_url=code_url, back=back)

    def checkin_screen_code_view(self, request, object_id):
        plaza = self._screen_plaza(request, object_id)
        if not plaza.checkin_accepts_screen:
            raise Http404("this plaza does not accept the rotating code")
        return views.checkin_screen_code(request, plaza=plaza)

    @admin.display(description=gettext_lazy("Check-in screen"))
    def checkin_screen_link(self, obj):
        if not obj.pk or not obj.is_active or not obj.checkin_accepts_screen:
            return "—"
        url = reverse("admin:members_plaza_checkin_screen", args=[obj.pk])
        return format_html('<a href="{}" target="_blank">{}</a>', url, gettext("Show the rotating code"))


class StoreInline(admin.TabularInline):
    model = Store
    fields = ["code", "name", "plaza", "unit", "is_active"]
    # The code is printed in the shop's payment QR: it is chosen once, on the store page.
    readonly_fields = ["code"]
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False

    def get_queryset(self, request):
        # A merchant with stores in several plazas: a plaza manager sees theirs only.
        queryset = super().get_queryset(request)
        plaza_ids = roles.plaza_scope(request.user)
        return queryset if plaza_ids is None else queryset.filter(plaza_id__in=plaza_ids)


class MerchantApiKeyInline(ReadOnlyInline):
    model = MerchantApiKey
    fields = ["prefix", "name", "created_at", "last_used_at", "revoked_at"]
    verbose_name_plural = gettext_lazy("API keys (issue and revoke them with the actions of the lists)")


class MerchantCreateForm(forms.Form):
    name = forms.CharField(label=gettext_lazy("name"), max_length=100)
    plaza = forms.ModelChoiceField(
        label=gettext_lazy("plaza"), queryset=Plaza.objects.filter(is_active=True),
        help_text=gettext_lazy("Where its first store is."),
    )
    # Typed in percent (1.25 = 1.25 % = 125 basis points); the service takes basis points.
    earn_rate_bp = PercentField(
        label=gettext_lazy("earn rate (%)"), required=False, max_value=10_000,
        help_text=gettext_lazy("The share of each sale it funds as points, in percent (1 = 1%). Empty: the default."),
    )
    store_name = forms.CharField(
        label=gettext_lazy("store name"), max_length=100, required=False, help_text=gettext_lazy("Empty: the merchant's name.")
    )
    store_code = forms.SlugField(
        label=gettext_lazy("store code"), max_length=32, required=False,
        help_text=gettext_lazy("Public, printed in the shop's payment QR. Empty: generated."),
    )


class HeldPointsFilter(admin.SimpleListFilter):
    """Merchants flagged by the release job: their sales' mall-funded points went over the daily cap."""

    title = gettext_lazy("flagged")
    parameter_name = "flagged"

    def lookups(self, request, model_admin):
        return [("held", gettext_lazy("Points held for review"))]

    def queryset(self, request, queryset):
        if self.value() == "held":
            held = Lot.objects.filter(status=Lot.Status.HELD, remaining__gt=0).values("merchant_id")
            return queryset.filter(pk__in=held)
        return queryset


@admin.register(Merchant)
class MerchantAdmin(UnitsAdminMixin, PlazaScopedMixin, admin.ModelAdmin):
    list_display = ["name", "status", "earn_rate_bp", "contact_phone", "held_points", "created_at"]
    list_filter = ["status", HeldPointsFilter]
    search_fields = ["name"]
    fields = ["name", "status", "earn_rate_bp", "max_sale_fen", "mall_points_daily_cap", "contact_phone", "created_at", "links"]
    readonly_fields = ["created_at", "links"]
    inlines = [StoreInline, MerchantApiKeyInline]
    actions = ["issue_api_key"]

    def has_delete_permission(self, request, obj=None):
        return False  # its stores, accounts and transactions point at it: close it instead

    def scope_to_plazas(self, queryset, plaza_ids):
        return queryset.filter(pk__in=Store.objects.filter(plaza_id__in=plaza_ids).values("merchant_id"))

    @admin.display(description=gettext_lazy("See also"))
    def links(self, obj):
        store_add = reverse("admin:members_store_add") + f"?merchant={obj.pk}"
        return format_html(
            '<a href="{}">{}</a> · {} · {} · {}',
            store_add,
            gettext("Add a store"),
            changelist_link(MerchantApiKey, gettext("API keys (revoke)"), merchant__id__exact=obj.pk),
            changelist_link(PointsTransaction, gettext("Points transactions"), merchant=obj.pk),
            changelist_link(Lot, gettext("Points held for review"), merchant=obj.pk, status__exact=Lot.Status.HELD),
        )

    @admin.display(description=gettext_lazy("held points"))
    def held_points(self, obj):
        """Mall-funded points of this merchant's sales over its daily cap, waiting for staff."""
        held = Lot.objects.filter(merchant=obj, status=Lot.Status.HELD, remaining__gt=0).aggregate(s=Sum("remaining"))["s"]
        if not held:
            return "—"
        return changelist_link(Lot, f"⚑ {held}", merchant=obj.pk, status__exact=Lot.Status.HELD)

    def add_view(self, request, form_url="", extra_context=None):
        # A merchant is born with its ledger accounts, its first store and a key:
        # services.merchant_create does all three, so the model form is not used.
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = MerchantCreateForm(request.POST if request.method == "POST" else None)
        if form.is_valid():
            try:
                merchant, _store, _key, raw_key = services.merchant_create(**form.cleaned_data)
            except ApplicationError as exc:
                form.add_error(None, f"{exc.code}: {exc.message}")
            else:
                self.log_addition(request, merchant, [{"added": {}}])
                self._show_raw_key(request, merchant, raw_key)
                return redirect("admin:members_merchant_change", merchant.pk)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": gettext("Add merchant"),
            "form": form,
            "submit_label": gettext("Create merchant, store and API key"),
        }
        return TemplateResponse(request, "admin/members/form_page.html", context)

    def has_issue_api_key_permission(self, request):
        return request.user.has_perm("members.add_merchantapikey")

    @admin.action(description=gettext_lazy("Issue a new API key"), permissions=["issue_api_key"])
    def issue_api_key(self, request, queryset):
        merchants = list(queryset[: ISSUE_KEYS_MAX_MERCHANTS + 1])
        if len(merchants) > ISSUE_KEYS_MAX_MERCHANTS:
            message = gettext("Issue keys for at most %(max)d merchants at a time.") % {"max": ISSUE_KEYS_MAX_MERCHANTS}
            self.message_user(request, message, messages.ERROR)
            return
        name = f"issued in admin by {request.user.get_username()}"[:100]
        for merchant in merchants:
            key, raw_key = auth.merchant_api_key_create(merchant=merchant, name=name)
            self.log_change(request, merchant, f"Issued API key mk_{key.prefix}")
            self._show_raw_key(request, merchant, raw_key)

    def _show_raw_key(self, request, merchant, raw_key):
        # Only the key's hash is stored: this message is the one time anyone sees it.
        self.message_user(
            request,
            format_html(
                gettext("New API key for {}: <code>{}</code> — copy it now, it is not shown again."), merchant, raw_key
            ),
            messages.WARNING,
        )


@admin.register(Store)
class StoreAdmin(PlazaScopedMixin, PrintQrMixin, admin.ModelAdmin):
    list_display = ["code", "name", "merchant", "plaza", "unit", "is_active", "print_qr_link"]
    list_select_related = ["merchant", "plaza"]
    list_filter = ["is_active", "plaza"]
    search_fields = ["code", "name"]
    autocomplete_fields = ["merchant"]
    actions = ["print_qr"]
    print_qr_label = gettext_lazy("Print payment QR")

    def get_readonly_fields(self, request, obj=None):
        # The code is printed in the shop's payment QR: changing it would break the QR.
        return ["code", "created_at", "print_qr_link"] if obj else ["created_at"]

    def print_qr_response(self, request, stores):
        return views.qr_posters(request, stores=stores, back=reverse("admin:members_store_changelist"))

    def has_delete_permission(self, request, obj=None):
        return False  # transactions and visits point at it: deactivate instead

    def scope_to_plazas(self, queryset, plaza_ids):
        return queryset.filter(plaza_id__in=plaza_ids)


@admin.register(MerchantApiKey)
class MerchantApiKeyAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["key", "merchant", "name", "created_at", "last_used_at", "revoked_at"]
    list_select_related = ["merchant"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["prefix"]
    search_help_text = gettext_lazy("A key's prefix: mk_<prefix>.")
    fields = ["key", "merchant", "name", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke"]

    @admin.display(description=gettext_lazy("key"))
    def key(self, obj):
        return f"mk_{obj.prefix}_…"

    def get_search_results(self, request, queryset, search_term):
        prefix = search_term.strip().removeprefix(auth.KEY_PREFIX).split("_", 1)[0]
        return (queryset.filter(prefix=prefix) if prefix else queryset), False

    def has_revoke_permission(self, request):
        return request.user.has_perm("members.change_merchantapikey")

    @admin.action(description=gettext_lazy("Revoke selected keys"), permissions=["revoke"])
    def revoke(self, request, queryset):
        keys = list(queryset.filter(revoked_at__isnull=True).select_related("merchant"))
        for key in keys:
            auth.merchant_api_key_revoke(key=key)
            self.log_change(request, key.merchant, f"Revoked API key mk_{key.prefix}")
        message = ngettext("Revoked %(count)d key.", "Revoked %(count)d keys.", len(keys)) % {"count": len(keys)}
        self.message_user(request, message, messages.SUCCESS)
