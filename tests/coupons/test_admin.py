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
