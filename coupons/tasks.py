"""Scheduled work on coupons. Thin and safe to run twice: the services are idempotent."""

import logging
from dataclasses import asdict

from coupons import campaigns, services
from coupons.models import Campaign

logger = logging.getLogger(__name__)


def coupons_expire_due() -> int:
    """Mark issued coupons past their validity expired. Returns how many."""
    return services.coupons_expire_due()


def campaigns_run_due() -> int:
    """Run the active campaigns within their window. Returns how many members were targeted."""
    return sum(summary.targeted for summary in campaigns.campaigns_run_due().values())


def campaign_run_task(campaign_id: int) -> dict | None:
    """Run one campaign now (the admin's "Run now"): its run summary, or None when it is
    gone or no longer running (paused or ended since it was queued)."""
    campaign = Campaign.objects.filter(pk=campaign_id).first()
    if campaign is None:
        return None
    try:
        return asdict(campaigns.campaign_run(campaign=campaign))
    except campaigns.CampaignNotActive:
        logger.info("campaign %s: not running now, run skipped", campaign_id)
    except campaigns.CampaignTemplateNotMerchants:
        logger.error("campaign %s: a merchant's campaign with a coupon not its own; not run", campaign_id)
    return None
