"""The shopper's coupon pages under /m/coupons/: my coupons, free ones to claim, the points
mall, one coupon with its rotating till code, a claim QR's page, and its poster for staff."""

import re
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import time_machine
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from coupons import claims, codes
from coupons.models import Coupon, CouponTemplate
from coupons.services import coupon_redeem, coupon_void
from members import ledger, web_auth
from members.models import Member
from tests.coupons.conftest import issue, make_template, window
from tests.factories import assert_ledger_invariants, make_member
from tests.payments.conftest import grant

pytestmark = pytest.mark.django_db

LIST = "/m/coupons/"
CLAIM = "/m/coupons/claim/"
EXCHANGE = "/m/coupons/exchange/"


def log_in(client, member):
    session = client.session
    session[web_auth.SESSION_MEMBER] = member.pk
    session.save()


@pytest.fixture
def shopper(member, client):
    log_in(client, member)
    return member


def text(response) -> str:
    return response.content.decode()


def free(**fields) -> CouponTemplate:
    fields.setdefault("claimable", True)
    return make_template(kind=fields.pop("kind", CouponTemplate.Kind.VOUCHER), **fields)


def for_sale(**fields) -> CouponTemplate:
    return make_template(kind=fields.pop("kind", CouponTemplate.Kind.VOUCHER), points_price=fields.pop("points_price", 300),
                         **fields)


def form_token(page: str, template: CouponTemplate, action: str) -> str:
    """The one-time token of the form that posts ``template`` to ``action`` on the page."""
    forms = re.findall(r'<form method="post" action="([^"]+)"[^>]*>(.*?)</form>', page, re.S)
    for form_action, body in forms:
        if form_action == action and f'name="template_id" value="{template.pk}"' in body:
            return re.search(r'name="token" value="([^"]+)"', body)[1]
    raise AssertionError(f"no form to {action} for template {template.pk}")


def login_next(response) -> str:
    location = urlsplit(response["Location"])
    assert location.path == reverse("h5:login")
    return parse_qs(location.query)["next"][0]


# --- the coupons page --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [LIST, "/m/coupons/1/", "/m/coupons/claim/" + "A" * 20 + "/"])
def test_a_visitor_is_sent_to_log_in_and_back(client, path):
    if "claim/" in path:
        free(claimable=False, claim_code="A" * 20)

    response = client.get(path)

    assert response.status_code == 302
    assert login_next(response) == path


def test_the_page_shows_my_coupons_free_ones_and_the_points_mall(client, shopper, shop):
    grant(shopper, 450)
    mine = issue(make_template(name="我的满减券", merchant=shop.merchant), shopper)
    used = issue(make_template(name="用过的券", kind=CouponTemplate.Kind.VOUCHER), shopper)
    coupon_redeem(coupon=used, merchant=shop.merchant, store=shop.store, amount_fen=10_000, idempotency_key="t",
                  authorised_by="coupon_code")
    issue(make_template(name="别人的券"), make_member())
    offer = free(name="免费咖啡券", kind=CouponTemplate.Kind.GIFT, total_quota=100, issued_count=40)
    cheap = for_sale(name="积分换券", points_price=300, total_quota=10, issued_count=3)
    dear = for_sale(name="贵的券", points_price=5_000)

    response = client.get(LIST)

    assert response.status_code == 200
    page = text(response)
    mine_section = page.split('id="my-coupons"')[1].split('id="past-coupons"')[0]
    assert "我的满减券" in mine_section and f'href="/m/coupons/{mine.pk}/"' in mine_section
    assert "¥20" in mine_section  # the headline of ¥20 off ¥100
    past = page.split('id="past-coupons"')[1].split("</details>")[0]
    assert "用过的券" in past and "别人的券" not in page
    free_section = page.split('id="free-coupons"')[1].split("</section>")[0]
    assert "免费咖啡券" in free_section and "60" in free_section
    assert form_token(page, offer, CLAIM)
    mall = page.split('id="points-mall"')[1].split("</section>")[0]
    assert 'id="points-balance">450<' in mall
    assert "积分换券" in mall and "7" in mall and "300" in mall
    assert form_token(page, cheap, EXCHANGE)
    with pytest.raises(AssertionError):
        form_token(page, dear, EXCHANGE)  # not enough points: no form, a disabled button
    assert "no-store" in response["Cache-Control"]


