"""Logins of the merchant back office: who they are for, and making one."""

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.db import transaction
from django.utils.translation import gettext

from backoffice.models import MerchantStaff
from core.errors import ApplicationError, Conflict
from members.models import Merchant


class UsernameTaken(Conflict):
    """A login with this username exists already."""

    code = "username_taken"


class MerchantNotActive(Conflict):
    """Only an active merchant gets back-office logins."""

    code = "merchant_not_active"


class WeakPassword(ApplicationError):
    """The password fails the site's password rules."""

    code = "weak_password"


def user_merchant(*, user) -> Merchant | None:
    """The merchant whose back office ``user`` may use now, or None.

    Only an active, non-staff login bound to an active merchant: mall staff and
    superusers use /admin/ and are refused here, even with a binding.
    """
    if user is None or not user.is_authenticated or not user.is_active or user.is_staff or user.is_superuser:
        return None
    staff = MerchantStaff.objects.select_related("merchant").filter(user_id=user.pk).first()
    if staff is None or not staff.merchant.is_active:
        return None
    return staff.merchant


def merchant_staff_create(*, merchant: Merchant, username: str, password: str) -> MerchantStaff:
    """A new login (never staff) bound to ``merchant``."""
    username = username.strip()
    if not merchant.is_active:
        raise MerchantNotActive()
    User = get_user_model()
    user = User(username=username, is_staff=False, is_superuser=False)
    try:
        validate_password(password, user)
    except Exception as exc:  # django.core.exceptions.ValidationError: one message per broken rule
        messages = getattr(exc, "messages", [str(exc)])
        raise WeakPassword(" ".join(messages)) from None
    with transaction.atomic():
        if User.objects.filter(username__iexact=username).exists():
            raise UsernameTaken(gettext("A login with this username exists already."))
        user.set_password(password)
        user.save()
        return MerchantStaff.objects.create(user=user, merchant=merchant)
