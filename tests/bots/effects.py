"""What a message can change, counted: an attack that was refused changed none of it."""

from bots.models import InboundMessage
from members.models import Checkin, Entry, Identity, Member, PointsTransaction, Visit

COUNTED = (Member, Identity, Checkin, Visit, PointsTransaction, Entry, InboundMessage)


def effects() -> dict[str, int]:
    return {model.__name__: model.objects.count() for model in COUNTED}
