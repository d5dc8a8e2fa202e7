"""The H5 page where a shopper confirms paying a shop with points (/m/redeem/<store_code>/)."""

import re

import pytest
from django.urls import reverse

from members import ledger
from members.models import SpendAuthorization
from tests.factories import make_member
from tests.members.test_views_pages import log_in, login_next, text
from tests.payments.conftest import Api, build_shop

pytestmark = pytest.mark.django_db


@pytest.fixture
def shop():
    return build_shop(name="Tea House")


@pytest.fixture
def member():
    m = make_member(nickname="Ada")
    ledger.points_grant(member=m, points=9_000, reason="gift", idempotency_key="g")
    return m


def test_the_page_needs_a_logged_in_shopper(client, shop):
    response = client.get(reverse("h5:redeem", args=[shop.store.code]))
    assert response.status_code == 302 and login_next(response) == reverse("h5:redeem", args=[shop.store.code])


def test_confirming_shows_a_single_use_code_the_cashier_redeems(client, shop, member):
    log_in(client, member)
    page = client.get(reverse("h5:redeem", args=[shop.store.code]))
    assert page.status_code == 200 and "9000" in text(page) and "Tea House" in text(page)

    response = client.post(reverse("h5:redeem", args=[shop.store.code]), {"points": "8000"})

    assert response.status_code == 200
    token = re.search(r'id="redemption-token">(rt_[\w-]+)<', text(response)).group(1)
    assert "<svg" in text(response)
    pos = Api(shop.raw_key)
    assert pos.redeem(store_code=shop.store.code, points=8_000, redemption_token=token).status_code == 201
    assert pos.redeem(store_code=shop.store.code, points=1, redemption_token=token).json()["code"] == "redemption_token_used"
    assert ledger.member_points_balance(member=member) == 1_000


@pytest.mark.parametrize("points", ["0", "-5", "abc", "1.5", "9001", ""])
def test_bad_or_too_many_points_are_refused_on_the_page(client, shop, member, points):
    log_in(client, member)

    response = client.post(reverse("h5:redeem", args=[shop.store.code]), {"points": points})

    assert response.status_code == 400 and 'role="alert"' in text(response)
    assert not SpendAuthorization.objects.exists()


def test_an_unknown_shop_is_a_404(client, member):
    log_in(client, member)
    assert client.get(reverse("h5:redeem", args=["no-such-shop"])).status_code == 404
