"""The outbox: every message the mall sends a member, and the member's inbox."""

from django.db import models
from django.db.models import Q

from members.models.members import Member


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
    fields = models.JSONField(default=dict)
    is_active = models.BooleanField(default=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["event", "channel"], name="one_template_per_event_and_channel")]

    def __str__(self):
        return f"{self.event} → {self.get_channel_display()}"


class Push(models.Model):
    """One message to one member, sent at most once (``event_key`` is unique)."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
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
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(fields=["next_attempt_at"], name="push_due", condition=Q(status="pending")),
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
