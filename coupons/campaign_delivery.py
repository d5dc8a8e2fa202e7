"""A campaign's delivery: the coupon and the push for each treated target, a batch at a time.

Per batch of treated targets still waiting, one transaction: the targets are locked
(PostgreSQL skips those a concurrent run holds: it delivers them), the coupons issued in
bulk (``coupons.bulk``: quota, per-member limit and active members as one issue would),
the pushes and inbox copies written in bulk (``members.pushes.pushes_write``, one
delivery task for the batch after commit), and each target linked to its coupon and push
by one UPDATE. Coupon and push are keyed ``campaign:<campaign>:<member>``, so a run
killed half-way and run again issues and sends nothing twice. A member the coupon rules
refuse gets the reason on the target and nothing else.

If the batch meets a racing single issue to one of its members (a claim of the same
template at that instant), it is rolled back and delivered one member at a time.
"""

import logging
from datetime import datetime

from django.db import IntegrityError, transaction
from django.db.models import CharField, OuterRef, Subquery, Value
from django.db.models.functions import Cast, Concat

from core.errors import ApplicationError
from core.jobs import deadline_check
from coupons import services
from coupons.bulk import coupons_issue_bulk
from coupons.models import Campaign, CampaignTarget, Coupon
from members.models import Push
from members.pushes import push_send, pushes_write

logger = logging.getLogger(__name__)

PUSH_EVENT = "wake_up"


def campaign_key(*, campaign_id: int, member_id: int) -> str:
    """The key of a member's coupon and push in a campaign: the same on every run."""
    return f"campaign:{campaign_id}:{member_id}"


def waiting(campaign: Campaign):
    """The campaign's treated targets still waiting for their coupon."""
    return CampaignTarget.objects.filter(campaign=campaign, group=CampaignTarget.Group.TREATED, coupon__isnull=True, refused="")


def deliver(campaign: Campaign, now: datetime, batch_size: int, told=None, deadline=None) -> tuple[int, int]:
    """Deliver to every treated target still waiting; (issued, refused) by this run.
    ``told(done)`` after each batch."""
    pending = waiting(campaign).order_by("pk")
    issued = refused = 0
    last_id = 0
    while True:
        try:
            with transaction.atomic():
                batch = list(
                    pending.filter(pk__gt=last_id).select_for_update(skip_locked=True).values_list("pk", "member_id")[:batch_size]
                )
                if not batch:
                    return issued, refused
                done, said_no = _batch(campaign, dict(batch), now)
        except services.TemplatePaused:
            logger.warning("campaign %s: template %s paused during the run, delivery waits", campaign.pk, campaign.template_id)
            return issued, refused
        except IntegrityError:
            logger.info("campaign %s: a batch met a concurrent issue; one member at a time", campaign.pk)
            done, said_no = _one_by_one(campaign, dict(batch), now)
        issued, refused = issued + done, refused + said_no
        last_id = batch[-1][0]
        if told is not None:
            told(issued + refused)
        deadline_check(deadline)


def _batch(campaign: Campaign, targets: dict[int, int], now: datetime) -> tuple[int, int]:
    """``targets``: {target id: member id}."""
    keys = {member_id: campaign_key(campaign_id=campaign.pk, member_id=member_id) for member_id in targets.values()}
    try:
        result = coupons_issue_bulk(
            template=campaign.template, keys=keys, via=Coupon.Via.CAMPAIGN, at=now, detail={"campaign_id": campaign.pk}
        )
    except services.TemplatePaused:
        raise  # for a while: the targets wait for the next run (deliver stops)
    except ApplicationError as exc:
        # The template's validity ended: nobody can be given one any more.
        CampaignTarget.objects.filter(pk__in=list(targets), coupon__isnull=True).update(refused=exc.code[:64])
        return 0, len(targets)
    pushes_write(deliver=True, pushes=[
        {"member_id": member_id, "event": PUSH_EVENT, "event_key": keys[member_id], "title": campaign.message_title,
         "body": campaign.message_body, "data": {"campaign_id": campaign.pk, "coupon_id": coupon_id}}
        for member_id, coupon_id in result.coupons.items()
    ])
    issued_ids = [target_id for target_id, member_id in targets.items() if member_id in result.coupons]
    key_of_target = Concat(Value(f"campaign:{campaign.pk}:"), Cast(OuterRef("member_id"), CharField()))
    CampaignTarget.objects.filter(pk__in=issued_ids, coupon__isnull=True).update(
        coupon=Subquery(Coupon.objects.filter(issue_key=key_of_target).values("pk")[:1]),
        push=Subquery(Push.objects.filter(event_key=key_of_target).values("pk")[:1]),
    )
    refused_by_code: dict[str, list[int]] = {}
    for target_id, member_id in targets.items():
        if member_id in result.refused:
            refused_by_code.setdefault(result.refused[member_id], []).append(target_id)
    for code, target_ids in refused_by_code.items():
        CampaignTarget.objects.filter(pk__in=target_ids, coupon__isnull=True).update(refused=code[:64])
    return len(issued_ids), sum(len(ids) for ids in refused_by_code.values())


def _one_by_one(campaign: Campaign, targets: dict[int, int], now: datetime) -> tuple[int, int]:
    issued = refused = 0
    for target_id, member_id in targets.items():
        if _treat(campaign, target_id, member_id, now):
            issued += 1
        else:
            refused += 1
    return issued, refused


def _treat(campaign: Campaign, target_id: int, member_id: int, now: datetime) -> bool:
    """Coupon, push and link in one transaction: all three, or none (then a rerun does it)."""
    key = campaign_key(campaign_id=campaign.pk, member_id=member_id)
    target = CampaignTarget.objects.select_related("member").get(pk=target_id)
    if target.coupon_id is not None or target.refused:
        return target.coupon_id is not None
    try:
        with transaction.atomic():
            coupon = services.coupon_issue(
                template=campaign.template, member=target.member, via=Coupon.Via.CAMPAIGN, idempotency_key=key,
                detail={"campaign_id": campaign.pk}, at=now,
            )
            push = push_send(
                member=target.member, event=PUSH_EVENT, event_key=key, title=campaign.message_title,
                body=campaign.message_body, data={"campaign_id": campaign.pk, "coupon_id": coupon.pk},
            )
            CampaignTarget.objects.filter(pk=target.pk, coupon__isnull=True).update(coupon=coupon, push=push)
    except ApplicationError as exc:
        CampaignTarget.objects.filter(pk=target.pk, coupon__isnull=True).update(refused=exc.code[:64])
        return False
    return True
