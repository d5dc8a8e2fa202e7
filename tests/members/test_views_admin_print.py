"""Staff print a plaza's check-in QR and a store's payment QR from the admin."""

import re
from datetime import datetime, time, timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse
from django.utils import timezone

from members import checkin
from tests.factories import make_plaza, make_store

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client):
    user = User.objects.create_superuser("boss", "boss@example.com", "pw")
    client.force_login(user)
    return user


def qr_links(page: str) -> list[str]:
    return re.findall(r'<img src="(/m/qr/[^"]+\.svg)"', page)


def test_plaza_print_page_shows_its_check_in_qr_name_and_link(client, staff):
    plaza = make_plaza()

    response = client.get(reverse("admin:members_plaza_print_qr", args=[plaza.pk]))

    assert response.status_code == 200
    page = response.content.decode()
    assert plaza.name in page
    [src] = qr_links(page)
    token = src.split("/")[4].removesuffix(".svg")
    code = checkin.checkin_token_read(token)
    # A printed link expires: by default after CHECKIN_PRINTED_LINK_DAYS, through the last local day.
    assert code.plaza == plaza and code.proof == checkin.Proof.PRINTED
    last_day = timezone.localdate() + timedelta(days=checkin.printed_link_days() - 1)
    assert timezone.localtime(code.expires_at) == timezone.make_aware(datetime.combine(last_day + timedelta(days=1), time()))
    assert f"有效期至 {last_day:%Y-%m-%d}" in page and f"Valid until {last_day:%Y-%m-%d}" in page
    assert f"http://testserver{reverse('h5:checkin', args=[token])}" in page
    assert "扫码签到" in page and "Scan to check in" in page  # bilingual, whatever the staff's language
    image = client.get(src)
    assert image.status_code == 200 and image["Content-Type"] == "image/svg+xml"


def test_store_print_page_shows_its_payment_qr_shop_plaza_and_link(client, staff):
    store = make_store()

    page = client.get(reverse("admin:members_store_print_qr", args=[store.pk])).content.decode()

    assert store.name in page and store.plaza.name in page
    assert qr_links(page) == [reverse("h5:qr", kwargs={"kind": "pay", "key": store.code, "fmt": "svg"})]
    assert f"http://testserver/m/pay/{store.code}/" in page
    assert "扫码付款" in page


def test_printed_links_use_the_public_base_url(client, staff, settings):
    settings.O2O_PUBLIC_BASE_URL = "https://mall.example.com/"
    store = make_store()

    page = client.get(reverse("admin:members_store_print_qr", args=[store.pk])).content.decode()

    assert f"https://mall.example.com/m/pay/{store.code}/" in page


def test_print_action_prints_every_selected_active_plaza(client, staff):
    plazas = [make_plaza(), make_plaza(), make_plaza()]
    plazas[2].is_active = False
    plazas[2].save(update_fields=["is_active"])

    response = client.post(
        reverse("admin:members_plaza_changelist"),
        {"action": "print_qr", "_selected_action": [p.pk for p in plazas]},
    )

    assert response.status_code == 200
    page = response.content.decode()
    assert len(qr_links(page)) == 2
    assert plazas[0].name in page and plazas[1].name in page and plazas[2].name not in page


def test_print_action_for_stores(client, staff):
    stores = [make_store(), make_store()]

    response = client.post(
        reverse("admin:members_store_changelist"),
        {"action": "print_qr", "_selected_action": [s.pk for s in stores]},
    )

    assert len(qr_links(response.content.decode())) == 2


def test_lists_and_change_pages_link_to_the_print_page(client, staff):
    plaza, store = make_plaza(), make_store()

    assert reverse("admin:members_plaza_print_qr", args=[plaza.pk]) in client.get(reverse("admin:members_plaza_changelist")).content.decode()
    assert reverse("admin:members_plaza_print_qr", args=[plaza.pk]) in client.get(reverse("admin:members_plaza_change", args=[plaza.pk])).content.decode()
    assert reverse("admin:members_store_print_qr", args=[store.pk]) in client.get(reverse("admin:members_store_changelist")).content.decode()
    assert reverse("admin:members_store_print_qr", args=[store.pk]) in client.get(reverse("admin:members_store_change", args=[store.pk])).content.decode()


def test_an_inactive_store_has_no_print_page(client, staff):
    store = make_store()
    store.is_active = False
    store.save(update_fields=["is_active"])

    response = client.get(reverse("admin:members_store_print_qr", args=[store.pk]))

    assert response.status_code == 302
    assert response["Location"] == reverse("admin:members_store_change", args=[store.pk])


def test_print_page_needs_a_staff_login(client):
    plaza = make_plaza()

    response = client.get(reverse("admin:members_plaza_print_qr", args=[plaza.pk]))

    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_print_page_needs_view_permission(client):
    plaza = make_plaza()
    user = User.objects.create_user("clerk", password="pw", is_staff=True)
    client.force_login(user)

    assert client.get(reverse("admin:members_plaza_print_qr", args=[plaza.pk])).status_code == 403
    user.user_permissions.add(Permission.objects.get(codename="view_plaza"))
    assert client.get(reverse("admin:members_plaza_print_qr", args=[plaza.pk])).status_code == 200
