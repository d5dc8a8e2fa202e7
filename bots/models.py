"""The conversations log: every message or event a channel delivered, and our reply."""

from django.db import models
from django.utils.translation import gettext_lazy

from members.models import Member


class InboundMessage(models.Model):
    """One message or event from a shopper, stored with the reply we gave.

    WeChat retries a message it got no answer to (three times, five seconds apart) and
    Alipay retries its notifications: the dedup key makes each have one effect, and a
    replay is answered with the stored reply.
    """

    class Channel(models.TextChoices):
        WECHAT = "wechat", gettext_lazy("WeChat official account")
        ALIPAY = "alipay", gettext_lazy("Alipay service window")

    channel = models.CharField(gettext_lazy("channel"), max_length=16, choices=Channel.choices)
    # msg:<MsgId> for messages; event:<sender>:<CreateTime>:<event> for events, which
    # carry no MsgId. Unique per channel: the backstop for concurrent retries.
    dedup_key = models.CharField(gettext_lazy("deduplication key"), max_length=200)
    # The sender as the channel names them: official-account openid or Alipay user_id.
    from_user = models.CharField(gettext_lazy("sender"), max_length=128)
    member = models.ForeignKey(
        Member, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", verbose_name=gettext_lazy("member"),
    )
    msg_type = models.CharField(gettext_lazy("message type"), max_length=32)  # text, event, image, …
    event = models.CharField(gettext_lazy("event"), max_length=64, blank=True)  # subscribe, SCAN, CLICK, follow, … (as sent)
    # Text typed, event key or scene, location: whatever the message said, cut to a page.
    content = models.TextField(gettext_lazy("content"), blank=True)
    reply = models.TextField(gettext_lazy("reply"), blank=True)  # empty: acknowledged without a reply
    # Alipay replies go out through the open API after the acknowledgement; this is
    # when one went. WeChat replies travel in the HTTP answer and leave it empty.
    reply_sent_at = models.DateTimeField(gettext_lazy("reply sent at"), null=True, blank=True)
    created_at = models.DateTimeField(gettext_lazy("received at"), auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = gettext_lazy("inbound message")
        verbose_name_plural = gettext_lazy("inbound messages")
        constraints = [
            models.UniqueConstraint(fields=["channel", "dedup_key"], name="inbound_message_once_per_channel"),
        ]
        indexes = [models.Index(fields=["from_user", "created_at"], name="inbound_from_user_created")]

    def __str__(self):
        return f"{self.channel} {self.msg_type}{':' + self.event if self.event else ''} from {self.from_user}"


class SignedQuery(models.Model):
    """A signed query string WeChat sent (its timestamp and nonce), with the body it came with.

    WeChat's ``signature`` covers the token, the timestamp and the nonce, never the
    body: whoever saw a signed URL could post any body with it while its timestamp is
    in the window. The first body to arrive takes the pair; WeChat's retries (the same
    query string, the same body) pass, any other body is refused. The unique
    constraint decides between two that arrive at once. A row whose timestamp has left
    the window can never match again (the window refuses it first) and is purged.
    """

    timestamp = models.BigIntegerField(gettext_lazy("timestamp"))  # seconds since the epoch, as signed
    nonce = models.CharField(gettext_lazy("nonce"), max_length=64)
    body_sha256 = models.CharField(gettext_lazy("body SHA-256"), max_length=64)  # hex digest of the method and the body

    class Meta:
        verbose_name = gettext_lazy("signed query")
        verbose_name_plural = gettext_lazy("signed queries")
        constraints = [
            models.UniqueConstraint(fields=["timestamp", "nonce"], name="signed_query_once"),
        ]

    def __str__(self):
        return f"{self.timestamp} {self.nonce}"
