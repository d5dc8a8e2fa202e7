"""The mall staff's roles in /admin/: Django groups, the permissions each one holds, and
the limits the admin applies to them beyond permissions.

A role is a group whose permissions are exactly the list below. ``roles_sync`` makes the
groups and sets their permissions; data migrations call it (members 0014 first). When a
list changes, or a new model's permissions join a role, add a data migration that calls
``roles_sync`` again: on a fresh database a migration only sees the models migrated
before it, so permissions of models that do not exist yet are skipped, not failed on.

Beyond permissions (the admin asks these functions):
- a plaza manager sees only the rows of the plazas bound to them (``StaffPlaza``);
- members' phone numbers show in full only to operators and customer service;
- an adjustment of points by anyone but an operator is capped (CS_ADJUST_MAX_POINTS).
Superusers are none of these: they see and do everything.
"""

from django.apps import apps as global_apps
from django.conf import settings
from django.db.models import Q
from django.utils.translation import gettext

from core.errors import PermissionDenied

# Group names are data staff read in the admin: Chinese first, the role's English name after.
OPERATOR = "运营 operator"
PLAZA_MANAGER = "广场经理 plaza manager"
FINANCE = "财务 finance"
CUSTOMER_SERVICE = "客服 customer service"
MERCHANT_MANAGER = "商户经理 merchant manager"

# The operator holds every permission of the project's apps, custom ones included
# (members.adjust_points, members.review_held_points, members.resend_push,
# members.show_checkin_screen, payments.refund_order), and may read the task queue.
# Auth only to read: whoever may change users may make anyone a superuser, so staff
# accounts and their groups stay with superusers. The queue's schedules only to read
# too: a schedule names any function to run.
OPERATOR_APPS = ("members", "coupons", "payments", "bots", "backoffice")

ROLE_PERMISSIONS: dict[str, list[str]] = {
    OPERATOR: [
        "auth.view_user",
        "auth.view_group",
        "django_q.view_schedule",
        "django_q.view_success",
        "django_q.view_failure",
        # The audit trail of staff changes (core.AuditEntry): read-only for everyone.
        "core.view_auditentry",
    ],
    # Read-only, and only their plazas (plaza_scope): the plaza and its check-in screen and
    # posters, its members (no points ledger: that is everyone's), the merchants with a
    # store there, those stores and their payment QR, the visits made there.
    PLAZA_MANAGER: [
        "members.view_plaza",
        "members.show_checkin_screen",
        "members.view_member",
        "members.view_identity",
        "members.view_tier",
        "members.view_tierchange",
        "members.view_merchant",
        "members.view_store",
        "members.view_visit",
        # The dashboards on the admin index, for their plazas only (backoffice.dashboards).
        "backoffice.view_dashboardday",
    ],
    # Money: sales, orders and their refunds, redemptions, the platforms' notifications,
    # and the points ledger, all read-only. Finance refunds orders (the money goes back
    # through the platform and is settled with the tenant): payments.refund_order. Closing
    # unpaid orders stays with operators.
    FINANCE: [
        "payments.view_order",
        "payments.view_orderevent",
        "payments.refund_order",
        "payments.view_orderrefund",
        "payments.view_paymentnotification",
        "payments.view_purchase",
        "payments.view_purchaserefund",
        "payments.view_redemption",
        "payments.view_redemptionrefund",
        "members.view_account",
        "members.view_pointstransaction",
        "members.view_entry",
        "members.view_lot",
        "members.view_shortfallrecovery",
        "members.view_plaza",
        "members.view_merchant",
        "members.view_store",
        "coupons.view_coupontemplate",
        "coupons.view_couponredemption",
        # The dashboards, and their CSV export.
        "backoffice.view_dashboardday",
        "backoffice.export_dashboard",
        # Who changed what, and why: settlements are checked against it.
        "core.view_auditentry",
    ],
    # A shopper on the phone: find the member (by number, phone, openid), see their points,
    # lots, coupons, orders, pushes and conversations; adjust points with a reason, within
    # the cap. The bots admin is a read-only log: no replies are sent from it.
    CUSTOMER_SERVICE: [
        "members.view_member",
        "members.adjust_points",
        "members.view_identity",
        "members.view_tier",
        "members.view_tierchange",
        "members.view_lot",
        "members.view_pointstransaction",
        "members.view_visit",
        "members.view_push",
        "members.view_inboxmessage",
        "members.view_plaza",
        "members.view_merchant",
        "members.view_store",
        "coupons.view_coupon",
        "coupons.view_couponevent",
        "payments.view_order",
        "payments.view_orderevent",
        "payments.view_orderrefund",
        "payments.view_purchase",
        "payments.view_redemption",
        "bots.view_inboundmessage",
    ],
    # Tenants: merchants (created with their first store and key), stores, API keys
    # (issue: add; revoke: change) and the API requests they made.
    MERCHANT_MANAGER: [
        "members.view_plaza",
        "members.view_merchant",
        "members.add_merchant",
        "members.change_merchant",
        "members.view_store",
        "members.add_store",
        "members.change_store",
        "members.view_merchantapikey",
        "members.add_merchantapikey",
        "members.change_merchantapikey",
        "payments.view_apirequest",
        # The tenants' own logins to /merchant/ (backoffice.MerchantStaff).
        "backoffice.view_merchantstaff",
        "backoffice.add_merchantstaff",
        "backoffice.change_merchantstaff",
    ],
}
ROLE_NAMES = tuple(ROLE_PERMISSIONS)