def test_the_member_card_links_the_coupons_page(client, shopper):
    assert f'href="{LIST}"' in text(client.get("/m/"))


# --- claiming from the page ----------------------------------------------------------------------------


def test_claiming_a_free_coupon_takes_the_shopper_to_it(client, shopper):
    offer = free(name="新人券")
    token = form_token(text(client.get(LIST)), offer, CLAIM)

    response = client.post(CLAIM, {"template_id": offer.pk, "token": token})

    coupon = Coupon.objects.get()
    assert (coupon.member, coupon.template, coupon.issued_via) == (shopper, offer, "claim")
    assert response.status_code == 302 and response["Location"] == f"/m/coupons/{coupon.pk}/?new=claimed"
    page = text(client.get(response["Location"]))
    assert 'id="coupon-new"' in page and "新人券" in page
    # Claimed: the page offers no second one.
    page = text(client.get(LIST))
    with pytest.raises(AssertionError):
        form_token(page, offer, CLAIM)


def test_a_replayed_form_takes_one_coupon_where_three_are_allowed(client, shopper):
    offer = free(per_member_limit=3)
    token = form_token(text(client.get(LIST)), offer, CLAIM)

    first = client.post(CLAIM, {"template_id": offer.pk, "token": token})
    again = client.post(CLAIM, {"template_id": offer.pk, "token": token})

    assert first["Location"] == again["Location"]
    assert Coupon.objects.filter(member=shopper).count() == 1
    # A fresh page draws a fresh token: another claim.
    token = form_token(text(client.get(LIST)), offer, CLAIM)
    client.post(CLAIM, {"template_id": offer.pk, "token": token})
    assert Coupon.objects.filter(member=shopper).count() == 2


def test_a_token_replayed_for_another_coupon_is_refused_on_the_page(client, shopper):
    first, second = free(name="一"), free(name="二")
    token = form_token(text(client.get(LIST)), first, CLAIM)
    client.post(CLAIM, {"template_id": first.pk, "token": token})

    response = client.post(CLAIM, {"template_id": second.pk, "token": token})

    assert response.status_code == 409
    assert 'id="coupons-error"' in text(response)
    assert list(Coupon.objects.values_list("template", flat=True)) == [first.pk]


@pytest.mark.parametrize("body", [{}, {"token": "short"}, {"token": "a" * 22, "template_id": "x"},
                                  {"token": "<script>alert(1)</script>xx", "template_id": "1"}])
def test_a_form_without_its_token_or_template_claims_nothing(client, shopper, body):
    free()

    response = client.post(CLAIM, body)

    assert response.status_code == 400
    assert 'id="coupons-error"' in text(response)
    assert not Coupon.objects.exists()


def test_a_post_from_another_site_is_stopped_by_the_csrf_check(member):
    offer = free()
    client = Client(enforce_csrf_checks=True)
    log_in(client, member)

    response = client.post(CLAIM, {"template_id": offer.pk, "token": "a" * 22})

    assert response.status_code == 403
    assert not Coupon.objects.exists()


@pytest.mark.parametrize(("fields", "status"), [
    ({"status": CouponTemplate.Status.PAUSED}, 409),
    ({"total_quota": 1, "issued_count": 1}, 409),
    ({"claimable": False}, 404),
    ({"points_price": 100}, 409),
])
def test_a_refused_claim_says_why_on_the_page_never_a_500(client, shopper, fields, status):
    template = free(**fields)

    response = client.post(CLAIM, {"template_id": template.pk, "token": "t" * 22})

    assert response.status_code == status
    assert 'id="coupons-error"' in text(response)
    assert not Coupon.objects.exists()


def test_a_huge_template_id_is_not_found(client, shopper):
    response = client.post(CLAIM, {"template_id": "9" * 18, "token": "t" * 22})

    assert response.status_code == 404
    assert not Coupon.objects.exists()


# --- the points mall ------------------------------------------------------------------------------------


