"""What a shopper's points history says about an entry.

A transaction's ``reason`` is written for staff ("补登小票 receipt 20261127", "merge: same
unionid …", "lot 12 expired") and is never shown to the shopper. The shopper sees the
entry's kind (the page's label) and its ``public_note``: a code of ``PublicNote``, shown
in the shopper's language, or text staff typed for the shopper. An adjustment without
one reads as the generic ``PublicNote.SERVICE_DESK``. Gifts (check-in, welcome,
campaigns) keep their reason, which the mall's own code writes for shoppers.
"""

from django.db import models
from django.utils.translation import gettext_lazy

from members.models import PointsTransaction

Kind = PointsTransaction.Kind
PUBLIC_NOTE_MAX_LENGTH = 100


class PublicNote(models.TextChoices):
    """Shopper-facing descriptions staff pick from; stored as the code, shown translated."""

    SERVICE_DESK = "service_desk", gettext_lazy("Points adjustment by the service desk")
    LATE_RECEIPT = "late_receipt", gettext_lazy("Points for a purchase added later")
    GOODWILL = "goodwill", gettext_lazy("Goodwill points from the service desk")
    CORRECTION = "correction", gettext_lazy("Correction of a points error")
    EVENT = "event", gettext_lazy("Event reward")


# Kinds whose reason the mall's code writes for the shopper to read.
REASON_SHOWN_KINDS = frozenset({Kind.GRANT})


def public_note_text(note: str) -> str:
    """A stored public note as the shopper reads it (a code translated, typed text as is)."""
    if note in PublicNote.values:
        return str(PublicNote(note).label)
    return note


def transaction_public_description(txn: PointsTransaction) -> str:
    """The shopper-facing description of ``txn``: never the staff's internal reason."""
    if txn.public_note:
        return public_note_text(txn.public_note)
    if txn.kind == Kind.ADJUST:
        return str(PublicNote.SERVICE_DESK.label)
    if txn.kind in REASON_SHOWN_KINDS:
        return txn.reason
    return ""
