"""Scheduled work on coupons. Thin and safe to run twice: the services are idempotent."""

from coupons import services


def coupons_expire_due() -> int:
    """Mark issued coupons past their validity expired. Returns how many."""
    return services.coupons_expire_due()
