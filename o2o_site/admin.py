"""The mall staff's console: the Django admin site, in the mall's name.

Every app registers on ``admin.site`` as usual; INSTALLED_APPS names
``o2o_site.apps.MallAdminConfig``, which makes this class that site.
"""

from django.contrib import admin
from django.utils.translation import gettext_lazy


class MallAdminSite(admin.AdminSite):
    site_header = gettext_lazy("Big membership · mall console")
    site_title = gettext_lazy("Big membership")
    index_title = gettext_lazy("Overview")
    # "View site": the shoppers' pages (the root URL belongs to the bots' endpoints).
    site_url = "/m/"
    # Changes to these need a "reason for this change" on the form (core.audit_admin);
    # elsewhere the reason is optional. Additions never need one.
    audit_reason_required_models = frozenset({
        "members.member", "members.tier", "members.merchant",
        "coupons.campaign", "coupons.coupontemplate", "coupons.coupon",
    })

    def register(self, model_or_iterable, admin_class=None, **options):
        """Every ModelAdmin on this site is audited: the audit mixin goes in front of its class."""
        from django.db.models.base import ModelBase

        from core.audit_admin import AuditedAdminMixin
        from core.models import AuditEntry

        models = [model_or_iterable] if isinstance(model_or_iterable, ModelBase) else list(model_or_iterable)
        for model in models:
            cls = admin_class or admin.ModelAdmin
            if model is not AuditEntry and not issubclass(cls, AuditedAdminMixin):
                attrs = {"__module__": cls.__module__, "__qualname__": cls.__qualname__}
                if "audit_reason_required" not in vars(cls):
                    attrs["audit_reason_required"] = model._meta.label_lower in self.audit_reason_required_models
                cls = type(cls.__name__, (AuditedAdminMixin, cls), attrs)
            super().register(model, cls, **options)

    def get_urls(self):
        """The dashboards' CSV export beside the admin's own pages (backoffice.dashboards)."""
        from django.urls import path

        from backoffice.dashboards import views as dashboards

        return [
            path("dashboard.csv", self.admin_view(dashboards.dashboard_csv), name="dashboard_csv"),
            *super().get_urls(),
        ]

    def index(self, request, extra_context=None):
        """The model list with the dashboards above it (templates/admin/index.html), for
        staff who may see them; read from summary tables only."""
        from backoffice.dashboards.views import dashboard_context

        context = {**dashboard_context(request, admin_site_name=self.name), **(extra_context or {})}
        return super().index(request, extra_context=context)
