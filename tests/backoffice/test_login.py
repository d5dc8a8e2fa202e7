"""Who gets into /merchant/: a tenant's login bound to an active merchant, and no one
else; and a tenant's login never gets into /admin/."""

import pytest
from django.contrib.auth.models import User
from django.test import Client

from backoffice import services
from backoffice.models import MerchantStaff
from members.models import Merchant
from tests.backoffice.conftest import PASSWORD, url
from tests.payments.conftest import build_shop

pytestmark = pytest.mark.django_db


@pytest.fixture
def shop():
    return build_shop(name="Tea House")


@pytest.fixture
def login(shop) -> MerchantStaff:
    return services.merchant_staff_create(merchant=shop.merchant, username="tea-till", password=PASSWORD)


def sign_in(username: str, password: str = PASSWORD):
    client = Client()
    response = client.post(url("login"), {"username": username, "password": password, "next": url("index")})
    return client, response


def test_a_tenant_login_signs_in_and_sees_its_merchant(login):
    client, response = sign_in("tea-till")

    assert response.status_code == 302 and response.url == url("index")
    index = client.get(url("index"))
    assert index.status_code == 200
    assert "Tea House" in index.content.decode()


def test_a_tenant_login_is_not_staff_and_never_gets_into_the_mall_admin(login, client):
    assert not login.user.is_staff and not login.user.is_superuser
    tenant, _ = sign_in("tea-till")

    assert tenant.get("/admin/").status_code == 302
    assert tenant.get("/admin/members/member/").status_code == 302
    assert tenant.get("/admin/").url.startswith("/admin/login/")
    refused = client.post("/admin/login/", {"username": "tea-till", "password": PASSWORD, "next": "/admin/"})
    assert refused.status_code == 200 and "_auth_user_id" not in client.session


@pytest.mark.parametrize("kind", ["superuser", "staff"])
def test_mall_staff_and_superusers_are_refused_at_the_merchant_site(kind, client):
    if kind == "superuser":
        User.objects.create_superuser("boss", "boss@example.com", PASSWORD)
    else:
        User.objects.create_user("clerk", password=PASSWORD, is_staff=True)
    username = "boss" if kind == "superuser" else "clerk"

    mall, response = sign_in(username)

    assert response.status_code == 200  # the form again, with the error
    assert "merchant back-office login" in response.content.decode()
    mall.force_login(User.objects.get(username=username))
    assert mall.get(url("index")).status_code == 302
    assert mall.get(url("payments_order_changelist")).status_code == 302


def test_a_bound_login_made_staff_later_is_refused(login):
    client, _ = sign_in("tea-till")
    User.objects.filter(pk=login.user.pk).update(is_staff=True)

    assert client.get(url("index")).status_code == 302


def test_a_login_of_a_suspended_merchant_or_an_inactive_user_is_refused(login, shop):
    client, _ = sign_in("tea-till")
    Merchant.objects.filter(pk=shop.merchant.pk).update(status=Merchant.Status.SUSPENDED)
    assert client.get(url("index")).status_code == 302
    assert sign_in("tea-till")[1].status_code == 200

    Merchant.objects.filter(pk=shop.merchant.pk).update(status=Merchant.Status.ACTIVE)
    User.objects.filter(pk=login.user.pk).update(is_active=False)
    assert sign_in("tea-till")[1].status_code == 200


def test_a_user_without_a_binding_is_refused():
    User.objects.create_user("nobody", password=PASSWORD)
    assert sign_in("nobody")[1].status_code == 200


def test_mall_staff_make_a_tenant_login_in_the_mall_admin(admin_client, shop):
    response = admin_client.post("/admin/backoffice/merchantstaff/add/", {
        "username": "noodle-manager", "password1": PASSWORD, "password2": PASSWORD, "merchant": shop.merchant.pk,
    })

    assert response.status_code == 302, response.content.decode()[:2000]
    staff = MerchantStaff.objects.get(user__username="noodle-manager")
    assert staff.merchant == shop.merchant
    assert not staff.user.is_staff and not staff.user.is_superuser
    assert sign_in("noodle-manager")[1].status_code == 302


def test_the_mall_admin_refuses_a_taken_username_or_a_closed_merchant(admin_client, login, shop):
    taken = admin_client.post("/admin/backoffice/merchantstaff/add/", {
        "username": "TEA-till", "password1": PASSWORD, "password2": PASSWORD, "merchant": shop.merchant.pk,
    })
    assert taken.status_code == 200 and "exists already" in taken.content.decode()

    Merchant.objects.filter(pk=shop.merchant.pk).update(status=Merchant.Status.CLOSED)
    closed = admin_client.post("/admin/backoffice/merchantstaff/add/", {
        "username": "new-till", "password1": PASSWORD, "password2": PASSWORD, "merchant": shop.merchant.pk,
    })
    assert closed.status_code == 200
    assert MerchantStaff.objects.count() == 1


def test_the_service_refuses_a_weak_password_and_a_taken_name(shop, login):
    with pytest.raises(services.WeakPassword):
        services.merchant_staff_create(merchant=shop.merchant, username="weak", password="123")
    with pytest.raises(services.UsernameTaken):
        services.merchant_staff_create(merchant=shop.merchant, username="Tea-Till", password=PASSWORD)
