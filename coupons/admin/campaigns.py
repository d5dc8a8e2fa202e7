"""Campaigns in the mall's admin. The mall's own are made and edited here; merchants'
requests (coupons.merchant_campaigns) are approved or rejected here with the actions,
their audience and message as the merchant asked them (staff may lower the cap, pause
and end). "Run now" queues the run on the task cluster: a large audience takes longer
than a web request may."""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext, gettext_lazy
from django_q.tasks import async_task

from core.errors import ApplicationError
from core.admin_fields import format_yuan
from coupons import campaigns, merchant_campaigns
from coupons.models import Campaign, CampaignTarget

REVIEW_MAX_CAMPAIGNS = 100
# Set only by a merchant's request and its review, never typed in here.
REQUEST_FIELDS = ["merchant", "merchant_scope", "requested_audience", "reviewed_by", "reviewed_at", "review_note"]
# A merchant's campaign runs as the merchant asked and the mall approved.
AS_REQUESTED = [
    "name", "template", "starts_at", "ends_at", "segments", "lapsed_min_days", "plaza", "tier", "cooldown_days",
    "holdout_pct", "message_title", "message_body",
]
# Only a merchant's request awaits approval, and leaves it only by the actions.
REVIEW_STATUSES = (Campaign.Status.PENDING, Campaign.Status.REJECTED)


class CampaignForm(forms.ModelForm):
    class Meta:
        model = Campaign
        fields = "__all__"

    def clean_segments(self):
        try:
            return campaigns.campaign_segments_check(self.cleaned_data.get("segments") or [])
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean_status(self):
        status = self.cleaned_data["status"]
        before = self.instance.status if self.instance.pk else None
        if status != before and (status in REVIEW_STATUSES or before in REVIEW_STATUSES):
            raise forms.ValidationError(gettext_lazy(
                "Awaiting approval and rejected are for merchants' requests: approve or reject them with the actions."
            ))
        return status

    def clean_max_targets(self):
        cap = self.cleaned_data.get("max_targets")
        before = self.instance.max_targets if self.instance.pk else None
        if self.instance.merchant_id is not None and (cap is None or (before is not None and cap > before)):
            raise forms.ValidationError(gettext_lazy("A merchant's campaign may only be capped lower."))
        return cap


class ReviewNoteForm(forms.Form):
    note = forms.CharField(
        label=gettext_lazy("why"), max_length=300, widget=forms.Textarea(attrs={"rows": 3}),
        help_text=gettext_lazy("The merchant reads this."),
    )


