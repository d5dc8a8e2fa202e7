"""Scheduled work on coupons. Thin and safe to run twice: the services are idempotent.
A long run stops between batches at its slice's end and is queued again (core.jobs)."""

import logging
from dataclasses import asdict

from core.jobs import run_in_slices
from coupons import campaigns, services
from coupons.models import Campaign

logger = logging.getLogger(__name__)


def coupons_expire_due() -> int:
    """Mark issued coupons past their validity expired. Returns how many."""
    return run_in_slices("coupons.tasks.coupons_expire_due", lambda deadline: services.coupons_expire_due(deadline=deadline))


def campaigns_run_due() -> int:
    """Run the active campaigns within their window. Returns how many members were targeted."""
    summaries = run_in_slices("coupons.tasks.campaigns_run_due", lambda deadline: campaigns.campaigns_run_due(deadline=deadline))
    return sum(summary.targeted for summary in summaries.values()) if summaries is not None else None


def campaign_run_task(campaign_id: int) -> dict | None:
    """Run one campaign now (the admin's "Run now"): its run summary, or None when it is
    gone or no longer running (paused or ended since it was queued)."""
    campaign = Campaign.objects.filter(pk=campaign_id).first()
    if campaign is None:
        return None
    try:
        summary = run_in_slices(
            "coupons.tasks.campaign_run_task", lambda deadline: campaigns.campaign_run(campaign=campaign, deadline=deadline),
            campaign_id,
        )
        return asdict(summary) if summary is not None else None
    except campaigns.CampaignNotActive:
        logger.info("campaign %s: not running now, run skipped", campaign_id)
    except campaigns.CampaignTemplateNotMerchants:
        logger.error("campaign %s: a merchant's campaign with a coupon not its own; not run", campaign_id)
    return None
