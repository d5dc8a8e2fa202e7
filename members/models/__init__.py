from members.models.ledger import Account, Entry, Lot, PointsTransaction
from members.models.members import Identity, Member, Tier, Visit
from members.models.tenants import Merchant, MerchantApiKey, Plaza, Store

__all__ = [
    "Account",
    "Entry",
    "Identity",
    "Lot",
    "Member",
    "Merchant",
    "MerchantApiKey",
    "Plaza",
    "PointsTransaction",
    "Store",
    "Tier",
    "Visit",
]
