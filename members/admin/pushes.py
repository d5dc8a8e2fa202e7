"""The outbox, read-only with a resend action; the inbox, read-only; push templates,
edited by staff (which template each event uses on each channel); mini-program
subscriptions, read-only. In the sandbox the outbox is where pushes "arrive"."""

from django.contrib import admin, messages
from django.db.models import Q
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext, gettext_lazy, gettext_noop, ngettext

from members import pushes
from members.admin.base import LargeTableAdmin, ReadOnlyMixin, member_ids_matching
from members.models import InboxMessage, MiniappSubscription, Push, PushTemplate

RESEND_PERMISSION = "members.resend_push"
# The events' labels (members.pushes.EVENTS), marked here for makemessages; EventFilter translates them.
EVENT_LABELS = [
    gettext_noop("Points earned"), gettext_noop("Points redeemed"), gettext_noop("Check-in"),
    gettext_noop("Points expiry reminder"), gettext_noop("Wake-up"), gettext_noop("Tier upgrade"),
]
# One resend is one transaction and one queued task per push.
RESEND_MAX_PUSHES = 1000


class EventFilter(admin.SimpleListFilter):
    """The known events and those with a template: a DISTINCT over the outbox would scan it."""

    title = gettext_lazy("event")
    parameter_name = "event"

    def lookups(self, request, model_admin):
        events = {event: gettext(label) for event, label in pushes.EVENTS.items()}
        for event in PushTemplate.objects.values_list("event", flat=True).distinct():
            events.setdefault(event, event)
        return sorted(events.items())

    def queryset(self, request, queryset):
        return queryset.filter(event=self.value()) if self.value() else queryset


@admin.register(Push)
class PushAdmin(ReadOnlyMixin, LargeTableAdmin):
    list_display = ["id", "created_at", "member", "event", "title", "status", "channel", "attempts", "next_attempt_at", "sent_at"]
    list_select_related = ["member"]
    list_filter = ["status", "channel", EventFilter]
    ordering = ["-id"]
    sortable_by = ["id"]
    search_fields = ["event_key", "member__member_no"]
    search_help_text = gettext_lazy("A whole event key, or a member's number, phone or openid.")
    fields = [
        "member", "event", "event_key", "title", "body", "link", "data", "status", "channel", "recipient", "payload",
        "attempts", "next_attempt_at", "last_error", "sent_at", "created_at",
    ]
    actions = ["resend"]

    def search_q(self, term):
        return Q(event_key=term) | Q(member_id__in=member_ids_matching(term))

    def has_resend_permission(self, request):
        return request.user.has_perm(RESEND_PERMISSION)

    @admin.action(description=gettext_lazy("Send again (failed or inbox-only pushes)"), permissions=["resend"])
    def resend(self, request, queryset):
        selected = list(queryset.values_list("pk", flat=True)[: RESEND_MAX_PUSHES + 1])
        if len(selected) > RESEND_MAX_PUSHES:
            message = gettext("Select at most %(max)d pushes to send again (filter the list first).") % {"max": RESEND_MAX_PUSHES}
            self.message_user(request, message, messages.ERROR)
            return
        queued = pushes.push_resend(push_ids=selected)
        left = len(selected) - queued
        message = ngettext("%(count)d push queued to be sent again.", "%(count)d pushes queued to be sent again.", queued)
        self.message_user(request, message % {"count": queued}, messages.SUCCESS)
        if left:
            message = ngettext(
                "%(count)d left alone: only failed and inbox-only pushes are sent again.",
                "%(count)d left alone: only failed and inbox-only pushes are sent again.",
                left,
            )
            self.message_user(request, message % {"count": left}, messages.WARNING)


@admin.register(InboxMessage)
class InboxMessageAdmin(ReadOnlyMixin, LargeTableAdmin):
    list_display = ["id", "created_at", "member", "title", "read_at", "push_link"]
    list_select_related = ["member"]
    ordering = ["-id"]
    sortable_by = ["id"]
    search_fields = ["member__member_no"]
    search_help_text = gettext_lazy("A member's whole number, phone or openid.")

    def search_q(self, term):
        return Q(member_id__in=member_ids_matching(term))

    @admin.display(description=gettext_lazy("push"))
    def push_link(self, obj):
        return format_html('<a href="{}">#{}</a>', reverse("admin:members_push_change", args=[obj.push_id]), obj.push_id)


@admin.register(PushTemplate)
class PushTemplateAdmin(admin.ModelAdmin):
    list_display = ["event", "channel", "template_id", "is_active"]
    list_filter = ["channel", "is_active"]
    ordering = ["event", "channel"]
    fieldsets = [
        (None, {"fields": ["event", "channel", "template_id", "is_active"]}),
        (
            gettext_lazy("Content"),
            {
                "fields": ["fields", "page"],
                "description": gettext_lazy(
                    "fields maps each key of the platform's template to text, e.g. "
                    '{"first": "{title}", "keyword1": "{points}", "keyword2": "{balance}", "remark": "{body}"}. '
                    "Placeholders: {title} {body} {link} {event} {member_no} {time} and the push's data "
                    "({points} {balance} {store} {plaza} {amount} …). page: the mini-program page the message opens."
                ),
            },
        ),
    ]

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        if db_field.name == "event":
            field.help_text = gettext("One of: %(events)s (or another event a push carries).") % {"events": ", ".join(pushes.EVENTS)}
        return field


@admin.register(MiniappSubscription)
class MiniappSubscriptionAdmin(ReadOnlyMixin, LargeTableAdmin):
    list_display = ["id", "member", "template_id", "remaining", "updated_at"]
    list_select_related = ["member"]
    ordering = ["-id"]
    sortable_by = ["id"]
    search_fields = ["member__member_no"]
    search_help_text = gettext_lazy("A member's whole number, phone or openid.")

    def search_q(self, term):
        return Q(member_id__in=member_ids_matching(term))
