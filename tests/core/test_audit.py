"""The staff audit: every admin change recorded (who, when, old → new, why), and unchangeable."""

import pytest
from django.contrib import admin
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import User
from django.db import IntegrityError, connection, transaction
from django.urls import reverse

from core import audit
from core.audit_admin import REASON_FIELD, AuditedAdminMixin
from core.models import AuditEntry
from coupons.models import Campaign, Coupon
from members.models import StaffPlaza, Store, Tier
from tests.core.admin_forms import change_form_data
from tests.coupons.conftest import issue, make_template
from tests.factories import make_member, make_plaza, make_store

pytestmark = pytest.mark.django_db


def change_url(obj, view="change"):
    return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_{view}", args=[obj.pk])


def entries(obj):
    return list(audit.audited_entries(obj=obj))


def post_change(client, obj, **changes):
    page = client.get(change_url(obj))
    assert page.status_code == 200
    return client.post(change_url(obj), change_form_data(page, **changes))


# --- every admin is audited ----------------------------------------------------------------


def test_every_model_admin_on_the_site_is_audited():
    unaudited = [
        model._meta.label for model, model_admin in admin.site._registry.items()
        if model is not AuditEntry and not isinstance(model_admin, AuditedAdminMixin)
    ]
    assert unaudited == []
    assert len(admin.site._registry) > 20  # the whole project registered, not an empty site


def test_an_admin_registered_later_is_audited_too():
    class PlainAdmin(admin.ModelAdmin):
        pass

    site = type(admin.site._wrapped if hasattr(admin.site, "_wrapped") else admin.site)(name="audit_probe")
    site.register(StaffPlaza, PlainAdmin)
    assert isinstance(site._registry[StaffPlaza], AuditedAdminMixin)
    assert isinstance(site._registry[StaffPlaza], PlainAdmin)


# --- changes, with what and why --------------------------------------------------------------


def test_merchant_change_records_old_and_new_and_the_reason(admin_client, admin_user):
    merchant = make_store().merchant
    old_name = merchant.name

    response = post_change(admin_client, merchant, name="Tea House 2", **{REASON_FIELD: "renamed on the lease 2027-01"})

    assert response.status_code == 302, response.context["adminform"].form.errors
    [entry] = entries(merchant)
    assert (entry.action, entry.actor, entry.actor_username) == (AuditEntry.Action.CHANGE, admin_user, admin_user.username)
    assert entry.changes == {"name": [old_name, "Tea House 2"]}
    assert entry.reason == "renamed on the lease 2027-01"
    assert entry.object_repr == "Tea House 2"


def test_a_change_to_a_merchant_without_a_reason_is_refused(admin_client):
    merchant = make_store().merchant

    response = post_change(admin_client, merchant, name="Nameless")

    assert response.status_code == 200
    assert REASON_FIELD in response.context["adminform"].form.errors
    merchant.refresh_from_db()
    assert merchant.name != "Nameless" and entries(merchant) == []


def test_a_reason_is_optional_where_the_site_does_not_require_one(admin_client):
    plaza = make_plaza()
    old_name = plaza.name

    response = post_change(admin_client, plaza, name="万达广场（新）")

    assert response.status_code == 302, response.context["adminform"].form.errors
    [entry] = entries(plaza)
    assert entry.changes["name"] == [old_name, "万达广场（新）"] and entry.reason == ""


def test_a_related_object_is_recorded_by_name(admin_client):
    store = make_store()
    before, other = str(store.plaza), make_plaza()

    response = post_change(admin_client, store, plaza=other.pk, **{REASON_FIELD: "moved"})

    assert response.status_code == 302, response.context["adminform"].form.errors
    [entry] = entries(store)
    assert entry.changes["plaza"] == [before, str(other)] and entry.reason == "moved"


def test_coupon_template_change_is_recorded(admin_client):
    template = make_template(name="¥20 off")

    response = post_change(admin_client, template, name="¥25 off", **{REASON_FIELD: "spring sale"})

    assert response.status_code == 302, response.context["adminform"].form.errors
    [entry] = entries(template)
    assert entry.changes["name"] == ["¥20 off", "¥25 off"] and entry.reason == "spring sale"


