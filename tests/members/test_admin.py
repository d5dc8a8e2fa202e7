import re
import uuid

import pytest
from django.contrib.auth.models import Permission, User
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from members import auth, ledger, services
from members.models import (
    Account,
    Entry,
    Identity,
    Lot,
    Member,
    Merchant,
    MerchantApiKey,
    Plaza,
    PointsTransaction,
    Store,
    Tier,
    Visit,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _english(settings):
    """These tests read English texts; the admin speaks zh-Hans by default (tests/members/test_admin_chinese.py)."""
    settings.LANGUAGE_CODE = "en"

OPENID = "oWx1-openid-0001"
LEDGER_MODELS = [Account, PointsTransaction, Entry, Lot, Visit]


@pytest.fixture
def mall():
    plaza = services.plaza_create(code="wanda-sh", name="Wanda Shanghai", city="Shanghai")
    merchant, store, _key, _raw_key = services.merchant_create(name="Tea House", plaza=plaza, store_code="tea-house")
    member = services.member_create(join_channel=Member.Channel.WECHAT, plaza=plaza, phone="13800138000")
    # No service links identities yet; an identity is plain data, not a ledger row.
    Identity.objects.create(member=member, channel=Identity.Channel.WECHAT_OPENID, external_id=OPENID)
    ledger.points_earn(member=member, store=store, amount_fen=10_000, idempotency_key="test:earn:1")  # 100 points
    ledger.points_grant(member=member, points=50, reason="welcome", idempotency_key="test:grant:1")
    ledger.points_redeem(member=member, store=store, points=30, idempotency_key="test:redeem:1")
    # Visits come from check-in and payment services; a row is enough to show the page.
    Visit.objects.create(
        member=member, plaza=plaza, store=store, kind=Visit.Kind.PURCHASE, amount_fen=10_000,
        occurred_at=member.created_at,
    )
    other = services.member_create(join_channel=Member.Channel.ALIPAY, plaza=plaza, phone="13900139000")
    return {"plaza": plaza, "merchant": merchant, "store": store, "member": member, "other": other}


def url(model, view, *args):
    return reverse(f"admin:members_{model._meta.model_name}_{view}", args=args)


def message_texts(response):
    return [str(m) for m in get_messages(response.wsgi_request)]


def adjust(client, member, *, points, reason, token=None):
    return client.post(
        url(Member, "changelist"),
        {
            "action": "adjust_points",
            "_selected_action": [member.pk],
            "apply": "1",
            "token": token or str(uuid.uuid4()),
            "points": points,
            "reason": reason,
        },
        follow=True,
    )


def balance(member):
    return ledger.member_points_balance(member=member)


@pytest.fixture
def staff_viewer(client):
    """Staff who may look at members but not change them."""
    user = User.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["view_member", "change_member", "view_pointstransaction"]))
    client.force_login(user)
    return client


# --- every page loads -------------------------------------------------------------


@pytest.mark.parametrize("model", [Plaza, Merchant, Store, MerchantApiKey, Tier, Member, *LEDGER_MODELS])
def test_changelist_and_change_page_load_with_data(admin_client, mall, model):
    assert model.objects.exists()
    assert admin_client.get(url(model, "changelist")).status_code == 200
    for obj in model.objects.all()[:3]:
        assert admin_client.get(url(model, "change", obj.pk)).status_code == 200


@pytest.mark.parametrize("model", [Plaza, Store, Tier])
def test_add_page_loads(admin_client, mall, model):
    assert admin_client.get(url(model, "add")).status_code == 200


def test_member_page_shows_balance_identities_lots_and_history(admin_client, mall):
    member = mall["member"]
    response = admin_client.get(url(Member, "change", member.pk))
    content = response.content.decode()
    assert response.context["original"].wallet_balance == 120
    assert OPENID in content
    assert "welcome" in content  # the grant's reason, in the points history
    assert "Tea House" in content  # the shop of the earn and the redemption
    assert reverse("admin:members_member_adjust_points", args=[member.pk]) in content


def test_member_lots_inline_lists_live_lots_first(admin_client, mall):
    member = mall["member"]
    # 120 points in two lots (earn 100, grant 50, redeem 30 took from the first to expire).
    # Spend the rest of the earliest-expiring lot so a used lot sits among live ones.
    first = Lot.objects.filter(member=member).order_by("expires_at", "pk").first()
    ledger.points_redeem(member=member, store=mall["store"], points=first.remaining, idempotency_key="test:redeem:2")
    response = admin_client.get(url(Member, "change", member.pk))
    (lots,) = [f for f in response.context["inline_admin_formsets"] if f.opts.model is Lot]
    remaining = [form.instance.remaining for form in lots.formset.forms]
    assert remaining[0] > 0 and remaining[-1] == 0