# Who reads members' phone numbers in full; everyone else sees 138****8000.
PHONE_ROLES = frozenset({OPERATOR, CUSTOMER_SERVICE})


class AdjustOverCap(PermissionDenied):
    """The adjustment is over the points one adjustment may move for this role."""

    code = "adjust_over_cap"


# --- the groups -------------------------------------------------------------------


def roles_sync(apps=global_apps) -> list[str]:
    """Make the role groups and set each one's permissions to its list; safe to run again.

    ``apps`` is a migration's historical registry, or the project's. Returns the listed
    permissions that do not exist (yet) in that registry; they are left out.
    """
    _permissions_create(apps)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    missing = []
    for name, listed in ROLE_PERMISSIONS.items():
        group, _created = Group.objects.get_or_create(name=name)
        wanted = Q(pk__in=[])
        for dotted in listed:
            app_label, codename = dotted.split(".", 1)
            wanted |= Q(content_type__app_label=app_label, codename=codename)
        if name == OPERATOR:
            wanted |= Q(content_type__app_label__in=OPERATOR_APPS)
        permissions = list(Permission.objects.filter(wanted).select_related("content_type"))
        found = {f"{p.content_type.app_label}.{p.codename}" for p in permissions}
        missing += [dotted for dotted in listed if dotted not in found]
        group.permissions.set(permissions)
    return missing


def roles_delete(apps=global_apps) -> None:
    apps.get_model("auth", "Group").objects.filter(name__in=ROLE_NAMES).delete()


def _permissions_create(apps) -> None:
    """The permissions Django makes after ``migrate`` (post_migrate), made now: a data
    migration on a fresh database runs before them."""
    from django.contrib.auth.management import create_permissions

    for app_config in apps.get_app_configs():
        # A historical registry's apps have no models module; create_permissions skips those.
        models_module = getattr(app_config, "models_module", None)
        app_config.models_module = models_module or True
        try:
            create_permissions(app_config, apps=apps, verbosity=0)
        finally:
            app_config.models_module = models_module


# --- what a user's roles mean in the admin ----------------------------------------


def user_roles(user) -> frozenset[str]:
    """The role groups the user is in, read once per user object (one per request)."""
    roles = getattr(user, "_mall_roles", None)
    if roles is None:
        roles = frozenset()
        if user.is_authenticated:
            roles = frozenset(user.groups.filter(name__in=ROLE_NAMES).values_list("name", flat=True))
        user._mall_roles = roles
    return roles


def plaza_scope(user) -> list[int] | None:
    """The plazas whose members, merchants, stores and visits the user may see; None: all.

    A plaza manager (who is not also an operator) sees only the plazas bound to them,
    and nothing while none is.
    """
    if user.is_superuser:
        return None
    roles = user_roles(user)
    if PLAZA_MANAGER not in roles or OPERATOR in roles:
        return None
    plaza_ids = getattr(user, "_mall_plaza_ids", None)
    if plaza_ids is None:
        from members.models import StaffPlaza

        plaza_ids = sorted(StaffPlaza.objects.filter(user=user).values_list("plaza_id", flat=True))
        user._mall_plaza_ids = plaza_ids
    return plaza_ids


def phone_visible(user) -> bool:
    return user.is_superuser or bool(user_roles(user) & PHONE_ROLES)


def adjust_points_cap(user) -> int | None:
    """The most points one adjustment may move (either way) for this user; None: no cap."""
    if user.is_superuser or OPERATOR in user_roles(user):
        return None
    return settings.CS_ADJUST_MAX_POINTS


def adjust_points_check(*, user, points: int) -> None:
    """Refuse an adjustment over the user's cap, before anything is written."""
    cap = adjust_points_cap(user)
    if cap is not None and abs(points) > cap:
        message = gettext("At most %(cap)d points per adjustment; ask an operator for more.") % {"cap": cap}
        raise AdjustOverCap(message, extra={"cap": cap})
