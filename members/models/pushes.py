"""The outbox: every message the mall sends a member, the member's inbox, and the
mini-program subscriptions that allow a subscribe message."""

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from members.models.members import Member


def validate_template_fields(value) -> None:
    """``fields`` maps each key of the platform template to text, or to
    ``{"value": text, "color": "#173177"}`` (WeChat template messages only)."""
    if not isinstance(value, dict):
        raise ValidationError(
            _('fields must be a JSON object: {"template key": "text with {placeholders}"}'), code="fields_not_object"
        )
    for key, spec in value.items():
        if isinstance(spec, dict):
            if not isinstance(spec.get("value"), str) or set(spec) - {"value", "color"}:
                raise ValidationError(
                    _('fields[%(key)s] must be text or {"value": text, "color": "#rrggbb"}'),
                    code="field_not_text", params={"key": repr(key)},
                )
        elif not isinstance(spec, str):
            raise ValidationError(_("fields[%(key)s] must be text"), code="field_not_text", params={"key": repr(key)})


class PushTemplate(models.Model):
    """How an event is rendered on a platform's templated channel; configured by staff.

    ``fields`` maps the platform template's keys to text with placeholders filled
    from the push (``{title}``, ``{body}``, ``{points}``, ``{balance}``, ``{plaza}`` …),
    e.g. {"first": "{title}", "keyword1": "{points}", "remark": "{body}"}.
    """

    class Channel(models.TextChoices):
        WECHAT_TEMPLATE = "wechat_template", _("WeChat template message")
        MINIAPP_SUBSCRIBE = "miniapp_subscribe", _("Mini-program subscribe message")

    event = models.CharField(max_length=40, verbose_name=_("event"))
    channel = models.CharField(max_length=24, choices=Channel.choices, verbose_name=_("channel"))
    template_id = models.CharField(max_length=128, verbose_name=_("template id"))
    fields = models.JSONField(default=dict, validators=[validate_template_fields], verbose_name=_("fields"))
    # The mini-program page the message opens (e.g. pages/inbox/index); blank: the push's link.
    page = models.CharField(max_length=200, blank=True, verbose_name=_("page"))
    is_active = models.BooleanField(default=True, verbose_name=_("active"))

    class Meta:
        verbose_name = _("push template")
        verbose_name_plural = _("push templates")
        constraints = [models.UniqueConstraint(fields=["event", "channel"], name="one_template_per_event_and_channel")]

    def __str__(self):
        return f"{self.event} → {self.get_channel_display()}"


class Push(models.Model):
    """One message to one member, sent at most once (``event_key`` is unique).

    PENDING → SENDING (claimed by one worker, ``attempts`` counted, ``next_attempt_at``
    is the claim's deadline) → SENT | SKIPPED (inbox only) | PENDING again (retry at
    ``next_attempt_at``) | FAILED (gave up, or the outcome of a claim is unknown).
    """

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        SENDING = "sending", _("Sending (claimed)")
        SENT = "sent", _("Sent")
        FAILED = "failed", _("Failed (gave up)")
        SKIPPED = "skipped", _("Inbox only")

    class Channel(models.TextChoices):
        WECHAT_TEMPLATE = "wechat_template", _("WeChat template message")
        WECHAT_CUSTOMER_SERVICE = "wechat_cs", _("WeChat customer-service message")
        MINIAPP_SUBSCRIBE = "miniapp_subscribe", _("Mini-program subscribe message")
        ALIPAY = "alipay", _("Alipay service window")
        SANDBOX = "sandbox", _("Sandbox outbox")
        INBOX = "inbox", _("Inbox only")

    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="pushes", verbose_name=_("member"))
    event = models.CharField(max_length=40, help_text=_("points_earned, points_redeemed, checkin, expiry_reminder, wake_up …"), verbose_name=_("event"))
    event_key = models.CharField(max_length=200, unique=True, verbose_name=_("event key"))
    title = models.CharField(max_length=100, verbose_name=_("title"))
    body = models.TextField(verbose_name=_("body"))
    link = models.CharField(max_length=500, blank=True, verbose_name=_("link"))
    data = models.JSONField(default=dict, blank=True, verbose_name=_("data"))
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING, verbose_name=_("status"))
    channel = models.CharField(max_length=24, choices=Channel.choices, blank=True, verbose_name=_("channel"))
    # Who the platform was asked to deliver to (openid, Alipay user_id) and what it was
    # sent; in the sandbox, who would have been and what would have been sent.
    recipient = models.CharField(max_length=160, blank=True, verbose_name=_("recipient"))
    payload = models.JSONField(default=dict, blank=True, verbose_name=_("payload"))
    attempts = models.PositiveSmallIntegerField(default=0, verbose_name=_("attempts"))
    next_attempt_at = models.DateTimeField(null=True, blank=True, verbose_name=_("next attempt at"))
    last_error = models.TextField(blank=True, verbose_name=_("last error"))
    sent_at = models.DateTimeField(null=True, blank=True, verbose_name=_("sent at"))
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))

    class Meta:
        verbose_name = _("push")
        verbose_name_plural = _("pushes")
        permissions = [("resend_push", "Can send a failed or inbox-only push again")]
        indexes = [
            # The retry sweep (pending, due) and the reaper of stale claims (sending, past the deadline).
            models.Index(fields=["status", "next_attempt_at"], name="push_due_or_claimed", condition=Q(status__in=["pending", "sending"])),
            models.Index(fields=["member", "created_at"]),
        ]

    def __str__(self):
        return self.event_key


class InboxMessage(models.Model):
    """What the member reads in the mini-program and H5: a copy of every push."""

    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="inbox", verbose_name=_("member"))
    push = models.OneToOneField(Push, on_delete=models.CASCADE, related_name="inbox_message", verbose_name=_("push"))
    title = models.CharField(max_length=100, verbose_name=_("title"))
    body = models.TextField(verbose_name=_("body"))
    link = models.CharField(max_length=500, blank=True, verbose_name=_("link"))
    read_at = models.DateTimeField(null=True, blank=True, verbose_name=_("read at"))
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))

    class Meta:
        verbose_name = _("inbox message")
        verbose_name_plural = _("inbox messages")
        indexes = [models.Index(fields=["member", "-created_at"])]

    def __str__(self):
        return self.title


class MiniappSubscription(models.Model):
    """Subscribe messages a member allowed for one mini-program template.

    Each "accept" in wx.requestSubscribeMessage allows one message (WeChat's one-time
    subscriptions add up); a sent message uses one. WeChat keeps the real count: when
    it answers that none is left (errcode 43101) ``remaining`` drops to 0.
    """

    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="miniapp_subscriptions", verbose_name=_("member"))
    template_id = models.CharField(max_length=128, verbose_name=_("template id"))
    remaining = models.PositiveIntegerField(default=0, verbose_name=_("remaining"))
    updated_at = models.DateTimeField(auto_now=True, verbose_name=_("updated at"))

    class Meta:
        verbose_name = _("mini-program subscription")
        verbose_name_plural = _("mini-program subscriptions")
        constraints = [
            models.UniqueConstraint(fields=["member", "template_id"], name="one_subscription_per_member_and_template"),
            models.CheckConstraint(condition=Q(remaining__gte=0), name="subscription_remaining_not_negative"),
        ]

    def __str__(self):
        return f"{self.member_id}: {self.template_id} × {self.remaining}"