def test_exchanging_points_debits_once_and_shows_the_balance_after(client, shopper):
    grant(shopper, 1_000)
    item = for_sale(name="换购券", points_price=300)
    token = form_token(text(client.get(LIST)), item, EXCHANGE)

    response = client.post(EXCHANGE, {"template_id": item.pk, "token": token})
    again = client.post(EXCHANGE, {"template_id": item.pk, "token": token})

    coupon = Coupon.objects.get()
    assert (coupon.member, coupon.issued_via) == (shopper, "points")
    assert response["Location"] == again["Location"] == f"/m/coupons/{coupon.pk}/?new=exchanged"
    assert ledger.member_points_balance(member=shopper) == 700
    page = text(client.get(response["Location"]))
    assert 'id="coupon-new"' in page and "700" in page.split('id="coupon-new"')[1].split("</p>")[0]
    assert_ledger_invariants()


def test_exchanging_without_enough_points_says_so_and_moves_nothing(client, shopper):
    grant(shopper, 100)
    item = for_sale(points_price=300)

    response = client.post(EXCHANGE, {"template_id": item.pk, "token": "t" * 22})

    assert response.status_code == 409
    error = text(response).split('id="coupons-error">')[1].split("</p>")[0]
    assert "100" in error
    assert not Coupon.objects.exists()
    assert ledger.member_points_balance(member=shopper) == 100


@pytest.mark.parametrize(("fields", "status"), [
    ({"total_quota": 1, "issued_count": 1}, 409), ({"status": CouponTemplate.Status.PAUSED}, 409),
    ({"points_price": None}, 409),
])
def test_a_refused_exchange_says_why_and_moves_nothing(client, shopper, fields, status):
    grant(shopper, 1_000)
    item = for_sale(**fields)

    response = client.post(EXCHANGE, {"template_id": item.pk, "token": "t" * 22})

    assert response.status_code == status
    assert 'id="coupons-error"' in text(response)
    assert not Coupon.objects.exists()
    assert ledger.member_points_balance(member=shopper) == 1_000


# --- one coupon and its till code -------------------------------------------------------------------------


def test_a_coupon_shows_its_rotating_code_as_qr_barcode_and_digits(client, shopper, shop):
    coupon = issue(make_template(name="满减券", merchant=shop.merchant), shopper)
    minute = (timezone.now() + timedelta(minutes=1)).replace(second=5, microsecond=0)

    with time_machine.travel(minute, tick=False):
        page = text(client.get(f"/m/coupons/{coupon.pk}/"))
        code = re.search(r'data-code="(\d{24})"', page)[1]
        assert codes.coupon_code_check(code=code, caller="test").pk == coupon.pk
        assert page.count("<svg") == 2  # the QR and the barcode, inline
        assert " ".join(code[i:i + 4] for i in range(0, 24, 4)) in page
        refresh_in = float(re.search(r'data-refresh-in="([\d.]+)"', page)[1])
        assert 0 < refresh_in <= 55
        first = client.get(f"/m/coupons/{coupon.pk}/code.json").json()
        assert first["code"] == code
    with time_machine.travel(minute + timedelta(minutes=1), tick=False):
        later = client.get(f"/m/coupons/{coupon.pk}/code.json").json()
    assert later["code"] != code and len(later["code"]) == 24
    assert set(later) == {"code", "code_display", "expires_at", "refresh_in", "qr_svg", "barcode_svg"}


def test_another_shoppers_coupon_is_not_found(client, shopper):
    theirs = issue(make_template(), make_member())

    assert client.get(f"/m/coupons/{theirs.pk}/").status_code == 404
    response = client.get(f"/m/coupons/{theirs.pk}/code.json")
    assert response.status_code == 404 and response.json()["code"] == "coupon_not_found"
    assert client.get(f"/m/coupons/{'9' * 30}/").status_code == 404


def test_a_used_coupon_shows_its_state_and_no_code(client, shopper, shop):
    coupon = issue(make_template(merchant=shop.merchant), shopper)
    coupon_redeem(coupon=coupon, merchant=shop.merchant, store=shop.store, amount_fen=12_000, idempotency_key="t",
                  authorised_by="coupon_code")

    page = text(client.get(f"/m/coupons/{coupon.pk}/"))

    assert 'id="coupon-state"' in page and "data-code" not in page
    response = client.get(f"/m/coupons/{coupon.pk}/code.json")
    assert response.status_code == 409 and response.json()["code"] == "coupon_used"


