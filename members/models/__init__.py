from members.models.ledger import Account, Entry, Lot, PointsTransaction, ShortfallRecovery
from members.models.members import Checkin, Identity, Member, Tier, Visit
from members.models.pushes import InboxMessage, MiniappSubscription, Push, PushTemplate
from members.models.segments import MemberSegment, Segment, SegmentRun, SegmentSnapshot
from members.models.spend import MemberCodeScan, SpendAuthorization
from members.models.staff import StaffPlaza
from members.models.tenants import Merchant, MerchantApiKey, Plaza, Store
from members.models.tiers import TierChange, TierRun

__all__ = [
    "Account",
    "ShortfallRecovery",
    "Checkin",
    "InboxMessage",
    "Push",
    "PushTemplate",
    "Entry",
    "Identity",
    "Lot",
    "Member",
    "MemberCodeScan",
    "MemberSegment",
    "Merchant",
    "MiniappSubscription",
    "MerchantApiKey",
    "Plaza",
    "PointsTransaction",
    "Segment",
    "SegmentRun",
    "SegmentSnapshot",
    "SpendAuthorization",
    "StaffPlaza",
    "Store",
    "Tier",
    "TierChange",
    "TierRun",
    "Visit",
]
