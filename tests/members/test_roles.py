"""Staff roles in /admin/ (members.roles): what each group may reach, plaza managers
seeing their plazas only, the customer-service cap on adjustments, masked phones, and
the migration that makes the groups."""

import importlib
import uuid

import pytest
from django.apps import apps
from django.contrib.auth.models import Group, Permission, User
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from members import ledger, roles, services
from members.models import (
    Member,
    Merchant,
    MerchantApiKey,
    Plaza,
    PointsTransaction,
    StaffPlaza,
    Store,
    Visit,
)
from payments import orders
from payments.gateways import sandbox
from payments.models import Order, OrderRefund

pytestmark = pytest.mark.django_db

MIGRATION = importlib.import_module("members.migrations.0014_roles")

OPERATOR, PLAZA, FINANCE, CS, MERCHANTS = (
    roles.OPERATOR, roles.PLAZA_MANAGER, roles.FINANCE, roles.CUSTOMER_SERVICE, roles.MERCHANT_MANAGER,
)
ALL_ROLES = [OPERATOR, PLAZA, FINANCE, CS, MERCHANTS]


@pytest.fixture(autouse=True)
def _roles(settings):
    settings.O2O_SANDBOX = True
    # A transactional test elsewhere empties the groups the migration made.
    assert roles.roles_sync() == []


@pytest.fixture
def mall():
    """Two plazas, each with a merchant, a store and a member; a third member joined at B
    and last came to A; a fourth, a merchant with a store in both plazas."""
    a = services.plaza_create(code="plaza-a", name="Plaza A", city="Shanghai")
    b = services.plaza_create(code="plaza-b", name="Plaza B", city="Beijing")
    merchant_a, store_a, _key, _raw = services.merchant_create(name="Tea A", plaza=a, store_code="tea-a")
    merchant_b, store_b, _key, _raw = services.merchant_create(name="Noodles B", plaza=b, store_code="noodles-b")
    chain, chain_a, _key, _raw = services.merchant_create(name="Chain", plaza=a, store_code="chain-a")
    chain_b = Store.objects.create(merchant=chain, plaza=b, code="chain-b", name="Chain B")
    member_a = services.member_create(join_channel=Member.Channel.WECHAT, plaza=a, phone="13800138000")
    member_b = services.member_create(join_channel=Member.Channel.WECHAT, plaza=b, phone="13900139000")
    visitor = services.member_create(join_channel=Member.Channel.ALIPAY, plaza=b, phone="13700137000")
    Member.objects.filter(pk=visitor.pk).update(last_visit_plaza=a)
    ledger.points_grant(member=member_a, points=1_000, reason="gift", idempotency_key="roles:grant:a")
    for member, plaza, store in [(member_a, a, store_a), (member_b, b, store_b)]:
        Visit.objects.create(member=member, plaza=plaza, store=store, kind=Visit.Kind.PURCHASE, amount_fen=100,
                             occurred_at=member.created_at)
    return {
        "a": a, "b": b, "merchant_a": merchant_a, "merchant_b": merchant_b, "store_a": store_a, "store_b": store_b,
        "chain": chain, "chain_a": chain_a, "chain_b": chain_b, "member_a": member_a, "member_b": member_b,
        "visitor": visitor,
    }


