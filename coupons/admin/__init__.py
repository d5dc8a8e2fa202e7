"""The coupons in the mall's admin: templates and coupons (coupons.admin.templates),
campaigns and their targets, merchants' requests to review (coupons.admin.campaigns).

Nothing here changes a coupon or a campaign's state by itself: forms and actions call
the services (coupons.services, coupons.campaigns, coupons.merchant_campaigns) and show
the error code a service answers with.
"""

from coupons.admin import campaigns, templates  # noqa: F401  (registers the pages)
