"""The merchant's stores (with their payment QR) and its API keys."""

from django import forms
from django.contrib import admin, messages
from django.shortcuts import redirect
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext, gettext_lazy, ngettext

from backoffice.merchant_site.site import TenantAdmin, merchant_of, site
from members import auth, views
from members.models import MerchantApiKey, Store


class StoreAdmin(TenantAdmin):
    list_display = ["code", "name", "plaza", "unit", "is_active", "print_qr_link"]
    list_select_related = ["plaza"]
    fields = ["code", "name", "plaza", "unit", "is_active", "created_at", "print_qr_link"]
    readonly_fields = ["print_qr_link"]
    search_fields = ["=code"]

    def get_urls(self):
        view = self.admin_site.admin_view(self.print_qr_view)
        return [path("<path:object_id>/print-qr/", view, name="members_store_print_qr"), *super().get_urls()]

    def print_qr_view(self, request, object_id):
        """The store's payment QR poster, the page the mall's admin prints (members.views.qr_posters)."""
        store = self.get_object(request, object_id)
        if not store.is_active:
            self.message_user(request, gettext("Only an active store has a working QR code."), messages.ERROR)
            return redirect("merchant:members_store_change", store.pk)
        return views.qr_posters(request, stores=[store], back=reverse("merchant:members_store_changelist"))

    @admin.display(description=gettext_lazy("payment QR"))
    def print_qr_link(self, obj):
        if not obj.pk or not obj.is_active:
            return "—"
        url = reverse("merchant:members_store_print_qr", args=[obj.pk])
        return format_html('<a href="{}" target="_blank">{}</a>', url, gettext("Print payment QR"))


class KeyIssueForm(forms.Form):
    name = forms.CharField(
        label=gettext_lazy("name"), max_length=80, help_text=gettext_lazy("Which till or system will use it, e.g. “POS 2”."),
    )


class MerchantApiKeyAdmin(TenantAdmin):
    list_display = ["key", "name", "created_at", "last_used_at", "revoked_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    fields = ["key", "name", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = ["key"]
    actions = ["revoke"]
    ordering = ["-created_at"]

    @admin.display(description=gettext_lazy("key"))
    def key(self, obj):
        return f"{auth.KEY_PREFIX}{obj.prefix}_…"

    def has_add_permission(self, request):
        return merchant_of(request) is not None

    def has_revoke_permission(self, request):
        return merchant_of(request) is not None

    def add_view(self, request, form_url="", extra_context=None):
        """Issue a key: shown on the answer to the POST, once, and never kept (only its hash is)."""
        merchant = merchant_of(request)
        form = KeyIssueForm(request.POST if request.method == "POST" else None)
        if form.is_valid():
            name = f"{form.cleaned_data['name']} · {request.user.get_username()}"[:100]
            key, raw_key = auth.merchant_api_key_create(merchant=merchant, name=name)
            self.log_addition(request, key, [{"added": {}}])
            # Rendered, not put in a message: messages travel in a cookie.
            return self.page(request, title=gettext("New API key"), template="backoffice/api_key_issued.html",
                             key=key, raw_key=raw_key)
        return self.page(request, title=gettext("Issue an API key"), template="admin/members/form_page.html", form=form,
                         carry=[], submit_label=gettext("Issue the key"), submit_name="issue")

    @admin.action(description=gettext_lazy("Revoke the selected keys"), permissions=["revoke"])
    def revoke(self, request, queryset):
        keys = list(queryset.filter(revoked_at__isnull=True))
        for key in keys:
            auth.merchant_api_key_revoke(key=key)
            self.log_change(request, key, f"Revoked API key mk_{key.prefix}")
        self.message_user(request, ngettext("Revoked %(n)d key.", "Revoked %(n)d keys.", len(keys)) % {"n": len(keys)},
                          messages.SUCCESS)


site.register(Store, StoreAdmin)
site.register(MerchantApiKey, MerchantApiKeyAdmin)
