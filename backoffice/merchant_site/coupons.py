"""The merchant's coupon templates (its own, funded by it, for its own stores) and its
campaigns, seen as counts (coupons.merchant_campaigns), never a member."""

from django.contrib import admin
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext, gettext_lazy

from backoffice.merchant_site.site import TenantAdmin, merchant_of, site
from core.admin_fields import format_yuan
from coupons import merchant_campaigns
from coupons.admin.templates import TemplateValueMixin
from coupons.models import Campaign, Coupon, CouponTemplate
from members.models import Store


class CouponTemplateAdmin(TemplateValueMixin, TenantAdmin):
    """Templates the merchant funds, made and edited here; the mall's coupons valid at its
    stores (funded by the mall) are listed read-only. Selling for points and free claiming
    (the mall's catalogue and listings) stay the mall's to decide."""

    list_display = ["name", "kind", "value", "funded_by", "status", "issued_count", "total_quota", "created_at"]
    list_filter = ["status", "kind"]
    search_fields = ["name"]
    filter_horizontal = ["stores"]
    readonly_fields = ["funded_by", "issued_count", "redeemed", "created_at"]
    fieldsets = [
        (None, {"fields": ["name", "description", "kind", "funded_by", "status"]}),
        (gettext_lazy("Value"), {"fields": ["face_value_fen", "min_spend_fen", "percent_off_bp", "max_discount_fen",
                                            "gift_description"]}),
        (gettext_lazy("Validity: a window, or days from issue"), {"fields": ["valid_from", "valid_until", "valid_days"]}),
        (gettext_lazy("Limits"), {"fields": ["total_quota", "per_member_limit", "issued_count", "redeemed"]}),
        (gettext_lazy("Use"), {"fields": ["stores", "combines_with_points"]}),
        (None, {"fields": ["created_at"]}),
    ]

    @admin.display(description=gettext_lazy("redeemed"))
    def redeemed(self, obj):
        if obj.pk is None:
            return 0
        return obj.coupons.filter(status=Coupon.Status.REDEEMED).count()

    def has_add_permission(self, request):
        return merchant_of(request) is not None

    def has_change_permission(self, request, obj=None):
        if merchant_of(request) is None:
            return False
        return obj is None or obj.funded_by == CouponTemplate.FundedBy.MERCHANT

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        if db_field.name == "stores":
            # Only its own: another merchant's store id fails the form's validation.
            kwargs["queryset"] = Store.objects.filter(merchant=merchant_of(request))
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        merchant = merchant_of(request)

        class OwnTemplateForm(form):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                # A mall-funded template is only shown (never saved here): left as it is, or
                # its page would take it for the merchant's own and offer to edit it.
                if self.instance.pk is not None and self.instance.funded_by != CouponTemplate.FundedBy.MERCHANT:
                    return
                # Set before validation, so the model's constraints see the real row.
                self.instance.merchant = merchant
                self.instance.funded_by = CouponTemplate.FundedBy.MERCHANT

        return OwnTemplateForm


class CampaignAdmin(TenantAdmin):
    """The merchant's campaigns (asked for through the merchant API), with the figures
    merchant_campaign_report lets it see: rounded, and none for a group below the minimum."""

    list_display = ["name", "status", "template", "starts_at", "ends_at", "audience_shown", "created_at"]
    list_select_related = ["template"]
    list_filter = ["status"]
    fields = ["name", "status", "template", "segments", "merchant_scope", "lapsed_min_days", "message_title",
              "message_body", "starts_at", "ends_at", "max_targets", "cooldown_days", "review_note", "audience_shown",
              "results", "created_at"]
    readonly_fields = ["audience_shown", "results"]

    def get_queryset(self, request):
        merchant = merchant_of(request)
        if merchant is None:
            return Campaign.objects.none()
        return merchant_campaigns.merchant_campaigns(merchant=merchant).select_related("template")

    @admin.display(description=gettext_lazy("audience when requested"))
    def audience_shown(self, obj):
        shown = merchant_campaigns.merchant_campaign_report(campaign=obj, with_results=False).audience_requested
        return "—" if shown is None else shown

    @admin.display(description=gettext_lazy("results"))
    def results(self, obj):
        report = merchant_campaigns.merchant_campaign_report(campaign=obj)
        results = report.results
        if results is None:
            return gettext("None yet: the campaign has not run.")
        rows = []
        labels = [
            (gettext("targeted"), "targeted", str), (gettext("pushed"), "pushed", str), (gettext("opened"), "opened", str),
            (gettext("redeemed"), "redeemed", str), (gettext("came back"), "came_back", str),
            (gettext("came-back rate"), "comeback_rate", lambda rate: f"{rate * 100:.1f} %"),
            (gettext("spend"), "spend_fen", format_yuan),
            (gettext("spend per member"), "spend_per_member_fen", format_yuan),
        ]
        for label, field, shown in labels:
            cells = [shown(getattr(group, field)) if group is not None else "—" for group in (results.treated, results.holdout)]
            rows.append((label, *cells))
        minimum = gettext("Groups below %(min)d members show no figures; counts are rounded down.") % {"min": report.minimum}
        return format_html(
            '<table><thead><tr><th></th><th>{}</th><th>{}</th></tr></thead><tbody>{}</tbody></table><p class="help">{}</p>',
            gettext("with the coupon"), gettext("holdout"),
            format_html_join("", "<tr><th>{}</th><td>{}</td><td>{}</td></tr>", rows), minimum,
        )


site.register(CouponTemplate, CouponTemplateAdmin)
site.register(Campaign, CampaignAdmin)