def test_member_changelist_queries_do_not_grow_with_members(admin_client, mall):
    with CaptureQueriesContext(connection) as few:
        assert admin_client.get(url(Member, "changelist")).status_code == 200
    tier = Tier.objects.order_by("-threshold_fen").first()
    for i in range(5):
        member = services.member_create(join_channel=Member.Channel.POS, phone=f"1370013700{i}")
        Member.objects.filter(pk=member.pk).update(tier=tier)
    with CaptureQueriesContext(connection) as many:
        assert admin_client.get(url(Member, "changelist")).status_code == 200
    assert len(many) == len(few)


def test_member_changelist_shows_phone_and_balance(admin_client, mall):
    # A superuser reads phones whole (members.roles.phone_visible); other roles: test_roles.py.
    response = admin_client.get(url(Member, "changelist"))
    content = response.content.decode()
    assert "138 0013 8000" in content
    assert "138****8000" not in content
    (member,) = [m for m in response.context["cl"].result_list if m.pk == mall["member"].pk]
    assert member.wallet_balance == 120


# --- search -----------------------------------------------------------------------


@pytest.mark.parametrize("term", ["member_no", "13800138000", "+86 138 0013 8000", OPENID])
def test_member_search_finds_by_number_phone_and_identity(admin_client, mall, term):
    member = mall["member"]
    q = member.member_no if term == "member_no" else term
    response = admin_client.get(url(Member, "changelist"), {"q": q})
    assert [m.pk for m in response.context["cl"].result_list] == [member.pk]


def test_member_search_matches_whole_values_and_prefixes_not_substrings(admin_client, mall):
    member_no = mall["member"].member_no
    response = admin_client.get(url(Member, "changelist"), {"q": member_no[:6]})
    assert mall["member"] in response.context["cl"].result_list
    response = admin_client.get(url(Member, "changelist"), {"q": member_no[3:9]})
    assert mall["member"] not in response.context["cl"].result_list


def test_points_transaction_search_by_member_and_filter_by_merchant(admin_client, mall):
    member = mall["member"]
    response = admin_client.get(url(PointsTransaction, "changelist"), {"q": OPENID})
    assert {t.member_id for t in response.context["cl"].result_list} == {member.pk}
    assert len(response.context["cl"].result_list) == 3
    response = admin_client.get(url(PointsTransaction, "changelist"), {"merchant": mall["merchant"].pk})
    assert sorted(t.kind for t in response.context["cl"].result_list) == ["earn", "redeem"]
    response = admin_client.get(url(PointsTransaction, "changelist"), {"merchant": "tea"})
    assert sorted(t.kind for t in response.context["cl"].result_list) == ["earn", "redeem"]


# --- adjust points ----------------------------------------------------------------


def test_adjust_action_shows_a_form_with_a_fresh_token(admin_client, mall):
    member = mall["member"]
    response = admin_client.post(
        url(Member, "changelist"), {"action": "adjust_points", "_selected_action": [member.pk]}
    )
    assert response.status_code == 200
    assert response.templates[0].name == "admin/members/member/adjust_points.html"
    token = response.context["form"]["token"].value()
    assert uuid.UUID(str(token)).version == 4
    assert not PointsTransaction.objects.filter(kind=PointsTransaction.Kind.ADJUST).exists()


def test_adjust_action_credits_points_with_operator_and_reason(admin_client, mall):
    member = mall["member"]
    response = adjust(admin_client, member, points=25, reason="complaint #12: missing check-in")
    assert response.status_code == 200
    (txn,) = PointsTransaction.objects.filter(kind=PointsTransaction.Kind.ADJUST)
    assert (txn.member_id, txn.points, txn.reason) == (member.pk, 25, "complaint #12: missing check-in")
    assert txn.operator == User.objects.get(username="admin")
    assert balance(member) == 145
    assert any(f"{member.member_no}: +25 points" in m for m in message_texts(response))


def test_adjust_submitted_twice_with_the_same_token_adjusts_once(admin_client, mall):
    member = mall["member"]
    token = str(uuid.uuid4())
    adjust(admin_client, member, points=-20, reason="duplicate purchase", token=token)
    adjust(admin_client, member, points=-20, reason="duplicate purchase", token=token)
    assert PointsTransaction.objects.filter(kind=PointsTransaction.Kind.ADJUST).count() == 1
    assert balance(member) == 100


