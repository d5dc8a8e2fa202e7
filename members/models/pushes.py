"""The outbox: every message the mall sends a member, the member's inbox, and the
mini-program subscriptions that allow a subscribe message."""

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from members.models.members import Member


def validate_template_fields(value) -> None:
    """``fields`` maps each key of the platform template to text, or to
    ``{"value": text, "color": "#173177"}`` (WeChat template messages only)."""
    if not isinstance(value, dict):
        raise ValidationError("fields must be a JSON object: {\"template key\": \"text with {placeholders}\"}")
    for key, spec in value.items():
        if isinstance(spec, dict):
            if not isinstance(spec.get("value"), str) or set(spec) - {"value", "color"}:
                raise ValidationError(f"fields[{key!r}] must be text or {{\"value\": text, \"color\": \"#rrggbb\"}}")
        elif not isinstance(spec, str):
            raise ValidationError(f"fields[{key!r}] must be text")


class PushTemplate(models.Model):
    """How an event is rendered on a platform's templated channel; configured by staff.

    ``fields`` maps the platform template's keys to text with placeholders filled
    from the push (``{title}``, ``{body}``, ``{points}``, ``{balance}``, ``{plaza}`` …),
    e.g. {"first": "{title}", "keyword1": "{points}", "remark": "{body}"}.
    """

    class Channel(models.TextChoices):
        WECHAT_TEMPLATE = "wechat_template", "WeChat template message"
        MINIAPP_SUBSCRIBE = "miniapp_subscribe", "Mini-program subscribe message"

    event = models.CharField(max_length=40)
    channel = models.CharField(max_length=24, choices=Channel.choices)
    template_id = models.CharField(max_length=128)
    fields = models.JSONField(default=dict, validators=[validate_template_fields])
    # The mini-program page the message opens (e.g. pages/inbox/index); blank: the push's link.
    page = models.CharField(max_length=200, blank=True)
    is_active = models.BooleanField(default=True)

    class Meta:
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
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending (claimed)"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed (gave up)"
        SKIPPED = "skipped", "Inbox only"

    class Channel(models.TextChoices):
        WECHAT_TEMPLATE = "wechat_template", "WeChat template message"
        WECHAT_CUSTOMER_SERVICE = "wechat_cs", "WeChat customer-service message"
        MINIAPP_SUBSCRIBE = "miniapp_subscribe", "Mini-program subscribe message"
        ALIPAY = "alipay", "Alipay service window"
        SANDBOX = "sandbox", "Sandbox outbox"
        INBOX = "inbox", "Inbox only"

    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="pushes")
    event = models.CharField(max_length=40, help_text="points_earned, points_redeemed, checkin, expiry_reminder, wake_up …")
    event_key = models.CharField(max_length=200, unique=True)
    title = models.CharField(max_length=100)
    body = models.TextField()
    link = models.CharField(max_length=500, blank=True)
    data = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    channel = models.CharField(max_length=24, choices=Channel.choices, blank=True)
    # Who the platform was asked to deliver to (openid, Alipay user_id) and what it was
    # sent; in the sandbox, who would have been and what would have been sent.
    recipient = models.CharField(max_length=160, blank=True)
    payload = models.JSONField(default=dict, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
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

    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="inbox")
    push = models.OneToOneField(Push, on_delete=models.CASCADE, related_name="inbox_message")
    title = models.CharField(max_length=100)
    body = models.TextField()
    link = models.CharField(max_length=500, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["member", "-created_at"])]

    def __str__(self):
        return self.title


class MiniappSubscription(models.Model):
    """Subscribe messages a member allowed for one mini-program template.

    Each "accept" in wx.requestSubscribeMessage allows one message (WeChat's one-time
    subscriptions add up); a sent message uses one. WeChat keeps the real count: when
    it answers that none is left (errcode 43101) ``remaining`` drops to 0.
    """

    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="miniapp_subscriptions")
    template_id = models.CharField(max_length=128)
    remaining = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["member", "template_id"], name="one_subscription_per_member_and_template"),
            models.CheckConstraint(condition=Q(remaining__gte=0), name="subscription_remaining_not_negative"),
        ]

    def __str__(self):
        return f"{self.member_id}: {self.template_id} × {self.remaining}"
