"""Plazas, tenants and members: the services that create and change them."""

import re
import secrets

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from core.errors import ApplicationError, Conflict, NotFound
from members import auth, ledger
from members.models import Member, Merchant, MerchantApiKey, Plaza, Store, Tier, Visit


class InvalidPhone(ApplicationError):
    """Not a phone number we can reach."""

    code = "invalid_phone"


class PhoneTaken(Conflict):
    """Another member already has this phone number."""

    code = "phone_taken"


_MAINLAND_MOBILE = re.compile(r"^1[3-9]\d{9}$")
_INTERNATIONAL = re.compile(r"^\+[1-9]\d{6,14}$")


def phone_normalise(raw: str) -> str:
    """To E.164: "138 0013 8000", "+86-13800138000", "008613800138000" → "+8613800138000"."""
    phone = re.sub(r"[\s\-().]", "", raw or "")
    if phone.startswith("00"):
        phone = "+" + phone[2:]
    if phone.startswith("+86") or (phone.startswith("86") and len(phone) == 13):
        phone = phone[3:] if phone.startswith("+") else phone[2:]
        if not _MAINLAND_MOBILE.match(phone):
            raise InvalidPhone(extra={"phone": raw})
    if _MAINLAND_MOBILE.match(phone):
        return "+86" + phone
    if _INTERNATIONAL.match(phone):
        return phone
    raise InvalidPhone(extra={"phone": raw})


def luhn_check_digit(digits: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def member_no_is_valid(member_no: str) -> bool:
    return len(member_no) == 12 and member_no.isdigit() and luhn_check_digit(member_no[:-1]) == member_no[-1]


def _new_member_no() -> str:
    body = str(secrets.randbelow(9 * 10**10) + 10**10)  # 11 digits, no leading zero
    return body + luhn_check_digit(body)


def tier_entry() -> Tier | None:
    return Tier.objects.order_by("threshold_fen").first()


def member_create(
    *, join_channel: str, plaza: Plaza | None = None, phone: str | None = None, nickname: str = ""
) -> Member:
    """A new member with an empty wallet, on the entry tier."""
    normalised = phone_normalise(phone) if phone else None
    for _ in range(5):
        try:
            with transaction.atomic():
                member = Member.objects.create(
                    member_no=_new_member_no(), phone=normalised, nickname=nickname[:64], tier=tier_entry(),
                    join_channel=join_channel, join_plaza=plaza,
                )
                ledger.wallet_create(member=member)
                return member
        except IntegrityError:
            if normalised and Member.objects.filter(phone=normalised).exists():
                raise PhoneTaken(extra={"phone": normalised}) from None
            # else: a member number collided (1 in 10^11 per member); draw again
    raise Conflict("could not allocate a member number", code="member_no_exhausted")


def member_set_phone(*, member: Member, phone: str) -> Member:
    normalised = phone_normalise(phone)
    if Member.objects.filter(phone=normalised).exclude(pk=member.pk).exists():
        raise PhoneTaken(extra={"phone": normalised})
    try:
        with transaction.atomic():
            Member.objects.filter(pk=member.pk).update(phone=normalised)
    except IntegrityError:
        raise PhoneTaken(extra={"phone": normalised}) from None
    member.phone = normalised
    return member


def plaza_create(*, code: str, name: str, city: str = "", address: str = "") -> Plaza:
    if Plaza.objects.filter(code=code).exists():
        raise Conflict(f"plaza {code} already exists", code="plaza_exists")
    return Plaza.objects.create(code=code, name=name, city=city, address=address)


def _new_store_code(name: str) -> str:
    stem = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:20] or "store"
    while True:
        code = f"{stem}-{secrets.token_hex(3)}"
        if not Store.objects.filter(code=code).exists():
            return code


def merchant_create(
    *, name: str, plaza: Plaza, earn_rate_bp: int | None = None, store_name: str = "", store_code: str = ""
) -> tuple[Merchant, Store, MerchantApiKey, str]:
    """A merchant with its first store, its ledger accounts and an API key.

    Returns the raw API key too: it is shown once and only its hash is kept.
    """
    rate = settings.DEFAULT_EARN_RATE_BP if earn_rate_bp is None else earn_rate_bp
    if not isinstance(rate, int) or isinstance(rate, bool) or not 0 <= rate <= 10000:
        raise ApplicationError("earn_rate_bp must be an integer from 0 to 10000", code="invalid_earn_rate")
    if store_code and Store.objects.filter(code=store_code).exists():
        raise Conflict(f"store code {store_code} is taken", code="store_code_taken")
    with transaction.atomic():
        merchant = Merchant.objects.create(name=name, earn_rate_bp=rate)
        ledger.merchant_accounts_create(merchant=merchant)
        store = Store.objects.create(
            merchant=merchant, plaza=plaza, code=store_code or _new_store_code(name), name=store_name or name
        )
        key, raw_key = auth.merchant_api_key_create(merchant=merchant, name="default")
    return merchant, store, key, raw_key


def visit_record(*, member: Member, plaza: Plaza, kind: str, store: Store | None = None, amount_fen: int = 0, at=None) -> Visit:
    """An offline visit (check-in, purchase, redemption, payment) for segments and reports."""
    at = at or timezone.now()
    visit = Visit.objects.create(member=member, plaza=plaza, store=store, kind=kind, amount_fen=amount_fen, occurred_at=at)
    Member.objects.filter(pk=member.pk).filter(
        Q(last_visit_at__isnull=True) | Q(last_visit_at__lt=at)
    ).update(last_visit_at=at, last_visit_plaza=plaza)
    return visit


def member_by_no(*, member_no: str) -> Member:
    member = Member.objects.select_related("tier").filter(member_no=(member_no or "").strip()).first()
    if member is None:
        raise NotFound("no member with this number", code="member_not_found")
    return member


def mask_phone(phone: str | None) -> str:
    """+8613800138000 → 138****8000."""
    if not phone:
        return ""
    local = phone[3:] if phone.startswith("+86") else phone
    return local[:3] + "****" + local[-4:] if len(local) >= 8 else "****"


def mask_name(name: str) -> str:
    """张三丰 → 张**; Alice → A****."""
    name = (name or "").strip()
    return name[:1] + "*" * min(len(name) - 1, 4) if name else ""