def staff(role: str, *, plazas=()) -> Client:
    user = User.objects.create_user(f"staff-{uuid.uuid4().hex[:8]}", password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    for plaza in plazas:
        StaffPlaza.objects.create(user=user, plaza=plaza)
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def as_role(mall):
    """A logged-in client per role; the plaza manager looks after plaza A."""
    return lambda role: staff(role, plazas=[mall["a"]] if role == PLAZA else [])


def url(model, view, *args):
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def adjust_url(member):
    return reverse("admin:members_member_adjust_points", args=[member.pk])


def listed(client, model, **params) -> set:
    response = client.get(url(model, "changelist"), params)
    assert response.status_code == 200
    return {obj.pk for obj in response.context["cl"].result_list}


def message_texts(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def paid_order(store, member) -> Order:
    order = orders.order_create(
        store=store, member=member, amount_fen=10_000, points_to_use=0, channel="sandbox",
        client=Order.Client.CASHIER, site_url="http://testserver",
    )
    headers, body = sandbox.trade_pay(out_trade_no=order.out_trade_no)
    response = Client().post("/payments/notify/sandbox/", data=body, content_type="application/json", headers=headers)
    assert response.status_code == 200
    order.refresh_from_db()
    assert order.status == Order.Status.PAID
    return order


# --- the groups -------------------------------------------------------------------


def group_permissions() -> dict[str, set[str]]:
    return {
        group.name: {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.select_related("content_type")}
        for group in Group.objects.filter(name__in=roles.ROLE_NAMES)
    }


def test_migration_makes_each_group_once_and_backwards_removes_them():
    MIGRATION.forwards(apps, None)
    first = group_permissions()
    MIGRATION.forwards(apps, None)
    assert group_permissions() == first
    assert sorted(first) == sorted(roles.ROLE_NAMES)
    assert Group.objects.filter(name__in=roles.ROLE_NAMES).count() == 5
    for name, listed_permissions in roles.ROLE_PERMISSIONS.items():
        assert set(listed_permissions) <= first[name]

    MIGRATION.backwards(apps, None)
    assert not Group.objects.filter(name__in=roles.ROLE_NAMES).exists()
    MIGRATION.forwards(apps, None)
    assert group_permissions() == first


def test_roles_sync_puts_back_a_permission_taken_away_and_removes_one_added():
    group = Group.objects.get(name=FINANCE)
    group.permissions.remove(Permission.objects.get(codename="refund_order"))
    group.permissions.add(Permission.objects.get(codename="adjust_points"))
    roles.roles_sync()
    held = group_permissions()[FINANCE]
    assert "payments.refund_order" in held and "members.adjust_points" not in held


def test_operator_holds_every_permission_of_the_project_apps_but_cannot_change_staff_accounts():
    held = group_permissions()[OPERATOR]
    project = {
        f"{p.content_type.app_label}.{p.codename}"
        for p in Permission.objects.filter(content_type__app_label__in=["members", "coupons", "payments", "bots"])
    }
    assert project <= held
    assert {"members.adjust_points", "payments.refund_order", "members.review_held_points", "members.resend_push"} <= held
    assert not {"auth.change_user", "auth.add_user", "auth.change_group", "django_q.add_schedule"} & held


def test_only_operators_and_customer_service_adjust_points_and_only_operators_and_finance_refund():
    held = group_permissions()
    assert {name for name, perms in held.items() if "members.adjust_points" in perms} == {OPERATOR, CS}
    assert {name for name, perms in held.items() if "payments.refund_order" in perms} == {OPERATOR, FINANCE}


# --- who reaches what -------------------------------------------------------------

# Page → the status each role gets (operator, plaza manager, finance, customer service, merchant manager).
PAGES = {
    "member list": (lambda m: url(Member, "changelist"), [200, 200, 403, 200, 403]),
    "member page": (lambda m: url(Member, "change", m["member_a"].pk), [200, 200, 403, 200, 403]),
    "adjust points": (lambda m: adjust_url(m["member_a"]), [200, 403, 403, 200, 403]),
    "merchant list": (lambda m: url(Merchant, "changelist"), [200, 200, 200, 200, 200]),
    "merchant page": (lambda m: url(Merchant, "change", m["merchant_a"].pk), [200, 200, 200, 200, 200]),
    "merchant add": (lambda m: url(Merchant, "add"), [200, 403, 403, 403, 200]),
    "store list": (lambda m: url(Store, "changelist"), [200, 200, 200, 200, 200]),
    "store add": (lambda m: url(Store, "add"), [200, 403, 403, 403, 200]),
    "api keys": (lambda m: url(MerchantApiKey, "changelist"), [200, 403, 403, 403, 200]),
    "plaza list": (lambda m: url(Plaza, "changelist"), [200, 200, 200, 200, 200]),
    "plaza add": (lambda m: url(Plaza, "add"), [200, 403, 403, 403, 403]),
    "visits": (lambda m: url(Visit, "changelist"), [200, 200, 403, 200, 403]),
    "points ledger": (lambda m: url(PointsTransaction, "changelist"), [200, 403, 200, 200, 403]),
    "orders": (lambda m: reverse("admin:payments_order_changelist"), [200, 403, 200, 200, 403]),
    "order refunds": (lambda m: reverse("admin:payments_orderrefund_changelist"), [200, 403, 200, 200, 403]),
    "purchases": (lambda m: reverse("admin:payments_purchase_changelist"), [200, 403, 200, 200, 403]),
    "api requests": (lambda m: reverse("admin:payments_apirequest_changelist"), [200, 403, 403, 403, 200]),
    "conversations": (lambda m: reverse("admin:bots_inboundmessage_changelist"), [200, 403, 403, 200, 403]),
    "coupon templates": (lambda m: reverse("admin:coupons_coupontemplate_changelist"), [200, 403, 200, 403, 403]),
    "coupons": (lambda m: reverse("admin:coupons_coupon_changelist"), [200, 403, 403, 200, 403]),
    "staff plazas": (lambda m: url(StaffPlaza, "changelist"), [200, 403, 403, 403, 403]),
    "tiers": (lambda m: reverse("admin:members_tier_changelist"), [200, 200, 403, 200, 403]),
    "users": (lambda m: reverse("admin:auth_user_changelist"), [200, 403, 403, 403, 403]),
    "audit trail": (lambda m: reverse("admin:core_auditentry_changelist"), [200, 403, 200, 403, 403]),
}
CASES = [(page, role, statuses[i]) for page, (_, statuses) in PAGES.items() for i, role in enumerate(ALL_ROLES)]


@pytest.mark.parametrize(("page", "role", "status"), CASES, ids=[f"{p}-{r.split()[-1]}" for p, r, _ in CASES])
def test_each_role_reaches_its_pages_and_no_others(mall, as_role, page, role, status):
    assert as_role(role).get(PAGES[page][0](mall)).status_code == status


@pytest.mark.parametrize("role", ALL_ROLES)
def test_the_refund_form_opens_for_operators_and_finance_only(mall, as_role, role):
    order = paid_order(mall["store_a"], mall["member_a"])
    expected = 200 if role in (OPERATOR, FINANCE) else 403
    assert as_role(role).get(reverse("admin:payments_order_refund", args=[order.pk])).status_code == expected


def test_finance_refunds_an_order_and_customer_service_cannot(mall):
    order = paid_order(mall["store_a"], mall["member_a"])
    refund_url = reverse("admin:payments_order_refund", args=[order.pk])
    form = {"apply": "1", "token": str(uuid.uuid4()), "amount": "10.00", "reason": "damaged"}

    assert staff(CS).post(refund_url, form).status_code == 403
    assert not OrderRefund.objects.exists()

    assert staff(FINANCE).post(refund_url, form).status_code == 302
    assert OrderRefund.objects.get().amount_fen == 1_000


@pytest.mark.parametrize("role", [PLAZA, FINANCE, CS, MERCHANTS])
def test_roles_other_than_operator_cannot_change_the_ledger_or_members_profile(mall, as_role, role):
    client = as_role(role)
    txn = PointsTransaction.objects.first()
    assert client.post(url(PointsTransaction, "change", txn.pk), {}).status_code == 403
    member = mall["member_a"]
    response = client.post(url(Member, "change", member.pk), {"nickname": "pwned"})
    assert response.status_code == 403
    member.refresh_from_db()
    assert member.nickname != "pwned"


def test_merchant_manager_issues_and_revokes_keys(mall):
    client = staff(MERCHANTS)
    merchant = mall["merchant_a"]
    before = MerchantApiKey.objects.filter(merchant=merchant).count()
    client.post(url(Merchant, "changelist"), {"action": "issue_api_key", "_selected_action": [merchant.pk]})
    assert MerchantApiKey.objects.filter(merchant=merchant).count() == before + 1
    keys = list(MerchantApiKey.objects.filter(merchant=merchant).values_list("pk", flat=True))
    client.post(url(MerchantApiKey, "changelist"), {"action": "revoke", "_selected_action": keys})
    assert not MerchantApiKey.objects.filter(merchant=merchant, revoked_at__isnull=True).exists()


def test_operator_reads_staff_accounts_but_cannot_make_a_superuser():
    operator = staff(OPERATOR)
    user = User.objects.get(username__startswith="staff-")
    assert operator.get(reverse("admin:auth_user_change", args=[user.pk])).status_code == 200
    response = operator.post(reverse("admin:auth_user_change", args=[user.pk]), {"username": user.username, "is_superuser": "on"})
    assert response.status_code == 403
    user.refresh_from_db()
    assert not user.is_superuser


# --- plaza managers see their plazas only -----------------------------------------


def test_plaza_manager_lists_only_their_plazas_members_merchants_stores_and_visits(mall):
    client = staff(PLAZA, plazas=[mall["a"]])
    assert listed(client, Member) == {mall["member_a"].pk, mall["visitor"].pk}
    assert listed(client, Merchant) == {mall["merchant_a"].pk, mall["chain"].pk}
    assert listed(client, Store) == {mall["store_a"].pk, mall["chain_a"].pk}
    assert listed(client, Plaza) == {mall["a"].pk}
    assert listed(client, Visit) == set(Visit.objects.filter(plaza=mall["a"]).values_list("pk", flat=True))
    # A whole phone number of another plaza's member finds nothing.
    assert listed(client, Member, q="13900139000") == set()


def test_plaza_manager_of_two_plazas_sees_both_and_of_none_sees_nothing(mall):
    both = staff(PLAZA, plazas=[mall["a"], mall["b"]])
    assert listed(both, Member) == {mall["member_a"].pk, mall["member_b"].pk, mall["visitor"].pk}
    unbound = staff(PLAZA)
    assert listed(unbound, Member) == set() and listed(unbound, Store) == set() and listed(unbound, Plaza) == set()


def test_another_plazas_objects_are_not_found_for_a_plaza_manager(mall):
    client = staff(PLAZA, plazas=[mall["a"]])
    index = reverse("admin:index")
    for obj in [mall["member_b"], mall["merchant_b"], mall["store_b"], mall["b"]]:
        # The change page answers as for an id that does not exist: back to the index, nothing shown.
        response = client.get(url(type(obj), "change", obj.pk))
        assert (response.status_code, response.url) == (302, index)
        assert client.get(url(type(obj), "history", obj.pk)).status_code == 302
    assert client.get(reverse("admin:members_store_print_qr", args=[mall["store_b"].pk])).status_code == 404
    assert client.get(reverse("admin:members_plaza_print_qr", args=[mall["b"].pk])).status_code == 404
    assert client.get(reverse("admin:members_plaza_checkin_screen", args=[mall["b"].pk])).status_code == 404
    assert client.get(reverse("admin:members_plaza_checkin_screen_code", args=[mall["b"].pk])).status_code == 404
    # Their own plaza's screen and posters work.
    assert client.get(reverse("admin:members_plaza_checkin_screen", args=[mall["a"].pk])).status_code == 200
    assert client.get(reverse("admin:members_store_print_qr", args=[mall["store_a"].pk])).status_code == 200
    # Store autocomplete of merchants: theirs only.
    response = client.get(reverse("admin:autocomplete"), {
        "app_label": "members", "model_name": "store", "field_name": "merchant", "term": "Noodles"})
    assert response.status_code == 200 and "Noodles" not in response.content.decode()
    assert "Tea A" in client.get(reverse("admin:autocomplete"), {
        "app_label": "members", "model_name": "store", "field_name": "merchant", "term": "Tea"}).content.decode()


def test_plaza_manager_sees_only_their_plazas_stores_of_a_merchant_in_both(mall):
    response = staff(PLAZA, plazas=[mall["a"]]).get(url(Merchant, "change", mall["chain"].pk))
    (stores,) = [f for f in response.context["inline_admin_formsets"] if f.opts.model is Store]
    assert [form.instance.code for form in stores.formset.forms] == ["chain-a"]
    # Unrestricted roles see both.
    response = staff(OPERATOR).get(url(Merchant, "change", mall["chain"].pk))
    (stores,) = [f for f in response.context["inline_admin_formsets"] if f.opts.model is Store]
    assert sorted(form.instance.code for form in stores.formset.forms) == ["chain-a", "chain-b"]


def test_plaza_manager_who_is_also_an_operator_sees_every_plaza(mall):
    client = staff(PLAZA, plazas=[mall["a"]])
    User.objects.get(username=client.get(reverse("admin:index")).wsgi_request.user.username).groups.add(
        Group.objects.get(name=OPERATOR))
    assert mall["member_b"].pk in listed(client, Member)


# --- the customer-service cap on adjustments --------------------------------------


def adjust(client, member, points, *, reason="goodwill"):
    page = adjust_url(member)
    token = client.get(page).context["form"]["token"].value()
    return client.post(page, {"apply": "1", "token": token, "points": points, "reason": reason}, follow=True)


def adjustments():
    return PointsTransaction.objects.filter(kind=PointsTransaction.Kind.ADJUST)


@pytest.mark.parametrize("points", [501, -501, 100_000])
def test_customer_service_adjustment_over_the_cap_is_refused_and_nothing_moves(mall, points):
    member = mall["member_a"]
    response = adjust(staff(CS), member, points)
    assert response.status_code == 200
    assert response.templates[0].name == "admin/members/member/adjust_points.html"
    assert any(m.startswith("adjust_over_cap") and "500" in m for m in message_texts(response))
    assert ledger.member_points_balance(member=member) == 1_000
    assert not adjustments().exists()


@pytest.mark.parametrize("points", [500, -500, 1])
def test_customer_service_adjusts_within_the_cap(mall, points):
    member = mall["member_a"]
    response = adjust(staff(CS), member, points)
    assert response.redirect_chain[-1][0] == url(Member, "change", member.pk)
    assert ledger.member_points_balance(member=member) == 1_000 + points
    assert adjustments().get().points == points


def test_the_cap_follows_the_setting_and_binds_the_list_action_too(mall, settings):
    settings.CS_ADJUST_MAX_POINTS = 100
    member = mall["member_a"]
    client = staff(CS)
    response = client.post(url(Member, "changelist"), {
        "action": "adjust_points", "_selected_action": [member.pk], "apply": "1", "token": str(uuid.uuid4()),
        "points": 101, "reason": "goodwill"}, follow=True)
    assert any(m.startswith("adjust_over_cap") for m in message_texts(response))
    assert not adjustments().exists()
    adjust(client, member, 100)
    assert adjustments().get().points == 100


def test_operator_adjusts_over_the_cap(mall):
    member = mall["member_a"]
    adjust(staff(OPERATOR), member, 5_000)
    assert ledger.member_points_balance(member=member) == 6_000


def test_staff_with_the_adjust_permission_but_no_role_is_capped(mall):
    user = User.objects.create_user("direct", password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["view_member", "adjust_points"]))
    client = Client()
    client.force_login(user)
    adjust(client, mall["member_a"], 501)
    assert not adjustments().exists()


# --- phones -----------------------------------------------------------------------


@pytest.mark.parametrize(("role", "whole"), [(OPERATOR, True), (CS, True), (PLAZA, False)])
def test_member_page_shows_the_phone_whole_only_to_operators_and_customer_service(mall, as_role, role, whole):
    content = as_role(role).get(url(Member, "change", mall["member_a"].pk)).content.decode()
    assert ("+8613800138000" in content) is whole
    assert ("138****8000" in content) is not whole


@pytest.mark.parametrize(("role", "whole"), [(OPERATOR, True), (CS, True), (PLAZA, False)])
def test_member_list_shows_the_phone_whole_only_to_operators_and_customer_service(mall, as_role, role, whole):
    content = as_role(role).get(url(Member, "changelist")).content.decode()
    assert ("138 0013 8000" in content) is whole
    assert ("138****8000" in content) is not whole
    assert "+8613800138000" not in content


def test_phone_visibility_by_role(mall):
    def user_in(*names):
        user = User.objects.create_user(f"u-{uuid.uuid4().hex[:6]}", is_staff=True)
        user.groups.add(*Group.objects.filter(name__in=names))
        return User.objects.get(pk=user.pk)

    assert [roles.phone_visible(user_in(name)) for name in ALL_ROLES] == [True, False, False, True, False]
    assert roles.phone_visible(User(is_superuser=True))
    assert not roles.phone_visible(user_in())


def test_merchant_managers_and_operators_manage_the_tenants_logins_and_others_do_not(mall):
    from backoffice.models import MerchantStaff

    changelist = url(MerchantStaff, "changelist")
    for role, status in [(OPERATOR, 200), (MERCHANTS, 200), (FINANCE, 403), (CS, 403), (PLAZA, 403)]:
        assert staff(role).get(changelist).status_code == status, role
    assert staff(MERCHANTS).get(url(MerchantStaff, "add")).status_code == 200
