"""The admin in Chinese for Chinese staff (issue 13, point 3): translated names and labels
(zh-Hans by default, English on request), money typed and shown in yuan and multipliers
as ×1.5 while stored as integers, the member list with name, number, phone masked by
role, tier and balance, and a prefix search that stays on indexes."""

import uuid

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import reverse

from members import ledger, roles, services
from members.models import Member, Merchant, Tier

pytestmark = pytest.mark.django_db

ZH = {"HTTP_ACCEPT_LANGUAGE": "zh-hans"}
EN = {"HTTP_ACCEPT_LANGUAGE": "en"}


@pytest.fixture(autouse=True)
def _roles():
    assert roles.roles_sync() == []


@pytest.fixture
def mall():
    plaza = services.plaza_create(code="wanda-sh", name="万达广场", city="上海")
    merchant, store, _key, _raw = services.merchant_create(name="茶馆", plaza=plaza, store_code="tea-house")
    member = services.member_create(join_channel=Member.Channel.WECHAT, plaza=plaza, phone="13800138000")
    Member.objects.filter(pk=member.pk).update(nickname="王小明")
    member.refresh_from_db()
    ledger.points_grant(member=member, points=1_234, reason="welcome", idempotency_key="zh:grant:1")
    other = services.member_create(join_channel=Member.Channel.ALIPAY, plaza=plaza, phone="13900139000")
    Member.objects.filter(pk=other.pk).update(nickname="李雷")
    return {"plaza": plaza, "merchant": merchant, "store": store, "member": member, "other": other}


def staff(role: str | None = None) -> Client:
    user = User.objects.create_user(f"staff-{uuid.uuid4().hex[:8]}", password="pw", is_staff=True, is_superuser=role is None)
    if role:
        user.groups.add(Group.objects.get(name=role))
    client = Client()
    client.force_login(user)
    return client


def url(model, view, *args):
    return reverse(f"admin:members_{model._meta.model_name}_{view}", args=args)


def found(response) -> set[int]:
    return {m.pk for m in response.context["cl"].result_list}


# --- language -------------------------------------------------------------------


def test_member_list_is_in_chinese_by_default_and_english_on_request(mall):
    client = staff()
    content = client.get(url(Member, "changelist"), **ZH).content.decode()
    for text in ["会员号", "昵称", "手机号", "等级", "积分余额", "最近到访", "调整所选会员的积分", "王小明"]:
        assert text in content, text
    content = client.get(url(Member, "changelist"), **EN).content.decode()
    for text in ["Member number", "Nickname", "Phone number", "Points balance", "Adjust points of selected members"]:
        assert text in content, text
    assert "会员号" not in content


def test_member_page_is_in_chinese(mall):
    content = staff().get(url(Member, "change", mall["member"].pk), **ZH).content.decode()
    for text in ["会员号", "积分余额", "30 天内到期", "最近积分明细", "注册渠道", "微信公众号", "近 12 个月消费", "¥0.00"]:
        assert text in content, text


def test_default_language_is_chinese_without_a_header(mall):
    content = staff().get(url(Tier, "changelist")).content.decode()
    assert "会员等级" in content and "积分倍数" in content


# --- money and multipliers ---------------------------------------------------------


def test_tier_list_shows_yuan_and_multipliers(mall):
    Tier.objects.filter(code="gold").update(threshold_fen=1_234_56, multiplier_bp=15000)
    content = staff().get(url(Tier, "changelist"), **ZH).content.decode()
    assert "¥1,234.56" in content
    assert "×1.5" in content
    assert "123456" not in content and "15000" not in content


def tier_post(client, tier, **data):
    # A change to a tier states its reason for the audit log (core.audit_admin).
    form = {"code": tier.code, "name": tier.name, "threshold_fen": "20000", "multiplier_bp": "1.5", "audit_reason": "test", **data}
    return client.post(url(Tier, "change", tier.pk), form, **EN)


def test_tier_form_shows_yuan_and_takes_exact_yuan(mall):
    client, tier = staff(), Tier.objects.get(code="gold")
    Tier.objects.filter(pk=tier.pk).update(threshold_fen=500_050, multiplier_bp=12500)
    form = client.get(url(Tier, "change", tier.pk), **ZH).content.decode()
    assert 'value="5000.5"' in form and 'value="1.25"' in form
    assert tier_post(client, tier, threshold_fen="12.34", multiplier_bp="1.5").status_code == 302
    tier.refresh_from_db()
    assert (tier.threshold_fen, tier.multiplier_bp) == (1234, 15000)
    assert tier_post(client, tier, threshold_fen="¥20,000.10", multiplier_bp="×1.2345").status_code == 302
    tier.refresh_from_db()
    assert (tier.threshold_fen, tier.multiplier_bp) == (2_000_010, 12345)


