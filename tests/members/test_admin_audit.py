"""Staff changes to members, tiers and points are audited; the shopper sees a description, not the reason."""

import uuid

import pytest
from django.conf import settings
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.messages import get_messages
from django.db import IntegrityError, transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import override

from core import audit
from core.audit_admin import REASON_FIELD
from core.models import AuditEntry
from members import ledger, web_auth
from members.auth import shopper_token_issue
from members.models import Member, PointsTransaction, Tier
from members.public_notes import PublicNote
from tests.core.admin_forms import change_form_data
from tests.factories import assert_ledger_invariants, make_member

pytestmark = pytest.mark.django_db

STAFF_REASON = "补登小票 receipt 20261127"


@pytest.fixture
def member():
    member = make_member(nickname="Ada")
    ledger.points_grant(member=member, points=100, reason="welcome gift", idempotency_key=f"t:welcome:{member.pk}")
    return member


def changelist():
    return reverse("admin:members_member_changelist")


def adjust_page(member):
    return reverse("admin:members_member_adjust_points", args=[member.pk])


def adjust(client, member, *, token, points=30, reason=STAFF_REASON, **extra):
    data = {"action": "adjust_points", ACTION_CHECKBOX_NAME: [member.pk], "apply": "1", "token": token, "points": points,
            "reason": reason, **extra}
    return client.post(changelist(), data)


def messages_of(response):
    return [(m.level_tag, str(m)) for m in get_messages(response.wsgi_request)]


def adjustments(member):
    return PointsTransaction.objects.filter(member=member, kind=PointsTransaction.Kind.ADJUST)


def first_adjustment(member):
    return adjustments(member).order_by("pk").first()


def wallet(member):
    return ledger.member_points_balance(member=member)


# --- Back and submit again -------------------------------------------------------------------


def test_the_same_rendered_form_submitted_twice_adjusts_once_and_says_so(admin_client, member):
    token = str(uuid.uuid4())

    first = adjust(admin_client, member, token=token)
    again = adjust(admin_client, member, token=token)  # Back, then submit the same form

    assert first.status_code == again.status_code == 302
    assert adjustments(member).count() == 1 and wallet(member) == 130
    assert [level for level, _ in messages_of(first)] == ["success"]
    level, text = messages_of(again)[-1]  # after the first's, still queued (its redirect was not followed)
    assert level == "warning" and str(first_adjustment(member).pk) in text
    assert AuditEntry.objects.filter(action=AuditEntry.Action.ADJUST).count() == 1
    assert_ledger_invariants()


def test_the_member_page_form_replays_too_and_back_can_show_it_again(admin_client, member):
    page = admin_client.get(adjust_page(member))
    token = page.context["form"]["token"].value()
    # The browser may keep this page for Back (no "no-store"): Back shows this token again.
    assert "no-store" not in page["Cache-Control"] and "private" in page["Cache-Control"]
    data = {"apply": "1", "token": token, "points": 25, "reason": STAFF_REASON}

    for _ in range(2):
        assert admin_client.post(adjust_page(member), data).status_code == 302

    assert adjustments(member).count() == 1 and wallet(member) == 125


def test_the_same_token_with_other_values_changes_nothing(admin_client, member):
    token = str(uuid.uuid4())
    adjust(admin_client, member, token=token, points=30)

    response = adjust(admin_client, member, token=token, points=300)

    assert response.status_code == 200  # the form again, with the message
    assert adjustments(member).count() == 1 and wallet(member) == 130


def test_a_fresh_form_repeating_the_same_adjustment_asks_first(admin_client, member):
    adjust(admin_client, member, token=str(uuid.uuid4()))

    asked = adjust(admin_client, member, token=str(uuid.uuid4()))

    assert asked.status_code == 200 and adjustments(member).count() == 1
    assert messages_of(asked)[-1][0] == "warning"
    assert 'type="checkbox" name="repeat"' in asked.content.decode()

    confirmed = adjust(admin_client, member, token=str(uuid.uuid4()), repeat="on")

    assert confirmed.status_code == 302 and adjustments(member).count() == 2 and wallet(member) == 160


# --- audited ----------------------------------------------------------------------------------


def test_an_adjustment_is_audited_with_who_member_points_and_reason(admin_client, admin_user, member):
    adjust(admin_client, member, token=str(uuid.uuid4()), points=-40)

    [entry] = audit.audited_entries(obj=member)
    txn = adjustments(member).get()
    assert (entry.action, entry.actor, entry.reason) == (AuditEntry.Action.ADJUST, admin_user, STAFF_REASON)
    assert entry.changes == {"points": [100, 60], "transaction": [None, txn.pk]}
    # Shown on the member's own history page.
    history = admin_client.get(reverse("admin:members_member_history", args=[member.pk]))
    assert STAFF_REASON in history.content.decode()


def test_a_member_change_is_audited_with_its_reason(admin_client, admin_user, member):
    url = reverse("admin:members_member_change", args=[member.pk])
    page = admin_client.get(url)

    response = admin_client.post(url, change_form_data(page, nickname="Lily", **{REASON_FIELD: "shopper asked at desk 3"}))

    assert response.status_code == 302
    [entry] = audit.audited_entries(obj=member)
    assert entry.changes == {"nickname": ["Ada", "Lily"]}
    assert (entry.actor, entry.reason) == (admin_user, "shopper asked at desk 3")


