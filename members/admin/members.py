"""Tiers and members: search, balance, lots, history, and the adjust-points flow."""

import uuid
from datetime import timedelta

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.exceptions import PermissionDenied
from django.db.models import Case, F, Q, Value, When
from django.http import Http404
from django.shortcuts import redirect
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.http import urlencode

from core.errors import ApplicationError
from members import ledger, roles, services
from members.admin.base import (
    ADJUST_MAX_MEMBERS,
    ADJUST_POINTS_PERMISSION,
    LargeTableAdmin,
    PlazaScopedMixin,
    ReadOnlyInline,
    member_ids_matching,
)
from members.models import (
    Identity,
    Lot,
    Member,
    Tier,
    TierChange,
)

# --- tiers and members ------------------------------------------------------------


@admin.register(Tier)
class TierAdmin(admin.ModelAdmin):
    list_display = ["name", "code", "threshold_fen", "multiplier_bp"]
    ordering = ["threshold_fen"]

    def get_actions(self, request):
        # The bulk delete would gather every member of a used tier to list them as protected.
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.members.exists():
            return False
        return super().has_delete_permission(request, obj)


class IdentityInline(ReadOnlyInline):
    model = Identity
    fields = ["channel", "external_id", "created_at"]
    show_change_link = False


class MemberLotInline(ReadOnlyInline):
    model = Lot
    fk_name = "member"
    fields = ["remaining", "amount", "expires_at", "created_at", "transaction"]
    verbose_name_plural = "lots (live first; older than one points lifetime: see the points history)"

    def get_queryset(self, request):
        now = timezone.now()
        # Lots older than a lifetime are spent or expired; a loyal member has years of them.
        horizon = now - timedelta(days=settings.POINTS_LIFETIME_DAYS)
        return (
            super()
            .get_queryset(request)
            .filter(Q(remaining__gt=0) | Q(created_at__gte=horizon))
            .select_related("transaction")
            .annotate(dead=Case(When(remaining__gt=0, expires_at__gt=now, then=Value(0)), default=Value(1)))
            .order_by("dead", "expires_at", "pk")
        )


class TierChangeInline(ReadOnlyInline):
    model = TierChange
    fk_name = "member"
    fields = ["created_at", "from_tier", "to_tier", "reason", "spend_fen"]
    show_change_link = False
    verbose_name_plural = "tier changes (latest first)"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("from_tier", "to_tier")


class AdjustPointsForm(forms.Form):
    # A uuid4 per rendered form: the key adjust:<token>:<member> turns a second
    # submission of the same form into a replay of the first, not a second adjustment.
    token = forms.UUIDField(widget=forms.HiddenInput)
    points = forms.IntegerField(help_text="Signed: positive credits the member, negative debits.")
    # Not required here: the ledger requires it and answers reason_required.
    reason = forms.CharField(max_length=200, required=False, widget=forms.TextInput(attrs={"size": 60}))


