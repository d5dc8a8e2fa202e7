"""The outbox in the admin: read-only, searchable, with a resend action for staff
allowed to use it; the inbox and subscriptions read-only; templates editable."""

import pytest
from django.contrib.auth.models import Permission, User
from django.contrib.messages import get_messages
from django.urls import reverse

from members import pushes
from members.models import Identity, InboxMessage, MiniappSubscription, Push, PushTemplate
from tests.factories import make_member

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _english(settings):
    """These tests read English texts; the admin speaks zh-Hans by default (tests/members/test_admin_chinese.py)."""
    settings.LANGUAGE_CODE = "en"


def url(model, view, *args):
    return reverse(f"admin:members_{model._meta.model_name}_{view}", args=args)


@pytest.fixture
def outbox(settings):
    settings.O2O_SANDBOX = True
    member = make_member()
    Identity.objects.create(member=member, channel=Identity.Channel.WECHAT_OPENID, external_id="o-admin-1", is_following=True)
    other = make_member()
    PushTemplate.objects.create(event="points_earned", channel="wechat_template", template_id="T", fields={"first": "{title}"})
    sent = pushes.push_send(member=member, event="points_earned", event_key="points_earned:1", title="你获得了 38 积分", body="b")
    pushes.push_deliver(push_id=sent.pk)
    failed = pushes.push_send(member=other, event="checkin", event_key="checkin:9:p:2026-01-01", title="签到成功", body="b")
    Push.objects.filter(pk=failed.pk).update(status=Push.Status.FAILED, attempts=8, last_error="gave up")
    pushes.miniapp_subscription_grant(member=member, template_id="MP-1")
    return {"member": member, "other": other, "sent": Push.objects.get(pk=sent.pk), "failed": Push.objects.get(pk=failed.pk)}


def listed(response) -> set[int]:
    return {obj.pk for obj in response.context["cl"].result_list}


@pytest.mark.parametrize("model", [Push, InboxMessage, PushTemplate, MiniappSubscription])
def test_changelist_and_change_page_load(admin_client, outbox, model):
    assert admin_client.get(url(model, "changelist")).status_code == 200
    for obj in model.objects.all()[:3]:
        assert admin_client.get(url(model, "change", obj.pk)).status_code == 200


def test_sandbox_outbox_shows_what_would_have_been_sent(admin_client, outbox):
    page = admin_client.get(url(Push, "change", outbox["sent"].pk)).content.decode()
    assert "Sandbox outbox" in page and "o-admin-1" in page


@pytest.mark.parametrize("model", [Push, InboxMessage, MiniappSubscription])
def test_outbox_inbox_and_subscriptions_are_read_only(admin_client, outbox, model):
    obj = model.objects.first()
    assert admin_client.post(url(model, "add"), {}).status_code == 403
    assert admin_client.post(url(model, "change", obj.pk), {}).status_code == 403
    assert admin_client.post(url(model, "delete", obj.pk), {"post": "yes"}).status_code == 403
    assert model.objects.filter(pk=obj.pk).exists()


def test_outbox_filters_by_status_channel_and_event(admin_client, outbox):
    sent, failed = outbox["sent"], outbox["failed"]
    assert listed(admin_client.get(url(Push, "changelist"), {"status__exact": "failed"})) == {failed.pk}
    assert listed(admin_client.get(url(Push, "changelist"), {"channel__exact": "sandbox"})) == {sent.pk}
    assert listed(admin_client.get(url(Push, "changelist"), {"event": "checkin"})) == {failed.pk}


@pytest.mark.parametrize("term", ["member_no", "event_key", "openid"])
def test_outbox_search_finds_by_member_or_event_key(admin_client, outbox, term):
    sent = outbox["sent"]
    value = {"member_no": outbox["member"].member_no, "event_key": sent.event_key, "openid": "o-admin-1"}[term]
    assert listed(admin_client.get(url(Push, "changelist"), {"q": value})) == {sent.pk}
    assert listed(admin_client.get(url(Push, "changelist"), {"q": value[:-1]})) == set()


def test_resend_action_queues_failed_pushes_and_leaves_sent_ones(admin_client, outbox, django_capture_on_commit_callbacks):
    sent, failed = outbox["sent"], outbox["failed"]
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            url(Push, "changelist"), {"action": "resend", "_selected_action": [sent.pk, failed.pk]}, follow=True
        )
    texts = [str(m) for m in get_messages(response.wsgi_request)]
    assert "1 push queued to be sent again." in texts
    assert any("1 left alone" in text for text in texts)
    failed.refresh_from_db()
    assert (failed.status, failed.channel, failed.attempts) == (Push.Status.SENT, Push.Channel.SANDBOX, 1)
    sent_again = Push.objects.get(pk=sent.pk)
    assert (sent_again.sent_at, sent_again.attempts) == (sent.sent_at, sent.attempts)


def test_staff_without_the_resend_permission_cannot_resend(client, outbox):
    user = User.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["view_push"]))
    client.force_login(user)
    failed = outbox["failed"]

    page = client.get(url(Push, "changelist"))
    assert page.status_code == 200
    assert page.context["action_form"] is None or "resend" not in dict(page.context["action_form"].fields["action"].choices)
    client.post(url(Push, "changelist"), {"action": "resend", "_selected_action": [failed.pk]})

    failed.refresh_from_db()
    assert failed.status == Push.Status.FAILED


def test_template_is_edited_in_the_admin_and_its_fields_checked(admin_client, outbox):
    data = {"event": "checkin", "channel": "wechat_template", "template_id": "TPL-CHECKIN", "page": "", "is_active": "on"}
    bad = admin_client.post(url(PushTemplate, "add"), data | {"fields": '{"first": 3}'})
    assert bad.status_code == 200 and "must be text" in bad.content.decode()
    good = admin_client.post(url(PushTemplate, "add"), data | {"fields": '{"first": "{title}", "remark": {"value": "{body}", "color": "#173177"}}'})
    assert good.status_code == 302
    template = PushTemplate.objects.get(event="checkin")
    assert template.fields["remark"] == {"value": "{body}", "color": "#173177"}
    duplicate = admin_client.post(url(PushTemplate, "add"), data | {"fields": "{}"})
    assert duplicate.status_code == 200 and not PushTemplate.objects.filter(event="checkin").exclude(pk=template.pk).exists()