def test_a_member_change_without_a_reason_is_refused(admin_client, member):
    url = reverse("admin:members_member_change", args=[member.pk])
    page = admin_client.get(url)

    response = admin_client.post(url, change_form_data(page, nickname="Lily"))

    assert response.status_code == 200 and REASON_FIELD in response.context["adminform"].form.errors
    member.refresh_from_db()
    assert member.nickname == "Ada" and not AuditEntry.objects.exists()


def test_a_tier_change_is_audited_in_readable_units(admin_client, admin_user):
    tier = Tier.objects.get(code="gold")
    url = reverse("admin:members_tier_change", args=[tier.pk])
    page = admin_client.get(url)
    old_name = tier.name

    response = admin_client.post(url, change_form_data(page, name="金卡 Gold", **{REASON_FIELD: "2027 naming"}))

    assert response.status_code == 302, response.context["adminform"].form.errors
    [entry] = audit.audited_entries(obj=tier)
    assert entry.changes == {"name": [old_name, "金卡 Gold"]} and entry.reason == "2027 naming"


# --- what the shopper reads -------------------------------------------------------------------


def shopper_history_api(member, language="zh-hans"):
    client = Client(headers={"Authorization": f"Bearer {shopper_token_issue(member=member).token}", "Accept-Language": language})
    return client.get("/api/mp/v1/points/history/").json()["results"]


def shopper_history_page(member, language="zh-hans"):
    client = Client(headers={"Accept-Language": language})
    session = client.session
    session[web_auth.SESSION_MEMBER] = member.pk
    session.save()
    return client.get(reverse("h5:history"))


def test_the_shopper_sees_the_description_not_the_staff_reason(admin_client, member):
    adjust(admin_client, member, token=str(uuid.uuid4()))
    with override("zh-hans"):
        generic = str(PublicNote.SERVICE_DESK.label)

    page = shopper_history_page(member)
    [api_entry, _welcome] = shopper_history_api(member)

    assert STAFF_REASON not in page.content.decode() and generic in page.content.decode()
    assert page.context["rows"][0]["reason"] == generic
    assert api_entry["kind"] == "adjust" and api_entry["reason"] == generic
    assert STAFF_REASON not in str(shopper_history_api(member))


def test_a_chosen_description_is_shown_in_the_shoppers_language(admin_client, member):
    adjust(admin_client, member, token=str(uuid.uuid4()), public_note_choice=PublicNote.LATE_RECEIPT)

    assert adjustments(member).get().public_note == PublicNote.LATE_RECEIPT
    english = "Points for a purchase added later"
    assert shopper_history_page(member, "en").context["rows"][0]["reason"] == english
    assert shopper_history_api(member, "en")[0]["reason"] == english
    with override("zh-hans"):
        chinese = str(PublicNote.LATE_RECEIPT.label)
    assert shopper_history_api(member)[0]["reason"] == chinese


def test_a_typed_description_is_shown_as_typed(admin_client, member):
    adjust(admin_client, member, token=str(uuid.uuid4()), public_note_choice="other", public_note_text="生日礼遇补发")

    assert shopper_history_api(member)[0]["reason"] == "生日礼遇补发"
    assert STAFF_REASON not in shopper_history_page(member).content.decode()


def test_other_without_text_is_a_form_error(admin_client, member):
    response = adjust(admin_client, member, token=str(uuid.uuid4()), public_note_choice="other")

    assert response.status_code == 200 and "public_note_text" in response.context["form"].errors
    assert not adjustments(member).exists()


def test_the_customer_service_cap_still_applies_and_nothing_is_audited(client, member):
    from django.contrib.auth.models import Group, User

    from members import roles

    agent = User.objects.create_user("cs-1", password="pw-123456-x", is_staff=True)
    agent.groups.add(Group.objects.get(name=roles.CUSTOMER_SERVICE))
    client.force_login(agent)

    response = adjust(client, member, token=str(uuid.uuid4()), points=settings.CS_ADJUST_MAX_POINTS + 1)

    assert response.status_code == 200 and not adjustments(member).exists()
    assert not AuditEntry.objects.filter(action=AuditEntry.Action.ADJUST).exists()


def test_the_ledger_still_refuses_an_adjustment_without_a_reason(admin_user, member):
    with pytest.raises(IntegrityError), transaction.atomic():
        PointsTransaction.objects.create(
            idempotency_key="raw:adjust", request_hash="x", kind=PointsTransaction.Kind.ADJUST, member=member, points=1,
            operator=admin_user, reason="", public_note="shown", created_at=timezone.now(),
        )
    assert not adjustments(member).exists()


def test_points_adjust_in_code_audits_once_and_marks_replays(admin_user, member):
    first = ledger.points_adjust(member=member, points=5, operator=admin_user, reason="r", idempotency_key="k1",
                                 public_note=PublicNote.GOODWILL)
    again = ledger.points_adjust(member=member, points=5, operator=admin_user, reason="r", idempotency_key="k1",
                                 public_note=PublicNote.GOODWILL)

    assert (first.replayed, again.replayed, again.pk) == (False, True, first.pk)
    assert AuditEntry.objects.filter(action=AuditEntry.Action.ADJUST).count() == 1
    assert Member.objects.get(pk=member.pk).wallet.balance == 105