class OriginFilter(admin.SimpleListFilter):
    title = gettext_lazy("origin")
    parameter_name = "origin"

    def lookups(self, request, model_admin):
        return [
            ("awaiting", gettext_lazy("Merchants' requests awaiting approval")),
            ("merchants", gettext_lazy("Merchants'")),
            ("mall", gettext_lazy("The mall's")),
        ]

    def queryset(self, request, queryset):
        if self.value() == "awaiting":
            return queryset.filter(merchant__isnull=False, status=Campaign.Status.PENDING)
        if self.value() == "merchants":
            return queryset.filter(merchant__isnull=False)
        if self.value() == "mall":
            return queryset.filter(merchant__isnull=True)
        return queryset


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    form = CampaignForm
    list_display = ["name", "merchant", "template", "status", "requested_audience", "starts_at", "ends_at"]
    list_filter = ["status", OriginFilter, ("merchant", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["template", "merchant"]
    search_fields = ["name", "merchant__name"]
    autocomplete_fields = ["template"]
    actions = ["run_now", "approve", "reject"]
    # Once anyone is targeted, who is in the audience and how it is split stay as they were:
    # the results compare the groups that were drawn.
    FIXED_ONCE_TARGETED = ["template", "segments", "lapsed_min_days", "plaza", "tier", "cooldown_days", "holdout_pct"]

    def get_fieldsets(self, request, obj=None):
        fieldsets = [
            (None, {"fields": ["name", "status", "template", "starts_at", "ends_at", "created_by", "created_at"]}),
            (gettext_lazy("Audience"), {"fields": [
                "segments", "lapsed_min_days", "plaza", "tier", "cooldown_days", "holdout_pct", "max_targets"]}),
            (gettext_lazy("Message"), {"fields": ["message_title", "message_body"]}),
            (gettext_lazy("Results"), {"fields": ["targets_link", "results"]}),
        ]
        if obj is not None and obj.merchant_id is not None:
            fieldsets.insert(1, (gettext_lazy("Merchant's request"), {
                "fields": REQUEST_FIELDS,
                "description": gettext_lazy("Approve or reject it with the actions on the list of campaigns."),
            }))
        return fieldsets

    def get_readonly_fields(self, request, obj=None):
        fixed = ["created_by", "created_at", "targets_link", "results", *REQUEST_FIELDS]
        if obj is not None and obj.merchant_id is not None:
            fixed += AS_REQUESTED
        elif obj is not None and obj.targets.exists():
            fixed += self.FIXED_ONCE_TARGETED
        return fixed

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    # -- actions: call the services, say what each answered -------------------------------

    @admin.action(description=gettext_lazy("Run the selected campaigns now"), permissions=["change"])
    def run_now(self, request, queryset):
        now = timezone.now()
        for campaign in queryset.order_by("pk"):
            try:
                campaigns.campaign_running_check(campaign=campaign, at=now)
            except ApplicationError as exc:
                self.message_user(request, f"{campaign.name}: {exc.message}", messages.ERROR)
                continue
            # Nothing written here to wait for: queued at once. The run is safe to repeat.
            async_task("coupons.tasks.campaign_run_task", campaign.pk)
            self.message_user(request, gettext(
                "%(name)s: queued to run on the task cluster; its results fill in on its page as it runs."
            ) % {"name": campaign.name})

    @admin.action(description=gettext_lazy("Approve the selected merchants' requests"), permissions=["change"])
    def approve(self, request, queryset):
        for campaign in self._reviewable(request, queryset):
            try:
                merchant_campaigns.merchant_campaign_approve(campaign=campaign, user=request.user, at=timezone.now())
            except ApplicationError as exc:
                self.message_user(request, f"{campaign.name}: {exc.code} — {exc.message}", messages.ERROR)
            else:
                self.message_user(request, gettext("%(name)s: approved; it runs from its start.") % {"name": campaign.name})

    @admin.action(description=gettext_lazy("Reject the selected merchants' requests…"), permissions=["change"])
    def reject(self, request, queryset):
        selected = self._reviewable(request, queryset)
        if not selected:
            return None
        if "apply" in request.POST:
            form = ReviewNoteForm(request.POST)
            if form.is_valid():
                for campaign in selected:
                    try:
                        merchant_campaigns.merchant_campaign_reject(
                            campaign=campaign, user=request.user, note=form.cleaned_data["note"], at=timezone.now()
                        )
                    except ApplicationError as exc:
                        self.message_user(request, f"{campaign.name}: {exc.code} — {exc.message}", messages.ERROR)
                    else:
                        self.message_user(request, gettext("%(name)s: rejected.") % {"name": campaign.name})
                return None
        else:
            form = ReviewNoteForm()
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": gettext("Reject %(n)d campaign requests") % {"n": len(selected)},
            "form": form,
            # The form posts back to the list with the action and the selection it was opened for.
            "carry": [("action", "reject"), *((ACTION_CHECKBOX_NAME, c.pk) for c in selected)],
            "submit_label": gettext("Reject"),
            "submit_name": "apply",
        }
        return TemplateResponse(request, "admin/members/form_page.html", context)

    def _reviewable(self, request, queryset) -> list[Campaign]:
        selected = list(queryset.select_related("template").order_by("pk")[: REVIEW_MAX_CAMPAIGNS + 1])
        if len(selected) > REVIEW_MAX_CAMPAIGNS:
            self.message_user(
                request, gettext("Review at most %(max)d campaigns at a time.") % {"max": REVIEW_MAX_CAMPAIGNS}, messages.ERROR
            )
            return []
        return selected

    # -- the results panel: exact figures, for staff ----------------------------------------

    @admin.display(description=gettext_lazy("targets"))
    def targets_link(self, obj):
        if obj.pk is None:
            return "—"
        url = reverse("admin:coupons_campaigntarget_changelist") + f"?campaign__id__exact={obj.pk}"
        return format_html('<a href="{}">{}</a>', url, gettext("Members targeted"))

    @admin.display(description=gettext_lazy("results (30 days after targeting)"))
    def results(self, obj):
        if obj.pk is None:
            return "—"
        result = campaigns.campaign_results(campaign=obj)
        header = [gettext("group"), gettext("targeted"), gettext("pushed"), gettext("opened"), gettext("redeemed"),
                  gettext("came back"), gettext("rate"), gettext("spend")]
        rows = [
            (CampaignTarget.Group(group.group).label, group.targeted, group.pushed, group.opened, group.redeemed,
             group.came_back, _pct(group.comeback_rate), format_yuan(group.spend_fen))
            for group in (result.treated, result.holdout)
        ]
        lines = [
            (gettext("Incremental comeback"),
             _estimate_text(result.incremental_comeback, lambda rate: f"{rate * 100:+.1f} pp")),
            (gettext("Incremental spend per member"),
             _estimate_text(result.incremental_spend_per_member_fen, _signed_yuan)),
        ]
        return format_html(
            "<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table><p>{}</p>",
            format_html_join("", "<th>{}</th>", ((h,) for h in header)),
            format_html_join("", "<tr>" + "<td>{}</td>" * len(header) + "</tr>", rows),
            format_html_join("", "{}: {}<br>", lines),
        )


def _pct(rate: float | None) -> str:
    return "—" if rate is None else f"{rate * 100:.1f} %"


def _signed_yuan(fen) -> str:
    """An estimate in fen (a float: an average) as "+¥1.23" / "-¥0.50", rounded to the fen."""
    fen = round(fen)
    return ("+" if fen >= 0 else "") + format_yuan(fen)


def _estimate_text(estimate, show) -> str:
    if estimate is None:
        return gettext("not enough members yet")
    return f"{show(estimate.value)} (95 % CI {show(estimate.low)} … {show(estimate.high)})"


@admin.register(CampaignTarget)
class CampaignTargetAdmin(admin.ModelAdmin):
    """Read only: targets are written by campaign runs."""

    list_display = ["campaign", "member", "group", "targeted_at", "coupon", "push", "refused"]
    list_filter = ["group", "campaign"]
    search_fields = ["=member__member_no"]
    list_select_related = ["campaign", "member", "coupon", "push"]
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
