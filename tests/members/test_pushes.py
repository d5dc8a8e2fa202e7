import pytest

from members import pushes
from members.models import InboxMessage, Push
from tests.factories import make_member

pytestmark = pytest.mark.django_db


def send(member, key="points:1"):
    return pushes.push_send(member=member, event="points_earned", event_key=key, title="You earned 10 points", body="Balance 10")


def test_a_push_is_copied_to_the_inbox_and_sent_once_per_event_key(settings, django_capture_on_commit_callbacks):
    settings.O2O_SANDBOX = True
    member = make_member()
    with django_capture_on_commit_callbacks(execute=True):
        first = send(member)
        again = send(member)
    assert first.pk == again.pk
    assert Push.objects.count() == 1 and InboxMessage.objects.filter(member=member).count() == 1
    first.refresh_from_db()
    assert (first.status, first.channel, first.attempts) == (Push.Status.SENT, Push.Channel.SANDBOX, 1)


def test_delivery_is_safe_to_run_twice(settings):
    settings.O2O_SANDBOX = True
    member = make_member()
    push = send(member)
    pushes.push_deliver(push_id=push.pk)
    pushes.push_deliver(push_id=push.pk)
    push.refresh_from_db()
    assert push.attempts == 1 and push.status == Push.Status.SENT


def test_inbox_messages_are_marked_read():
    member = make_member()
    send(member, "a")
    send(member, "b")
    assert pushes.inbox_mark_read(member=member, message_ids=[InboxMessage.objects.first().pk]) == 1
    assert pushes.inbox_mark_read(member=member) == 1
    assert not InboxMessage.objects.filter(read_at__isnull=True).exists()


def test_the_sweep_of_due_pushes_is_scheduled_every_minute_by_the_migrations():
    from django_q.models import Schedule

    schedule = Schedule.objects.get(func="members.tasks.push_deliver_due")
    assert (schedule.schedule_type, schedule.minutes) == (Schedule.MINUTES, 1)


def test_a_new_push_waits_for_its_own_task_before_the_sweep_takes_it():
    push = send(make_member())
    assert push.status == Push.Status.PENDING and push.attempts == 0
    assert push.pk not in pushes.pushes_due()
    assert push.pk in pushes.pushes_due(now=push.next_attempt_at)


def test_mini_program_templates_are_listed_by_event_for_the_subscription_prompt():
    from members.models import PushTemplate

    PushTemplate.objects.create(event="points_earned", channel="miniapp_subscribe", template_id="MP-EARN")
    PushTemplate.objects.create(event="checkin", channel="miniapp_subscribe", template_id="MP-OFF", is_active=False)
    PushTemplate.objects.create(event="checkin", channel="wechat_template", template_id="OA-CHECKIN")
    assert pushes.miniapp_subscribe_templates() == {"points_earned": "MP-EARN"}
