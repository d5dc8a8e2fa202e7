"""The coupons admin: templates edited, coupons issued and voided through the services."""

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse

from coupons.models import Coupon, CouponEvent
from tests.coupons.conftest import issue, make_template
from tests.factories import make_member

pytestmark = pytest.mark.django_db


def test_issue_form_issues_once_to_the_member(admin_client, admin_user, member):
    template = make_template(per_member_limit=5)
    url = reverse("admin:coupons_coupontemplate_issue", args=[template.pk])
    assert admin_client.get(url).status_code == 200

    for _ in range(2):  # a double submit of one form
        response = admin_client.post(url, {"member_no": member.member_no, "token": "form-1", "issue": "1"})
        assert response.status_code == 302

    coupon = Coupon.objects.get()
    assert (coupon.member, coupon.issued_via) == (member, Coupon.Via.ADMIN)
    assert coupon.events.get(kind=CouponEvent.Kind.ISSUED).operator == admin_user


def test_issue_form_shows_why_it_was_refused(admin_client, member):
    template = make_template(total_quota=1)
    issue(template, make_member())
    url = reverse("admin:coupons_coupontemplate_issue", args=[template.pk])

    response = admin_client.post(url, {"member_no": member.member_no, "token": "form-2", "issue": "1"})

    assert response.status_code == 200
    assert "All coupons of this kind have been issued." in response.content.decode()
    assert Coupon.objects.count() == 1


def test_void_action_voids_unused_coupons_and_reports_the_rest(admin_client, member):
    template = make_template(per_member_limit=2)
    unused, used = issue(template, member), issue(template, member)
    Coupon.objects.filter(pk=used.pk).update(status=Coupon.Status.VOID)

    response = admin_client.post(
        reverse("admin:coupons_coupon_changelist"), {"action": "void", ACTION_CHECKBOX_NAME: [unused.pk, used.pk]}, follow=True
    )

    assert response.status_code == 200
    assert Coupon.objects.get(pk=unused.pk).status == Coupon.Status.VOID
    assert "coupon_void" in response.content.decode()


def test_admin_pages_render(admin_client, member):
    template = make_template()
    coupon = issue(template, member)

    for url in (
        reverse("admin:coupons_coupontemplate_changelist"), reverse("admin:coupons_coupontemplate_change", args=[template.pk]),
        reverse("admin:coupons_coupontemplate_add"), reverse("admin:coupons_coupon_changelist") + f"?q={member.member_no}",
        reverse("admin:coupons_coupon_change", args=[coupon.pk]),
    ):
        assert admin_client.get(url).status_code == 200, url


def test_the_claim_qr_link_makes_a_code_once_and_opens_the_poster(admin_client):
    template = make_template(claimable=True)

    first = admin_client.get(reverse("admin:coupons_coupontemplate_claim_qr", args=[template.pk]))
    template.refresh_from_db()
    code = template.claim_code
    second = admin_client.get(reverse("admin:coupons_coupontemplate_claim_qr", args=[template.pk]))
    template.refresh_from_db()

    assert code and len(code) >= 16 and template.claim_code == code
    assert first.status_code == second.status_code == 302
    assert first["Location"].startswith(reverse("coupons:claim-print", args=[code]))
    poster = admin_client.get(first["Location"])
    assert poster.status_code == 200 and reverse("coupons:claim-png", args=[code]) in poster.content.decode()


def test_a_template_sold_for_points_has_no_claim_qr(admin_client):
    template = make_template(points_price=300)
    response = admin_client.get(reverse("admin:coupons_coupontemplate_claim_qr", args=[template.pk]))
    assert response.status_code == 404
    template.refresh_from_db()
    assert template.claim_code is None


def test_resetting_the_claim_code_retires_the_printed_posters(admin_client, member):
    template = make_template(claimable=True, claim_code="OLDPOSTERCODE2345678")
    admin_client.post(reverse("admin:coupons_coupontemplate_changelist"),
                      {"action": "claim_code_reset", ACTION_CHECKBOX_NAME: [template.pk]})
    template.refresh_from_db()
    assert template.claim_code and template.claim_code != "OLDPOSTERCODE2345678"
    assert admin_client.get(reverse("coupons:claim-code", args=["OLDPOSTERCODE2345678"])).status_code == 404


def test_staff_take_back_a_points_mall_coupon_and_its_points_come_back(admin_client, member):
    from coupons import services
    from members import ledger
    from tests.payments.conftest import grant

    template = make_template(points_price=300)
    grant(member, 1_000)
    bought = services.coupon_exchange(member=member, template=template, idempotency_key="k")
    given = issue(make_template(), member)

    response = admin_client.post(
        reverse("admin:coupons_coupon_changelist"),
        {"action": "refund_points", ACTION_CHECKBOX_NAME: [bought.pk, given.pk]}, follow=True,
    )

    assert response.status_code == 200
    assert ledger.member_points_balance(member=member) == 1_000
    assert Coupon.objects.get(pk=bought.pk).status == Coupon.Status.VOID
    assert Coupon.objects.get(pk=given.pk).status == Coupon.Status.ISSUED
    assert "coupon_not_bought_with_points" in response.content.decode()
