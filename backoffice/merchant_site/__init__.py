"""The tenants' own admin at /merchant/: a second Django admin site for a merchant's staff.

Each page shows only the signed-in login's merchant (backoffice.services.user_merchant):
every ModelAdmin here filters its queryset by it, and an object of another merchant is
not found (404), never forbidden. Writes go through the apps' services: refunds
(payments.refunds), API keys (members.auth); coupon templates are model forms, as in
the mall's admin, held to the merchant's own stores and its own funding.
"""

from backoffice.merchant_site import coupons, sales, tenants  # noqa: F401  (registers the pages)
from backoffice.merchant_site.site import site

__all__ = ["coupons", "sales", "site", "tenants"]