def test_campaign_change_is_recorded(admin_client):
    template = make_template()
    page = admin_client.get(reverse("admin:coupons_campaign_add"))
    data = change_form_data(page, name="Welcome back", template=template.pk, message_title="Hi", message_body="Come back",
                            starts_at_0="2027-01-01", starts_at_1="10:00:00")
    data.pop(REASON_FIELD, None)
    response = admin_client.post(reverse("admin:coupons_campaign_add"), data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    campaign = Campaign.objects.get(name="Welcome back")
    [added] = entries(campaign)
    assert added.action == AuditEntry.Action.ADD and added.changes["name"] == [None, "Welcome back"]
    assert added.changes["template"] == [None, str(template)]

    response = post_change(admin_client, campaign, max_targets="500", **{REASON_FIELD: "budget cut"})

    assert response.status_code == 302, response.context["adminform"].form.errors
    changed = entries(campaign)[0]
    assert changed.action == AuditEntry.Action.CHANGE and changed.reason == "budget cut"
    assert changed.changes["max_targets"][1] == 500


def test_inline_changes_are_recorded_on_the_parent(admin_client):
    store = make_store()
    merchant = store.merchant
    page = admin_client.get(change_url(merchant))
    prefix = next(f.formset.prefix for f in page.context["inline_admin_formsets"] if f.formset.model is type(store))

    response = admin_client.post(
        change_url(merchant), change_form_data(page, **{f"{prefix}-0-name": "Front desk", REASON_FIELD: "signage"})
    )

    assert response.status_code == 302
    [entry] = entries(merchant)
    assert entry.changes == {f"{type(store)._meta.verbose_name} #{store.pk}.name": [store.name, "Front desk"]}


# --- actions, deletions -------------------------------------------------------------------------


def test_an_admin_action_records_each_selected_object(admin_client, admin_user):
    member = make_member()
    template = make_template(per_member_limit=2)
    first, second = issue(template, member), issue(template, member)

    admin_client.post(
        reverse("admin:coupons_coupon_changelist"), {"action": "void", ACTION_CHECKBOX_NAME: [first.pk, second.pk]}
    )

    assert Coupon.objects.filter(status=Coupon.Status.VOID).count() == 2
    for coupon in (first, second):
        [entry] = entries(coupon)
        assert (entry.action, entry.actor) == (AuditEntry.Action.ACTION, admin_user)
        assert entry.changes["action"][1]  # the action's description


def test_an_action_page_that_only_asks_records_nothing(admin_client):
    member = make_member()
    response = admin_client.post(
        reverse("admin:members_member_changelist"), {"action": "adjust_points", ACTION_CHECKBOX_NAME: [member.pk]}
    )
    assert response.status_code == 200
    assert not AuditEntry.objects.exists()


def test_deleting_records_what_the_object_held(admin_client, admin_user):
    tier = Tier.objects.create(code="diamond", name="钻石卡", threshold_fen=9_000_000, multiplier_bp=30_000)

    response = admin_client.post(change_url(tier, "delete"), {"post": "yes"})

    assert response.status_code == 302 and not Tier.objects.filter(code="diamond").exists()
    entry = AuditEntry.objects.get(action=AuditEntry.Action.DELETE)
    assert (entry.object_id, entry.object_repr, entry.actor) == (str(tier.pk), str(tier), admin_user)
    assert entry.changes["threshold_fen"] == [9_000_000, None] and entry.changes["code"] == ["diamond", None]


def test_a_bulk_delete_records_each_object(admin_client):
    staff = [StaffPlaza.objects.create(user=User.objects.create_user(f"mgr{n}"), plaza=make_plaza()) for n in range(2)]

    admin_client.post(
        reverse("admin:members_staffplaza_changelist"),
        {"action": "delete_selected", ACTION_CHECKBOX_NAME: [s.pk for s in staff], "post": "yes"},
    )

    assert not StaffPlaza.objects.exists()
    deleted = AuditEntry.objects.filter(action=AuditEntry.Action.DELETE).values_list("object_id", flat=True)
    assert sorted(deleted) == sorted(str(s.pk) for s in staff)


def test_a_password_change_is_recorded_without_the_password(admin_client):
    user = User.objects.create_user("cashier", password="old-secret-1")
    url = reverse("admin:auth_user_password_change", args=[user.pk])

    response = admin_client.post(url, {"password1": "N3w-secret-pass", "password2": "N3w-secret-pass", "usable_password": "true"})

    assert response.status_code == 302
    [entry] = entries(user)
    assert "N3w-secret-pass" not in str(entry.changes) and entry.changes["message"][1]


# --- visible ------------------------------------------------------------------------------------


def test_the_objects_history_page_lists_its_audit_entries(admin_client):
    merchant = make_store().merchant
    post_change(admin_client, merchant, name="Renamed", **{REASON_FIELD: "a reason to read"})

    page = admin_client.get(change_url(merchant, "history"))

    assert page.status_code == 200
    content = page.content.decode()
    assert "Renamed" in content and "a reason to read" in content and "→" in content


def test_the_audit_log_lists_and_shows_entries(admin_client):
    merchant = make_store().merchant
    post_change(admin_client, merchant, name="Listed", **{REASON_FIELD: "listing"})
    entry = AuditEntry.objects.get()

    assert admin_client.get(reverse("admin:core_auditentry_changelist")).status_code == 200
    filtered = admin_client.get(
        reverse("admin:core_auditentry_changelist") + f"?content_type__id__exact={entry.content_type_id}&object_id={merchant.pk}"
    )
    assert filtered.status_code == 200 and "listing" in filtered.content.decode()
    detail = admin_client.get(change_url(entry))
    assert detail.status_code == 200 and "Listed" in detail.content.decode()


# --- unchangeable -------------------------------------------------------------------------------


def audit_entry(admin_user):
    return audit.audit_record(actor=admin_user, action=AuditEntry.Action.CHANGE, obj=make_plaza(), changes={"name": ["a", "b"]},
                              reason="why")


def test_a_superuser_cannot_add_change_or_delete_entries_in_the_admin(admin_client, admin_user):
    entry = audit_entry(admin_user)

    assert admin_client.post(change_url(entry), {"reason": "rewritten"}).status_code == 403
    assert admin_client.post(change_url(entry, "delete"), {"post": "yes"}).status_code == 403
    assert admin_client.post(reverse("admin:core_auditentry_add"), {"reason": "forged"}).status_code == 403
    bulk = admin_client.post(
        reverse("admin:core_auditentry_changelist"), {"action": "delete_selected", ACTION_CHECKBOX_NAME: [entry.pk], "post": "yes"}
    )
    assert bulk.status_code in (200, 302)

    entry.refresh_from_db()
    assert (entry.reason, AuditEntry.objects.count()) == ("why", 1)


def test_entries_refuse_updates_and_deletes_in_code(admin_user):
    entry = audit_entry(admin_user)
    entry.reason = "rewritten"
    with pytest.raises(AuditEntry.Immutable):
        entry.save()
    with pytest.raises(AuditEntry.Immutable):
        entry.delete()
    with pytest.raises(AuditEntry.Immutable):
        AuditEntry.objects.filter(pk=entry.pk).update(reason="rewritten")
    with pytest.raises(AuditEntry.Immutable):
        AuditEntry.objects.all().delete()
    assert AuditEntry.objects.get().reason == "why"


def test_the_database_refuses_an_update(admin_user):
    entry = audit_entry(admin_user)
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE core_auditentry SET reason = 'rewritten' WHERE id = %s", [entry.pk])
    assert AuditEntry.objects.get().reason == "why"


@pytest.mark.django_db(transaction=True)
def test_deleting_a_user_keeps_the_entries_with_the_name():
    user = User.objects.create_user("temp-staff")
    entry = audit_entry(user)

    user.delete()

    entry = AuditEntry.objects.get(pk=entry.pk)
    assert (entry.actor, entry.actor_username, entry.reason) == (None, "temp-staff", "why")


# --- readable values --------------------------------------------------------------------------------


def test_choices_read_as_their_labels_and_secrets_are_hidden():
    assert audit.readable(Coupon, "status", Coupon.Status.VOID) == str(Coupon.Status.VOID.label)
    assert audit.readable(User, "password", "pbkdf2$…") == audit.SECRET
    plaza = make_plaza()
    assert audit.readable(Store, "plaza", plaza.pk) == str(plaza)
