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
from django.utils.cache import patch_cache_control
from django.utils.http import urlencode
from django.utils.translation import gettext, gettext_lazy

from core.admin_fields import UnitsAdminMixin, format_yuan, multiplier_column, yuan_column
from core.errors import ApplicationError
from members import ledger, roles, services
from members.public_notes import PUBLIC_NOTE_MAX_LENGTH, PublicNote
from members.admin.base import (
    ADJUST_MAX_MEMBERS,
    ADJUST_POINTS_PERMISSION,
    LargeTableAdmin,
    PlazaScopedMixin,
    ReadOnlyInline,
    member_ids_by_prefix,
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
class TierAdmin(UnitsAdminMixin, admin.ModelAdmin):
    # Stored in fen and basis points; typed and shown in yuan and as ×1.5 (core.admin_fields).
    list_display = ["name", "code", yuan_column("threshold_fen", model=Tier), multiplier_column("multiplier_bp", model=Tier)]
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
    verbose_name_plural = gettext_lazy("points lots (live first; older than one points lifetime: see the points history)")

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
    fields = ["created_at", "from_tier", "to_tier", "reason", "spend"]
    readonly_fields = ["spend"]
    show_change_link = False
    verbose_name_plural = gettext_lazy("tier changes (latest first)")
    spend = yuan_column("spend_fen", model=TierChange, ordering=False)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("from_tier", "to_tier")


OTHER_PUBLIC_NOTE = "other"
# A second identical adjustment (same member, points and reason) this soon after the first
# is asked about: a form opened afresh (not Back) carries a new token.
REPEAT_WINDOW = timedelta(minutes=30)


class AdjustPointsForm(forms.Form):
    # A uuid4 per rendered form: the key adjust:<token>:<member> turns a second
    # submission of the same form into a replay of the first, not a second adjustment.
    token = forms.UUIDField(widget=forms.HiddenInput)
    points = forms.IntegerField(
        label=gettext_lazy("Points"), help_text=gettext_lazy("Signed: positive credits the member, negative debits.")
    )
    # Not required here: the ledger requires it and answers reason_required.
    reason = forms.CharField(
        label=gettext_lazy("Internal reason"), max_length=200, required=False,
        widget=forms.TextInput(attrs={"size": 60}),
        help_text=gettext_lazy("For staff and the audit log (e.g. a receipt number); the shopper never sees it."),
    )
    public_note_choice = forms.ChoiceField(
        label=gettext_lazy("What the shopper sees"), required=False,
        choices=[*PublicNote.choices, (OTHER_PUBLIC_NOTE, gettext_lazy("Other (type it below)"))],
        help_text=gettext_lazy("Shown in the shopper's points history, in the shopper's language."),
    )
    public_note_text = forms.CharField(
        label=gettext_lazy("Text for the shopper"), max_length=PUBLIC_NOTE_MAX_LENGTH, required=False,
        widget=forms.TextInput(attrs={"size": 60}),
    )
    repeat = forms.BooleanField(
        label=gettext_lazy("Adjust again"), required=False, widget=forms.HiddenInput,
        help_text=gettext_lazy("The same adjustment was made a moment ago; tick to make it once more."),
    )

    def clean(self):
        cleaned = super().clean()
        choice = cleaned.get("public_note_choice") or PublicNote.SERVICE_DESK
        text = (cleaned.get("public_note_text") or "").strip()
        if choice == OTHER_PUBLIC_NOTE and not text:
            self.add_error("public_note_text", gettext("Type what the shopper should read, or pick one from the list."))
        # Stored as the code (translated when shown) or the typed text; the default stays blank.
        cleaned["public_note"] = text if choice == OTHER_PUBLIC_NOTE else ("" if choice == PublicNote.SERVICE_DESK else choice)
        return cleaned

    def ask_repeat(self):
        self.fields["repeat"].widget = forms.CheckboxInput()


@admin.register(Member)
class MemberAdmin(PlazaScopedMixin, LargeTableAdmin):
    # "phone_masked" becomes "phone_full" for the roles that read phones (get_list_display).
    list_display = ["member_no", "name", "phone_masked", "tier", "status", "points_balance", "last_visit_at"]
    list_select_related = ["tier"]
    list_filter = ["status", "tier", "join_channel", "join_plaza", "last_visit_at"]
    sortable_by = ["member_no", "last_visit_at"]
    search_fields = ["member_no", "phone", "nickname", "identities__external_id"]
    search_help_text = gettext_lazy(
        "A whole member number, phone number, openid, unionid or Alipay user_id; "
        "or the start of a member number, phone number (at least 4 digits) or nickname."
    )
    fieldsets = [
        (None, {"fields": ["member_no", "phone", "nickname", "gender", "birthday", "tier", "status", "merged_into"]}),
        (gettext_lazy("Points"), {"fields": ["points_balance", "points_expiring", "points_history"]}),
        (gettext_lazy("Tier"), {"fields": ["tier_spend", "tier_below_since"]}),
        (gettext_lazy("Visits"), {"fields": ["join_channel", "join_plaza", "created_at", "last_visit_at", "last_visit_plaza"]}),
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
        "tier_spend",
        "tier_below_since",
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

    def get_search_results(self, request, queryset, search_term):
        # Whole values (each an exact index lookup), then prefixes (each a bounded index range).
        term = search_term.strip()
        if not term:
            return queryset, False
        ids = set(member_ids_matching(term))
        ids.update(member_ids_by_prefix(term, phones=roles.phone_visible(request.user)))
        return queryset.filter(pk__in=sorted(ids)), False

    def search_q(self, term):
        return Q(pk__in=member_ids_matching(term))

    def get_list_display(self, request):
        if not roles.phone_visible(request.user):
            return self.list_display
        return ["phone_full" if name == "phone_masked" else name for name in self.list_display]

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

    @admin.display(description=gettext_lazy("nickname"), ordering=None)
    def name(self, obj):
        return obj.nickname or "—"

    @admin.display(description=gettext_lazy("phone number"))
    def phone_masked(self, obj):
        return services.mask_phone(obj.phone) or "—"

    @admin.display(description=gettext_lazy("phone number"))
    def phone_full(self, obj):
        # Mainland numbers as people write them: 138 0013 8000; others in E.164.
        phone = obj.phone or ""
        if phone.startswith("+86") and len(phone) == 14:
            return f"{phone[3:6]} {phone[6:10]} {phone[10:]}"
        return phone or "—"

    @admin.display(description=gettext_lazy("points balance"))
    def points_balance(self, obj):
        return obj.wallet_balance

    @admin.display(description=gettext_lazy("rolling 12-month spend"))
    def tier_spend(self, obj):
        return format_yuan(obj.tier_spend_fen)

    @admin.display(description=gettext_lazy("expiring within 30 days"))
    def points_expiring(self, obj):
        return ledger.member_points_expiring(member=obj)

    @admin.display(description=gettext_lazy("recent points history"))
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
                # Cacheable (by the browser, privately): see _adjust_points_page.
                self.admin_site.admin_view(self.adjust_points_view, cacheable=True),
                name="members_member_adjust_points",
            ),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), "can_adjust_points": self.has_adjust_points_permission(request)}
        return super().change_view(request, object_id, form_url, extra_context)

    def has_adjust_points_permission(self, request):
        return request.user.has_perm(ADJUST_POINTS_PERMISSION)

    @admin.action(description=gettext_lazy("Adjust points of selected members"), permissions=["adjust_points"])
    def adjust_points(self, request, queryset):
        members = list(queryset.order_by("pk")[: ADJUST_MAX_MEMBERS + 1])
        if len(members) > ADJUST_MAX_MEMBERS:
            self.message_user(request, f"Adjust at most {ADJUST_MAX_MEMBERS} members at a time.", messages.ERROR)
            return None
        # The form posts back to the list with the action and the selection it was opened for.
        carry = [("action", "adjust_points"), *((ACTION_CHECKBOX_NAME, m.pk) for m in members)]
        return self._adjust_points_page(request, members, carry=carry)

    adjust_points.audit_skip = True  # each adjustment writes its own audit entry (members.ledger)

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
            if form.is_valid() and self._adjust(request, members, form):
                return None
        else:
            form = AdjustPointsForm(initial={"token": uuid.uuid4()})
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": gettext("Adjust points"),
            "form": form,
            "members": members,
            "carry": carry,
            "submit_label": gettext("Adjust points"),
            "submit_name": "apply",
        }
        response = TemplateResponse(request, "admin/members/member/adjust_points.html", context)
        # Not no-store: Back shows this very form again, token and all, so submitting it
        # again replays the first adjustment instead of making a second one.
        patch_cache_control(response, private=True, no_cache=True)
        return response

    def _adjust(self, request, members, form) -> bool:
        data = form.cleaned_data
        points, reason, token = data["points"], data["reason"], data["token"]
        # Anyone but an operator moves at most CS_ADJUST_MAX_POINTS a member at a time.
        try:
            roles.adjust_points_check(user=request.user, points=points)
        except ApplicationError as exc:
            self.message_user(request, f"{exc.code} — {exc.message}", messages.ERROR)
            return False
        keys = {member.pk: f"adjust:{token}:{member.pk}" for member in members}
        if not data["repeat"] and self._repeats_refused(request, form, keys, points=points, reason=reason):
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
                    public_note=data["public_note"],
                    idempotency_key=keys[member.pk],
                )
            except ledger.IdempotencyConflict:
                done = False
                self.message_user(request, gettext(
                    "%(member)s: this form was already submitted with other values; nothing changed. "
                    "Open the adjust form again to make another adjustment."
                ) % {"member": member.member_no}, messages.ERROR)
            except ApplicationError as exc:
                done = False
                self.message_user(request, f"{member.member_no}: {exc.code} — {exc.message}", messages.ERROR)
            else:
                values = {"member": member.member_no, "points": txn.points, "id": txn.pk}
                if txn.replayed:
                    self.message_user(request, gettext(
                        "%(member)s: already applied (%(points)+d points, transaction #%(id)s); "
                        "this form was submitted before, nothing was adjusted again."
                    ) % values, messages.WARNING)
                else:
                    self.message_user(request, gettext("%(member)s: %(points)+d points (transaction #%(id)s).") % values,
                                      messages.SUCCESS)
        return done

    def _repeats_refused(self, request, form, keys, *, points, reason) -> bool:
        """A fresh form making the very adjustment just made: ask before making it twice."""
        repeated = ledger.points_adjustments_recent(
            member_ids=list(keys), points=points, reason=reason, since=timezone.now() - REPEAT_WINDOW,
            exclude_keys=list(keys.values()),
        )
        if not repeated:
            return False
        form.ask_repeat()
        for txn in repeated:
            self.message_user(request, gettext(
                "%(member)s: the same adjustment (%(points)+d points, same reason) was made at %(at)s "
                "(transaction #%(id)s). Tick “Adjust again” to make it once more."
            ) % {
                "member": txn.member.member_no, "points": txn.points, "id": txn.pk,
                "at": timezone.localtime(txn.created_at).strftime("%H:%M:%S"),
            }, messages.WARNING)
        return True