@pytest.mark.parametrize("state", ["void", "expired", "not_yet"])
def test_a_coupon_that_cannot_be_used_now_shows_no_code(client, shopper, state):
    if state == "not_yet":
        coupon = issue(make_template(**window(-2, 10)), shopper)
    else:
        coupon = issue(make_template(), shopper)
    if state == "void":
        coupon_void(coupon=coupon, reason="test")
    elif state == "expired":
        now = timezone.now()
        Coupon.objects.filter(pk=coupon.pk).update(valid_from=now - timedelta(days=3), valid_until=now - timedelta(days=1))

    page = text(client.get(f"/m/coupons/{coupon.pk}/"))

    assert "data-code" not in page and 'id="coupon-state"' in page
    assert client.get(f"/m/coupons/{coupon.pk}/code.json").status_code == 409


def test_code_json_needs_a_session(client):
    coupon = issue(make_template(), make_member())

    response = client.get(f"/m/coupons/{coupon.pk}/code.json")

    assert response.status_code == 401 and response.json()["code"] == "login_required"


def test_a_banned_shopper_is_logged_out(client, shopper):
    offer = free()
    Member.objects.filter(pk=shopper.pk).update(status=Member.Status.BANNED)

    response = client.post(CLAIM, {"template_id": offer.pk, "token": "t" * 22})

    assert response.status_code == 403
    assert not Coupon.objects.exists()


# --- a claim QR --------------------------------------------------------------------------------------------


def claim_page(template) -> str:
    return f"/m/coupons/claim/{claims.template_claim_code_ensure(template)}/"


def test_an_unknown_claim_code_is_said_so_before_any_login(client):
    response = client.get("/m/coupons/claim/NOSUCHCODE/")

    assert response.status_code == 404


def test_a_claim_qr_claims_its_unlisted_coupon_once(client, shopper):
    template = free(name="扫码券", claimable=False)
    path = claim_page(template)
    page = text(client.get(path))
    assert "扫码券" in page and 'id="claim-submit"' in page
    token = re.search(r'name="token" value="([^"]+)"', page)[1]

    response = client.post(path, {"token": token})
    again = client.post(path, {"token": token})

    coupon = Coupon.objects.get()
    assert response["Location"] == again["Location"] == f"/m/coupons/{coupon.pk}/?new=claimed"
    page = text(client.get(path))
    assert 'id="claim-refused"' in page and 'id="claim-submit"' not in page


@pytest.mark.parametrize("fields", [{"status": CouponTemplate.Status.PAUSED}, window(10, -1), {"points_price": 10}])
def test_a_claim_qr_of_a_coupon_not_on_offer_says_why(client, shopper, fields):
    path = claim_page(free(claimable=False, **fields))

    assert 'id="claim-refused"' in text(client.get(path))
    response = client.post(path, {"token": "t" * 22})
    assert response.status_code == 409 and 'id="claim-error"' in text(response)
    assert not Coupon.objects.exists()


def test_a_claim_qr_post_without_its_token_claims_nothing(client, shopper):
    path = claim_page(free(claimable=False))

    response = client.post(path, {})

    assert response.status_code == 400
    assert not Coupon.objects.exists()


# --- the claim QR's poster, for staff ---------------------------------------------------------------------


def test_staff_print_a_claim_qr_poster(client):
    template = free(name="海报券", claimable=False)
    code = claims.template_claim_code_ensure(template)
    client.force_login(User.objects.create_superuser("boss", "boss@example.com", "pw"))

    response = client.get(f"/m/coupons/claim/{code}/print/?back=/admin/coupons/")

    assert response.status_code == 200
    page = text(response)
    assert "海报券" in page and "<svg" in page and "/admin/coupons/" in page
    assert f"http://testserver/m/coupons/claim/{code}/" in page
    image = client.get(f"/m/coupons/claim/{code}/qr.png")
    assert image.status_code == 200 and image["Content-Type"] == "image/png"
    assert 'href="https://evil.example/"' not in text(client.get(f"/m/coupons/claim/{code}/print/?back=https://evil.example/"))


@pytest.mark.parametrize("as_shopper", [False, True])
def test_the_poster_is_for_staff_only(client, as_shopper):
    code = claims.template_claim_code_ensure(free(claimable=False))
    if as_shopper:
        log_in(client, make_member())

    for path in (f"/m/coupons/claim/{code}/print/", f"/m/coupons/claim/{code}/qr.png"):
        response = client.get(path)
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