@admin.register(Member)
class MemberAdmin(PlazaScopedMixin, LargeTableAdmin):
    list_display = ["member_no", "phone_masked", "tier", "status", "points_balance", "last_visit_at"]
    list_select_related = ["tier"]
    list_filter = ["status", "tier", "join_channel", "join_plaza", "last_visit_at"]
    sortable_by = ["member_no", "last_visit_at"]
    search_fields = ["member_no", "phone", "identities__external_id"]
    search_help_text = "A whole member number, phone number, openid, unionid or Alipay user_id."
    fieldsets = [
        (None, {"fields": ["member_no", "phone", "nickname", "gender", "birthday", "tier", "status", "merged_into"]}),
        ("Points", {"fields": ["points_balance", "points_expiring", "points_history"]}),
        ("Visits", {"fields": ["join_channel", "join_plaza", "created_at", "last_visit_at", "last_visit_plaza"]}),
    ]
    # Phone and status have rules (normalised and unique; merged members) that belong to services.
    readonly_fields = [
        "member_no",
        "phone",
        "phone_masked",
        "status",
        "merged_into",
        "points_balance",
        "points_expiring",
        "points_history",
        "join_channel",
        "join_plaza",
        "created_at",
        "last_visit_at",
        "last_visit_plaza",
    ]
    inlines = [IdentityInline, MemberLotInline, TierChangeInline]
    actions = ["adjust_points"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(wallet_balance=F("wallet__balance"))

    def search_q(self, term):
        return Q(pk__in=member_ids_matching(term))

    def scope_to_plazas(self, queryset, plaza_ids):
        # A plaza's members: those who joined there and those who last came there.
        return queryset.filter(Q(join_plaza_id__in=plaza_ids) | Q(last_visit_plaza_id__in=plaza_ids))

    def get_fieldsets(self, request, obj=None):
        # The list always masks phones; the page shows them whole only to the roles that call shoppers.
        fieldsets = super().get_fieldsets(request, obj)
        if roles.phone_visible(request.user):
            return fieldsets
        return [
            (name, {**options, "fields": ["phone_masked" if f == "phone" else f for f in options["fields"]]})
            for name, options in fieldsets
        ]

    def has_add_permission(self, request):
        return False  # members join through a channel (services.member_create), never by hand

    def has_delete_permission(self, request, obj=None):
        return False  # the ledger points at every member, forever

    @admin.display(description="phone")
    def phone_masked(self, obj):
        return services.mask_phone(obj.phone)

    @admin.display(description="points")
    def points_balance(self, obj):
        return obj.wallet_balance

    @admin.display(description="expiring within 30 days")
    def points_expiring(self, obj):
        return ledger.member_points_expiring(member=obj)

    @admin.display(description="recent points history")
    def points_history(self, obj):
        history = ledger.member_points_history(member=obj).select_related("operator")
        # A transfer is stored from its source's side; its counterparty gained what the source lost.
        history = history.annotate(member_points=Case(When(member_id=obj.pk, then=F("points")), default=-F("points")))
        all_url = reverse("admin:members_pointstransaction_changelist") + "?" + urlencode({"q": obj.member_no})
        return render_to_string(
            "admin/members/member/points_history.html", {"transactions": history[:20], "all_url": all_url}
        )

    # -- adjust points: an action on the list, a button on the member page ----------

    def get_urls(self):
        return [
            path(
                "<path:object_id>/adjust-points/",
                self.admin_site.admin_view(self.adjust_points_view),
                name="members_member_adjust_points",
            ),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), "can_adjust_points": self.has_adjust_points_permission(request)}
        return super().change_view(request, object_id, form_url, extra_context)

    def has_adjust_points_permission(self, request):
        return request.user.has_perm(ADJUST_POINTS_PERMISSION)

    @admin.action(description="Adjust points of selected members", permissions=["adjust_points"])
    def adjust_points(self, request, queryset):
        members = list(queryset.order_by("pk")[: ADJUST_MAX_MEMBERS + 1])
        if len(members) > ADJUST_MAX_MEMBERS:
            self.message_user(request, f"Adjust at most {ADJUST_MAX_MEMBERS} members at a time.", messages.ERROR)
            return None
        # The form posts back to the list with the action and the selection it was opened for.
        carry = [("action", "adjust_points"), *((ACTION_CHECKBOX_NAME, m.pk) for m in members)]
        return self._adjust_points_page(request, members, carry=carry)

    def adjust_points_view(self, request, object_id):
        if not self.has_adjust_points_permission(request):
            raise PermissionDenied
        member = self.get_object(request, object_id)
        if member is None:
            raise Http404
        response = self._adjust_points_page(request, [member], carry=[])
        return response or redirect("admin:members_member_change", member.pk)

    def _adjust_points_page(self, request, members, *, carry):
        """The adjust-points form, or None once every adjustment went through."""
        if "apply" in request.POST:
            form = AdjustPointsForm(request.POST)
            if form.is_valid() and self._adjust(request, members, **form.cleaned_data):
                return None
        else:
            form = AdjustPointsForm(initial={"token": uuid.uuid4()})
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Adjust points",
            "form": form,
            "members": members,
            "carry": carry,
            "submit_label": "Adjust points",
            "submit_name": "apply",
        }
        return TemplateResponse(request, "admin/members/member/adjust_points.html", context)

    def _adjust(self, request, members, *, token, points, reason) -> bool:
        # Anyone but an operator moves at most CS_ADJUST_MAX_POINTS a member at a time.
        try:
            roles.adjust_points_check(user=request.user, points=points)
        except ApplicationError as exc:
            self.message_user(request, f"{exc.code} — {exc.message}", messages.ERROR)
            return False
        # Each member is its own ledger transaction; a failure leaves that member as it
        # was, and a resubmission replays the ones that went through.
        done = True
        for member in members:
            try:
                txn = ledger.points_adjust(
                    member=member,
                    points=points,
                    operator=request.user,
                    reason=reason,
                    idempotency_key=f"adjust:{token}:{member.pk}",
                )
            except ApplicationError as exc:
                done = False
                self.message_user(request, f"{member.member_no}: {exc.code} — {exc.message}", messages.ERROR)
            else:
                message = f"{member.member_no}: {txn.points:+d} points (transaction #{txn.pk})."
                self.message_user(request, message, messages.SUCCESS)
        return done