def test_adjust_more_than_the_balance_is_refused_with_its_code(admin_client, mall):
    member = mall["member"]
    response = adjust(admin_client, member, points=-500, reason="fraud")
    assert response.status_code == 200  # the form again, with the error
    assert response.templates[0].name == "admin/members/member/adjust_points.html"
    assert "insufficient_points" in response.content.decode()
    assert balance(member) == 120
    assert not PointsTransaction.objects.filter(kind=PointsTransaction.Kind.ADJUST).exists()


@pytest.mark.parametrize(
    ("points", "reason", "code"),
    [(10, "", "reason_required"), (10, "   ", "reason_required"), (0, "x", "invalid_amount")],
)
def test_adjust_without_reason_or_with_zero_points_writes_nothing(admin_client, mall, points, reason, code):
    member = mall["member"]
    response = adjust(admin_client, member, points=points, reason=reason)
    assert any(code in m for m in message_texts(response))
    assert balance(member) == 120
    assert not PointsTransaction.objects.filter(kind=PointsTransaction.Kind.ADJUST).exists()


def test_adjust_points_that_are_not_an_integer_is_a_form_error(admin_client, mall):
    response = adjust(admin_client, mall["member"], points="1.5", reason="typo")
    assert response.context["form"].errors["points"]
    assert not PointsTransaction.objects.filter(kind=PointsTransaction.Kind.ADJUST).exists()


def test_adjust_button_on_member_page(admin_client, mall):
    member = mall["member"]
    page = reverse("admin:members_member_adjust_points", args=[member.pk])
    token = admin_client.get(page).context["form"]["token"].value()
    response = admin_client.post(page, {"apply": "1", "token": token, "points": 7, "reason": "goodwill"})
    assert response.status_code == 302
    assert response.url == url(Member, "change", member.pk)
    admin_client.post(page, {"apply": "1", "token": token, "points": 7, "reason": "goodwill"})
    assert balance(member) == 127
    assert PointsTransaction.objects.filter(kind=PointsTransaction.Kind.ADJUST).count() == 1


def test_staff_without_the_adjust_points_permission_cannot_adjust(staff_viewer, mall):
    member = mall["member"]
    assert staff_viewer.get(url(Member, "changelist")).status_code == 200
    response = adjust(staff_viewer, member, points=1000, reason="me")
    assert response.status_code == 200
    page = reverse("admin:members_member_adjust_points", args=[member.pk])
    assert staff_viewer.get(page).status_code == 403
    form = {"apply": "1", "token": str(uuid.uuid4()), "points": 1000, "reason": "me"}
    assert staff_viewer.post(page, form).status_code == 403
    assert balance(member) == 120
    assert not PointsTransaction.objects.filter(kind=PointsTransaction.Kind.ADJUST).exists()
    assert "Adjust points" not in staff_viewer.get(url(Member, "change", member.pk)).content.decode()


# --- the ledger is read-only ------------------------------------------------------


@pytest.mark.parametrize("model", LEDGER_MODELS)
def test_ledger_models_refuse_add_change_and_delete(admin_client, mall, model):
    obj = model.objects.first()
    assert admin_client.post(url(model, "add"), {}).status_code == 403
    assert admin_client.post(url(model, "delete", obj.pk), {"post": "yes"}).status_code == 403
    assert admin_client.post(url(model, "change", obj.pk), {}).status_code == 403
    assert model.objects.filter(pk=obj.pk).exists()


def test_ledger_changelist_offers_no_delete_action(admin_client, mall):
    response = admin_client.get(url(PointsTransaction, "changelist"))
    assert response.context["action_form"] is None or "delete_selected" not in dict(
        response.context["action_form"].fields["action"].choices
    )


def test_member_profile_is_editable_but_not_phone_or_status(admin_client, mall):
    member = mall["member"]
    page = admin_client.get(url(Member, "change", member.pk))
    data = {"nickname": "Lily", "gender": "f", "birthday": "1990-05-01", "tier": Tier.objects.get(code="gold").pk}
    data |= {"phone": "+8613700137000", "status": Member.Status.BANNED}  # read-only: ignored
    data |= {"audit_reason": "the shopper asked at the desk"}  # a change to a member says why (core.audit_admin)
    for inline in page.context["inline_admin_formsets"]:
        management = inline.formset.management_form
        data |= {management.add_prefix(name): value for name, value in management.initial.items()}
    assert admin_client.post(url(Member, "change", member.pk), data).status_code == 302
    member.refresh_from_db()
    assert (member.nickname, member.gender, member.tier.code) == ("Lily", "f", "gold")
    assert (member.phone, member.status) == ("+8613800138000", Member.Status.ACTIVE)


