"""Coupon test data: templates built directly (staff edit them in the admin), coupons
issued through the service."""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from coupons import codes, services
from coupons.models import Coupon, CouponTemplate
from members.auth import shopper_token_issue
from tests.payments.conftest import api, build_shop, member, other_shop, shop  # noqa: F401 — fixtures

DEFAULTS = {
    CouponTemplate.Kind.CASH_OFF: {"face_value_fen": 2_000, "min_spend_fen": 10_000},
    CouponTemplate.Kind.PERCENT_OFF: {"percent_off_bp": 1_500, "max_discount_fen": 3_000},
    CouponTemplate.Kind.VOUCHER: {"face_value_fen": 5_000},
    CouponTemplate.Kind.GIFT: {"gift_description": "一杯拿铁"},
}


def make_template(*, kind=CouponTemplate.Kind.CASH_OFF, stores=(), **fields) -> CouponTemplate:
    values = {"name": f"{kind} coupon", "kind": kind, **DEFAULTS[kind]}
    if "valid_from" not in fields and "valid_until" not in fields:
        values["valid_days"] = 30
    values.update(fields)
    if values.get("merchant") is not None:
        values.setdefault("funded_by", CouponTemplate.FundedBy.MERCHANT)
    template = CouponTemplate.objects.create(**values)
    template.stores.set(stores)
    return template


def issue(template: CouponTemplate, member, **kwargs) -> Coupon:
    return services.coupon_issue(template=template, member=member, via=kwargs.pop("via", Coupon.Via.ADMIN), **kwargs)


def coupon_code(coupon: Coupon, **kwargs) -> str:
    return codes.coupon_code_issue(coupon=coupon, **kwargs).code


def shopper_client(member) -> Client:
    return Client(headers={"Authorization": f"Bearer {shopper_token_issue(member=member).token}"})


def window(days_before: int, days_after: int) -> dict:
    now = timezone.now()
    return {"valid_from": now - timedelta(days=days_before), "valid_until": now + timedelta(days=days_after)}


@pytest.fixture
def template(shop):
    """A merchant's ¥20 off ¥100, accepted at all its stores."""
    return make_template(merchant=shop.merchant)
