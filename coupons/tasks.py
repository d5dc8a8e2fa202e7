"""Scheduled work on coupons. Thin and safe to run twice: the services are idempotent."""

from coupons import campaigns, services


def coupons_expire_due() -> int:
    """Mark issued coupons past their validity expired. Returns how many."""
    return services.coupons_expire_due()


def campaigns_run_due() -> int:
    """Run the active campaigns within their window. Returns how many members were targeted."""
    return sum(summary.targeted for summary in campaigns.campaigns_run_due().values())