def test_members_cannot_be_added_or_deleted_in_the_admin(admin_client, mall):
    member = mall["member"]
    assert admin_client.get(url(Member, "add")).status_code == 403
    assert admin_client.post(url(Member, "delete", member.pk), {"post": "yes"}).status_code == 403


# --- tenants and tiers ------------------------------------------------------------


def test_tier_is_editable_and_its_constraints_are_form_errors(admin_client, mall):
    tier = Tier.objects.get(code="gold")
    # Typed in yuan and as a multiplier (core.admin_fields), stored in fen and basis points.
    data = {"code": "gold", "name": "金卡", "threshold_fen": "20000", "multiplier_bp": "1.6", "audit_reason": "2027 tiers"}
    assert admin_client.post(url(Tier, "change", tier.pk), data).status_code == 302
    tier.refresh_from_db()
    assert (tier.threshold_fen, tier.multiplier_bp) == (2_000_000, 16000)
    response = admin_client.post(url(Tier, "change", tier.pk), {**data, "multiplier_bp": "0.9"})
    assert response.status_code == 200 and response.context["adminform"].form.errors
    tier.refresh_from_db()
    assert tier.multiplier_bp == 16000


def test_used_tier_cannot_be_deleted(admin_client, mall):
    tier = mall["member"].tier
    assert admin_client.post(url(Tier, "delete", tier.pk), {"post": "yes"}).status_code == 403
    assert Tier.objects.filter(pk=tier.pk).exists()


def test_add_merchant_creates_store_accounts_and_shows_the_key_once(admin_client, mall):
    response = admin_client.post(
        url(Merchant, "add"),
        {"name": "Noodle Bar", "plaza": mall["plaza"].pk, "earn_rate_bp": "2", "store_code": "noodle-bar"},  # percent
        follow=True,
    )
    merchant = Merchant.objects.get(name="Noodle Bar")
    assert merchant.earn_rate_bp == 200
    assert Store.objects.get(code="noodle-bar").merchant == merchant
    assert Account.objects.filter(merchant=merchant).count() == 2
    (raw_key,) = re.findall(r"mk_\S+?(?=</code>)", " ".join(message_texts(response)))
    assert auth.merchant_api_key_verify(raw_key=raw_key).merchant == merchant


def test_add_merchant_with_a_taken_store_code_shows_the_code(admin_client, mall):
    response = admin_client.post(
        url(Merchant, "add"), {"name": "Copycat", "plaza": mall["plaza"].pk, "store_code": "tea-house"}
    )
    assert response.status_code == 200
    assert "store_code_taken" in str(response.context["form"].non_field_errors())
    assert not Merchant.objects.filter(name="Copycat").exists()


def test_issue_api_key_shows_a_key_that_verifies_and_revoke_makes_it_fail(admin_client, mall):
    merchant = mall["merchant"]
    response = admin_client.post(
        url(Merchant, "changelist"), {"action": "issue_api_key", "_selected_action": [merchant.pk]}, follow=True
    )
    (raw_key,) = re.findall(r"mk_\S+?(?=</code>)", " ".join(message_texts(response)))
    key = auth.merchant_api_key_verify(raw_key=raw_key)
    assert key is not None and key.merchant == merchant
    assert MerchantApiKey.objects.filter(merchant=merchant).count() == 2

    response = admin_client.post(
        url(MerchantApiKey, "changelist"), {"action": "revoke", "_selected_action": [key.pk]}, follow=True
    )
    assert any("Revoked 1 key" in m for m in message_texts(response))
    assert auth.merchant_api_key_verify(raw_key=raw_key) is None
    assert MerchantApiKey.objects.filter(merchant=merchant, revoked_at__isnull=True).count() == 1


def test_api_keys_are_read_only_and_never_show_their_hash(admin_client, mall):
    key = MerchantApiKey.objects.first()
    response = admin_client.get(url(MerchantApiKey, "change", key.pk))
    assert key.key_hash not in response.content.decode()
    assert admin_client.post(url(MerchantApiKey, "add"), {}).status_code == 403
    assert admin_client.post(url(MerchantApiKey, "delete", key.pk), {"post": "yes"}).status_code == 403
    merchant_page = admin_client.get(url(Merchant, "change", mall["merchant"].pk)).content.decode()
    assert key.prefix in merchant_page and key.key_hash not in merchant_page