@pytest.mark.parametrize(
    "field, typed, error",
    [
        ("threshold_fen", "12.345", "At most 2 decimal places."),
        ("threshold_fen", "-1", "Enter a value that is not negative."),
        ("threshold_fen", "abc", "Enter a number, such as 12.34."),
        ("threshold_fen", "1e5", "Enter a number, such as 12.34."),
        ("multiplier_bp", "1.23456", "At most 4 decimal places."),
        ("multiplier_bp", "-1.5", "Enter a value that is not negative."),
    ],
)
def test_tier_form_refuses_what_is_not_exact(mall, field, typed, error):
    client, tier = staff(), Tier.objects.get(code="gold")
    before = (tier.threshold_fen, tier.multiplier_bp)
    response = tier_post(client, tier, **{field: typed})
    assert response.status_code == 200
    assert error in response.context["adminform"].form.errors[field]
    tier.refresh_from_db()
    assert (tier.threshold_fen, tier.multiplier_bp) == before


def test_tier_form_errors_are_in_chinese(mall):
    client, tier = staff(), Tier.objects.get(code="gold")
    form = {"code": tier.code, "name": tier.name, "threshold_fen": "12.345", "multiplier_bp": "1.5", "audit_reason": "test"}
    response = client.post(url(Tier, "change", tier.pk), form, **ZH)
    assert "最多 2 位小数。" in response.content.decode()


def test_merchant_earn_rate_is_a_percentage(mall):
    client, merchant = staff(), mall["merchant"]
    Merchant.objects.filter(pk=merchant.pk).update(earn_rate_bp=150, max_sale_fen=5_000_00)
    content = client.get(reverse("admin:members_merchant_changelist"), **ZH).content.decode()
    assert "1.5%" in content
    form = client.get(reverse("admin:members_merchant_change", args=[merchant.pk]), **ZH).content.decode()
    assert 'value="1.5"' in form and 'value="5000"' in form


# --- the member list: name, number, phone by role, tier, balance ----------------------


@pytest.mark.parametrize(
    ("role", "whole"),
    [(None, True), (roles.OPERATOR, True), (roles.CUSTOMER_SERVICE, True), (roles.PLAZA_MANAGER, False)],
)
def test_member_list_masks_the_phone_only_for_roles_that_must_not_see_it(mall, role, whole):
    client = staff(role)
    if role == roles.PLAZA_MANAGER:
        from members.models import StaffPlaza

        user = User.objects.get(pk=client.session["_auth_user_id"])
        StaffPlaza.objects.create(user=user, plaza=mall["plaza"])
    response = client.get(url(Member, "changelist"), **ZH)
    content = response.content.decode()
    assert mall["member"].member_no in content and "王小明" in content
    assert ("138 0013 8000" in content) is whole
    assert ("138****8000" in content) is not whole
    (row,) = [m for m in response.context["cl"].result_list if m.pk == mall["member"].pk]
    assert row.wallet_balance == 1_234
    assert "1234" in content.replace(",", "")


# --- search -----------------------------------------------------------------------


@pytest.mark.parametrize("term", ["member_no_prefix", "1380013", "+861380013", "王小", "王"])
def test_search_finds_members_by_prefix(mall, term):
    q = mall["member"].member_no[:7] if term == "member_no_prefix" else term
    response = staff().get(url(Member, "changelist"), {"q": q})
    assert mall["member"].pk in found(response)
    assert mall["other"].pk not in found(response)


@pytest.mark.parametrize("term", ["小明", "0013800", "138"])
def test_search_does_not_match_substrings_or_short_number_prefixes(mall, term):
    assert found(staff().get(url(Member, "changelist"), {"q": term})) == set()


def test_search_still_finds_whole_values(mall):
    client = staff()
    assert found(client.get(url(Member, "changelist"), {"q": mall["member"].member_no})) == {mall["member"].pk}
    assert found(client.get(url(Member, "changelist"), {"q": "138 0013 8000"})) == {mall["member"].pk}


def test_phone_prefixes_are_not_searchable_by_roles_that_see_masked_phones(mall):
    """Digit by digit, a prefix search would reveal a masked number."""
    from members.models import StaffPlaza

    client = staff(roles.PLAZA_MANAGER)
    StaffPlaza.objects.create(user=User.objects.get(pk=client.session["_auth_user_id"]), plaza=mall["plaza"])
    assert found(client.get(url(Member, "changelist"), {"q": "1380013"})) == set()
    # The whole number (which they already know) still finds the member, as before.
    assert found(client.get(url(Member, "changelist"), {"q": "13800138000"})) == {mall["member"].pk}
    assert found(staff(roles.CUSTOMER_SERVICE).get(url(Member, "changelist"), {"q": "1380013"})) == {mall["member"].pk}


def test_prefix_search_is_bounded(mall, monkeypatch):
    from members.admin import base

    monkeypatch.setattr(base, "PREFIX_SEARCH_LIMIT", 3)
    plaza = mall["plaza"]
    for i in range(6):
        member = services.member_create(join_channel=Member.Channel.H5, plaza=plaza, phone=f"1370000000{i}")
        Member.objects.filter(pk=member.pk).update(nickname=f"张{i}")
    response = staff().get(url(Member, "changelist"), {"q": "张"})
    assert len(found(response)) == 3


# --- layout -------------------------------------------------------------------------


def test_admin_pages_load_the_mall_stylesheet(mall):
    content = staff().get(url(Member, "changelist"), **ZH).content.decode()
    assert "members/admin.css" in content
