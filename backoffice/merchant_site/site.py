"""The site, its login and its landing page, and the base every page here shares."""

from datetime import timedelta

from django import forms
from django.contrib import admin
from django.contrib.admin.utils import flatten_fieldsets
from django.contrib.auth.forms import AuthenticationForm
from django.core.paginator import Paginator
from django.http import Http404
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.translation import gettext_lazy

from backoffice import services
from core.admin_fields import format_yuan
from members.models import Merchant, Store
from payments import reports

# The landing page's daily figures: the last 30 days, today included.
INDEX_DAYS = 30

_MERCHANT = "_backoffice_merchant"


def merchant_of(request) -> Merchant | None:
    """The merchant whose back office this request may see (once per request), or None."""
    if not hasattr(request, _MERCHANT):
        setattr(request, _MERCHANT, services.user_merchant(user=getattr(request, "user", None)))
    return getattr(request, _MERCHANT)


class MerchantLoginForm(AuthenticationForm):
    """Only a merchant's back-office login gets in; anyone else reads the same message as
    for a wrong password (as Django's admin does for non-staff)."""

    required_css_class = "required"
    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": gettext_lazy(
            "Please enter the username and password of a merchant back-office login. Both may be case-sensitive."
        ),
    }

    def confirm_login_allowed(self, user):
        super().confirm_login_allowed(user)
        if services.user_merchant(user=user) is None:
            raise forms.ValidationError(self.error_messages["invalid_login"], code="invalid_login")


class MerchantAdminSite(admin.AdminSite):
    site_header = gettext_lazy("Merchant back office")
    site_title = gettext_lazy("Merchant back office")
    index_title = gettext_lazy("Your shop's figures")
    site_url = None  # shoppers' pages are not the tenant's site
    login_form = MerchantLoginForm
    index_template = "backoffice/index.html"

    def has_permission(self, request):
        # Not is_staff: tenants' logins are never staff, and mall staff are refused here.
        return merchant_of(request) is not None

    def get_urls(self):
        # "View on site" redirects to any object's public URL by content type and id,
        # whoever owns it: not for tenants.
        return [url for url in super().get_urls() if getattr(url, "name", None) != "view_on_site"]

    def each_context(self, request):
        context = super().each_context(request)
        context["merchant"] = merchant_of(request)
        return context

    def index(self, request, extra_context=None):
        merchant = merchant_of(request)
        return super().index(request, extra_context={**(extra_context or {}), **merchant_figures(merchant)})


site = MerchantAdminSite(name="merchant")


def merchant_figures(merchant: Merchant, *, today=None) -> dict:
    """The landing page's figures: the API's daily report for the last INDEX_DAYS days, and
    this month's settlement so far."""
    today = today or timezone.localdate()
    first = today - timedelta(days=INDEX_DAYS - 1)
    days = reports.merchant_daily_report(merchant=merchant, first=first, last=today)
    statement = reports.merchant_monthly_settlement(merchant=merchant, period=today.strftime("%Y-%m"))
    rows = [{
        "day": day.day, "customers": day.customers, "transactions": day.transactions, "sales": format_yuan(day.sales_fen),
        "ticket": format_yuan(day.average_ticket_fen), "frequency": day.frequency, "refunds": format_yuan(day.refunds_fen),
        "points_funded": day.points_funded, "points_accepted": day.points_accepted,
    } for day in reversed(days)]
    totals = {
        "transactions": sum(day.transactions for day in days),
        "sales": format_yuan(sum(day.sales_fen for day in days)),
        "refunds": format_yuan(sum(day.refunds_fen for day in days)),
        "points_funded": sum(day.points_funded for day in days),
        "points_accepted": sum(day.points_accepted for day in days),
    }
    settlement = {
        "period": today.strftime("%Y-%m"),
        "funded_points": statement.funded_points, "accepted_points": statement.accepted_points,
        "points_net": format_yuan(statement.net_fen), "collected": format_yuan(statement.collected_fen),
        "refunded": format_yuan(statement.refunded_fen), "payments_due": format_yuan(statement.payments_due_fen),
        "coupons_mall_funded": format_yuan(statement.coupons_mall_funded_fen),
        "coupons_merchant_funded": format_yuan(statement.coupons_merchant_funded_fen),
        "total_due": format_yuan(statement.total_due_fen),
    }
    return {"daily": rows, "daily_first": first, "daily_last": today, "totals": totals, "settlement": settlement}


class CappedCountPaginator(Paginator):
    """At most COUNT_CAP rows counted: a busy merchant's sales grow without end."""

    COUNT_CAP = 10_000

    @cached_property
    def count(self):
        return self.object_list[: self.COUNT_CAP].count()


class TenantAdmin(admin.ModelAdmin):
    """Rows of the signed-in merchant only; another's object is not found (404).

    Read-only unless a subclass says otherwise. Tenants' logins hold no Django
    permissions: being bound to the merchant is what lets them see its pages.
    """

    merchant_field = "merchant"
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = CappedCountPaginator

    def get_queryset(self, request):
        merchant = merchant_of(request)
        queryset = super().get_queryset(request)
        if merchant is None:
            return queryset.none()
        return queryset.filter(**{self.merchant_field: merchant})

    def get_object(self, request, object_id, from_field=None):
        obj = super().get_object(request, object_id, from_field)
        if obj is None:
            # Django's admin would redirect with "perhaps it was deleted": another
            # merchant's id must look exactly like one that never existed.
            raise Http404
        return obj

    def has_module_permission(self, request):
        return merchant_of(request) is not None

    def has_view_permission(self, request, obj=None):
        return merchant_of(request) is not None

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_readonly_fields(self, request, obj=None):
        if self.has_change_permission(request, obj) or (obj is None and self.has_add_permission(request)):
            return self.readonly_fields
        shown = flatten_fieldsets(self.fieldsets) if self.fieldsets else list(self.fields or ())
        return list(dict.fromkeys([*shown, *self.readonly_fields]))

    def page(self, request, *, title: str, template: str, **context) -> TemplateResponse:
        """One of this admin's own pages (a form), in the site's frame."""
        request.current_app = self.admin_site.name
        return TemplateResponse(request, template, {
            **self.admin_site.each_context(request), "opts": self.opts, "title": title, **context,
        })


class OwnStoreFilter(admin.SimpleListFilter):
    """The merchant's own stores: a few per merchant, so a sidebar list."""

    title = gettext_lazy("store")
    parameter_name = "store"

    def lookups(self, request, model_admin):
        merchant = merchant_of(request)
        stores = Store.objects.filter(merchant=merchant) if merchant else Store.objects.none()
        return [(str(store.pk), str(store)) for store in stores]

    def queryset(self, request, queryset):
        value = self.value()
        if value and value.isdigit():
            return queryset.filter(store_id=int(value))  # within the merchant's rows already
        return queryset
