"""Conversations: what shoppers sent the official account and the service window, and
what the bot answered. Read-only: the log is written by the endpoints alone.

Also ``create_wechat_checkin_qr``, an action for the plaza list (wired by the plaza
admin): each selected plaza's permanent check-in QR code on the official account, for
plazas that accept the permanent code (the rotating one is on the check-in screen).
"""

import base64

from django.contrib import admin, messages
from django.db.models import Q
from django.shortcuts import render
from django.template.defaultfilters import truncatechars
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext, gettext_lazy

from bots.models import InboundMessage
from bots.official_account import plaza_qr_create
from core.errors import ApplicationError
from core.platforms import wechat_configured
from members.admin.base import LargeTableAdmin, ReadOnlyMixin, member_ids_matching

# Each code is one call to WeChat: a selection stays small.
WECHAT_QR_MAX_PLAZAS = 20


@admin.register(InboundMessage)
class InboundMessageAdmin(ReadOnlyMixin, LargeTableAdmin):
    list_display = ["created_at", "channel", "from_user", "member_link", "kind", "said", "answered"]
    list_filter = ["channel", "msg_type", "created_at"]
    list_select_related = ["member"]
    ordering = ["-created_at", "-pk"]
    sortable_by = ["created_at"]
    search_fields = ["from_user"]
    search_help_text = gettext_lazy("A whole openid or Alipay user_id, or a member's number, phone or any identity.")
    fields = [
        "created_at", "channel", "from_user", "member", "msg_type", "event", "content", "reply",
        "reply_sent_at", "dedup_key",
    ]
    readonly_fields = ["member_link"]

    def search_q(self, term):
        return Q(from_user=term) | Q(member_id__in=member_ids_matching(term))

    @admin.display(description=gettext_lazy("member"))
    def member_link(self, obj):
        if obj.member_id is None:
            return "—"
        url = reverse("admin:members_member_change", args=[obj.member_id])
        return format_html('<a href="{}">{}</a>', url, obj.member.member_no)

    @admin.display(description=gettext_lazy("type"))
    def kind(self, obj):
        return f"{obj.msg_type}:{obj.event}" if obj.event else obj.msg_type

    @admin.display(description=gettext_lazy("said"))
    def said(self, obj):
        return truncatechars(obj.content, 60)

    @admin.display(description=gettext_lazy("reply"))
    def answered(self, obj):
        return truncatechars(obj.reply, 80) if obj.reply else "—"


@admin.action(description=gettext_lazy("Create WeChat check-in QR codes (official account) of the selected plazas"))
def create_wechat_checkin_qr(modeladmin, request, queryset):
    """An action for the plaza list: each selected active plaza's permanent parametric
    QR code (scene checkin:<code>), created on the official account and shown to print."""
    if not wechat_configured():
        message = gettext("WECHAT_APP_ID and WECHAT_APP_SECRET must be set to create WeChat QR codes.")
        modeladmin.message_user(request, message, messages.ERROR)
        return None
    plazas = list(queryset.filter(is_active=True).order_by("code")[: WECHAT_QR_MAX_PLAZAS + 1])
    if not plazas or len(plazas) > WECHAT_QR_MAX_PLAZAS:
        message = gettext("Select between 1 and %(max)d active plazas.") % {"max": WECHAT_QR_MAX_PLAZAS}
        modeladmin.message_user(request, message, messages.ERROR)
        return None
    # A permanent code where the plaza refuses it would only print refusals.
    refusing = [plaza.code for plaza in plazas if not plaza.checkin_accepts_permanent]
    if refusing:
        message = gettext(
            "%(plazas)s: the plaza does not accept the permanent check-in code; "
            "show its rotating code on a screen (the plaza's page links to it) or print links that expire."
        ) % {"plazas": ", ".join(refusing)}
        modeladmin.message_user(request, message, messages.ERROR)
        return None
    codes = []
    for plaza in plazas:
        try:
            qr = plaza_qr_create(plaza=plaza)
        except ApplicationError as exc:
            message = gettext("%(plaza)s: WeChat refused (%(code)s: %(message)s)") % {
                "plaza": plaza.code, "code": exc.code, "message": exc.message}
            modeladmin.message_user(request, message, messages.ERROR)
            return None
        codes.append({"qr": qr, "png": base64.b64encode(qr.png(box_size=8)).decode() if qr.url else ""})
    return render(request, "bots/plaza_wechat_qr.html", {
        **modeladmin.admin_site.each_context(request), "title": gettext("WeChat check-in QR codes"), "codes": codes,
    })
