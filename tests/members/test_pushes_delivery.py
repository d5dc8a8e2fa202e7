"""Delivery of the outbox against the local fake WeChat / Alipay server: the channel
chosen, what each platform receives, retries with backoff, giving up, unfollows, the
daily cap, the sandbox, resend, and never sending one push twice."""

import json
import threading
from datetime import timedelta
from unittest import mock

import pytest
import time_machine
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from members import pushes, tasks
from members.models import Identity, InboxMessage, MiniappSubscription, Push, PushTemplate
from tests.factories import make_member
from tests.fakes.platform_server import (
    Reply,
    alipay_request_signature_valid,
    alipay_signed_response,
    json_reply,
)

pytestmark = pytest.mark.django_db

OPENID = "o-follower-1"
MINI_OPENID = "o-mini-1"
ALIPAY_USER_ID = "2088000000000001"
TEMPLATE_SEND = "/cgi-bin/message/template/send"
CUSTOM_SEND = "/cgi-bin/message/custom/send"
SUBSCRIBE_SEND = "/cgi-bin/message/subscribe/send"
ALIPAY_GATEWAY = "/gateway.do"
ALIPAY_RESPONSE_KEY = "alipay_open_public_message_custom_send_response"
WECHAT_OK = json_reply({"errcode": 0, "errmsg": "ok", "msgid": 200228332})
FIELDS = {"first": "{title}", "keyword1": "{points}", "keyword2": {"value": "{balance}", "color": "#173177"}, "remark": "{body}"}




@pytest.fixture
def fake(platform_server, app_keys, alipay_keys):
    """Every platform configured and pointed at the fake server; no sandbox."""
    with override_settings(
        **platform_server.settings(),
        O2O_SANDBOX=False,
        WECHAT_APP_ID="wx-oa",
        WECHAT_APP_SECRET="oa-secret",
        WECHAT_MINIAPP_ID="wx-mini",
        WECHAT_MINIAPP_SECRET="mini-secret",
        ALIPAY_APP_ID="2021000000000001",
        ALIPAY_APP_PRIVATE_KEY=app_keys.private_pem,
        ALIPAY_PUBLIC_KEY=alipay_keys.public_pem,
        PLATFORM_TIMEOUT_SECONDS=2,
    ):
        platform_server.script("/cgi-bin/token", json_reply({"access_token": "TOKEN-1", "expires_in": 7200}))
        yield platform_server
    assert platform_server.errors == []


def alipay_gateway(app_keys, alipay_keys, payload=None):
    """The gateway: answers only POSTs signed with the app key, signing its answer."""
    payload = payload or {"code": "10000", "msg": "Success"}

    def script(request):
        if not alipay_request_signature_valid(request.form, app_keys.public_pem):
            return json_reply({"error_response": {"code": "40002", "sub_code": "isv.invalid-signature"}})
        return Reply(body=alipay_signed_response(ALIPAY_RESPONSE_KEY, payload, alipay_keys.private_pem))

    return script


def replies(*answers: Reply):
    """A script answering each request with the next of ``answers``, the last one forever."""
    answers = list(answers)

    def script(request):
        return answers.pop(0) if len(answers) > 1 else answers[0]

    return script


def later(delta: timedelta):
    return time_machine.travel(timezone.now() + delta)


def follower(member, *, openid=OPENID, inbound_ago: timedelta | None = None, following=True) -> Identity:
    return Identity.objects.create(
        member=member, channel=Identity.Channel.WECHAT_OPENID, external_id=openid, is_following=following,
        last_inbound_at=None if inbound_ago is None else timezone.now() - inbound_ago,
    )


def miniapp_user(member, *, openid=MINI_OPENID) -> Identity:
    return Identity.objects.create(member=member, channel=Identity.Channel.MINIAPP_OPENID, external_id=openid)


def alipay_follower(member, *, following=True) -> Identity:
    return Identity.objects.create(
        member=member, channel=Identity.Channel.ALIPAY_USER_ID, external_id=ALIPAY_USER_ID, is_following=following
    )


def wechat_template(event="points_earned", template_id="TPL-EARN", **fields) -> PushTemplate:
    return PushTemplate.objects.create(
        event=event, channel=PushTemplate.Channel.WECHAT_TEMPLATE, template_id=template_id, fields=FIELDS, **fields
    )


def miniapp_template(event="points_earned", template_id="MP-TPL-EARN", page="pages/inbox/index") -> PushTemplate:
    return PushTemplate.objects.create(
        event=event, channel=PushTemplate.Channel.MINIAPP_SUBSCRIBE, template_id=template_id,
        fields={"thing1": "{title}", "number2": "{points}"}, page=page,
    )


def queue(member, key="points_earned:1", **kwargs) -> Push:
    fields = {
        "event": "points_earned", "title": "你获得了 38 积分", "body": "在星巴克消费 ¥38.00，当前积分 138。",
        "data": {"points": 38, "balance": 138, "plaza": "万达广场"},
    } | kwargs
    return pushes.push_send(member=member, event_key=key, **fields)


def deliver(push: Push) -> Push:
    pushes.push_deliver(push_id=push.pk)
    push.refresh_from_db()
    return push


def run_sweep_at(delta: timedelta) -> int:
    with later(delta):
        return tasks.push_deliver_due()


# --- the channel chosen, and what the platform receives -----------------------------------


def test_follower_gets_a_template_message_rendered_from_the_configured_fields(fake):
    fake.script(TEMPLATE_SEND, WECHAT_OK)
    member = make_member()
    follower(member, inbound_ago=timedelta(hours=1))
    wechat_template()

    push = deliver(queue(member))

    assert (push.status, push.channel, push.attempts) == (Push.Status.SENT, Push.Channel.WECHAT_TEMPLATE, 1)
    assert push.recipient == f"wechat_openid:{OPENID}" and push.sent_at is not None
    [request] = fake.requests_to(TEMPLATE_SEND)
    assert request.param("access_token") == "TOKEN-1"
    assert request.json() == {
        "touser": OPENID,
        "template_id": "TPL-EARN",
        "data": {
            "first": {"value": "你获得了 38 积分"},
            "keyword1": {"value": "38"},
            "keyword2": {"value": "138", "color": "#173177"},
            "remark": {"value": "在星巴克消费 ¥38.00，当前积分 138。"},
        },
    }
    assert push.payload["template_id"] == "TPL-EARN"
    assert fake.requests_to(CUSTOM_SEND) == []


def test_template_message_carries_the_web_link_and_the_mini_program_page(fake):
    fake.script(TEMPLATE_SEND, WECHAT_OK)
    member = make_member()
    follower(member)
    wechat_template(page="pages/points/index")

    deliver(queue(member, link="https://mall.example.com/m/points/"))

    body = fake.requests_to(TEMPLATE_SEND)[0].json()
    assert body["url"] == "https://mall.example.com/m/points/"
    assert body["miniprogram"] == {"appid": "wx-mini", "pagepath": "pages/points/index"}


def test_inactive_template_is_not_used(fake):
    member = make_member()
    follower(member)
    wechat_template(is_active=False)

    push = deliver(queue(member))

    assert (push.status, push.channel) == (Push.Status.SKIPPED, Push.Channel.INBOX)
    assert fake.requests_to(TEMPLATE_SEND) == []


def test_follower_who_wrote_within_48_hours_gets_a_customer_service_text(fake):
    fake.script(CUSTOM_SEND, WECHAT_OK)
    member = make_member()
    follower(member, inbound_ago=timedelta(hours=47))

    push = deliver(queue(member))

    assert (push.status, push.channel) == (Push.Status.SENT, Push.Channel.WECHAT_CUSTOMER_SERVICE)
    [request] = fake.requests_to(CUSTOM_SEND)
    assert request.json() == {
        "touser": OPENID, "msgtype": "text", "text": {"content": "你获得了 38 积分\n在星巴克消费 ¥38.00，当前积分 138。"},
    }


def test_follower_silent_for_more_than_48_hours_gets_no_customer_service_text(fake):
    fake.script(CUSTOM_SEND, WECHAT_OK)
    member = make_member()
    follower(member, inbound_ago=timedelta(hours=49))

    push = deliver(queue(member))

    assert (push.status, push.channel) == (Push.Status.SKIPPED, Push.Channel.INBOX)
    assert fake.requests_to(CUSTOM_SEND) == []
    assert InboxMessage.objects.filter(member=member, push=push).exists()


def test_template_refused_as_unfollowed_marks_the_follower_gone_and_sends_nothing_else(fake):
    fake.script(TEMPLATE_SEND, json_reply({"errcode": 43004, "errmsg": "require subscribe"}))
    fake.script(CUSTOM_SEND, WECHAT_OK)
    member = make_member()
    identity = follower(member, inbound_ago=timedelta(hours=1))
    wechat_template()

    push = deliver(queue(member))

    assert (push.status, push.channel) == (Push.Status.SKIPPED, Push.Channel.INBOX)
    assert "43004" in push.last_error
    assert len(fake.requests_to(TEMPLATE_SEND)) == 1 and fake.requests_to(CUSTOM_SEND) == []
    identity.refresh_from_db()
    assert identity.is_following is False


def test_template_refused_for_this_person_falls_back_to_customer_service_at_once(fake):
    fake.script(TEMPLATE_SEND, json_reply({"errcode": 47003, "errmsg": "argument invalid! data.keyword1.value invalid"}))
    fake.script(CUSTOM_SEND, WECHAT_OK)
    member = make_member()
    follower(member, inbound_ago=timedelta(hours=1))
    wechat_template()

    push = deliver(queue(member))

    assert (push.status, push.channel, push.attempts) == (Push.Status.SENT, Push.Channel.WECHAT_CUSTOMER_SERVICE, 1)
    assert "47003" in push.last_error
    assert len(fake.requests_to(CUSTOM_SEND)) == 1


def test_mini_program_subscribe_message_is_sent_where_granted_and_uses_one_grant(fake):
    fake.script(SUBSCRIBE_SEND, WECHAT_OK)
    member = make_member()
    miniapp_user(member)
    miniapp_template()
    pushes.miniapp_subscription_grant(member=member, template_id="MP-TPL-EARN", count=2)

    push = deliver(queue(member))

    assert (push.status, push.channel) == (Push.Status.SENT, Push.Channel.MINIAPP_SUBSCRIBE)
    assert push.recipient == f"miniapp_openid:{MINI_OPENID}"
    [request] = fake.requests_to(SUBSCRIBE_SEND)
    assert request.json() == {
        "touser": MINI_OPENID,
        "template_id": "MP-TPL-EARN",
        "page": "pages/inbox/index",
        "data": {"thing1": {"value": "你获得了 38 积分"}, "number2": {"value": "38"}},
    }
    assert [r.param("appid") for r in fake.requests_to("/cgi-bin/token")] == ["wx-mini"]
    assert MiniappSubscription.objects.get(member=member).remaining == 1


def test_mini_program_user_without_a_grant_left_gets_nothing(fake):
    fake.script(SUBSCRIBE_SEND, WECHAT_OK)
    member = make_member()
    miniapp_user(member)
    miniapp_template()
    pushes.miniapp_subscription_grant(member=member, template_id="MP-TPL-EARN")

    first, second = deliver(queue(member, "k:1")), deliver(queue(member, "k:2"))

    assert first.channel == Push.Channel.MINIAPP_SUBSCRIBE
    assert (second.status, second.channel) == (Push.Status.SKIPPED, Push.Channel.INBOX)
    assert len(fake.requests_to(SUBSCRIBE_SEND)) == 1
    assert MiniappSubscription.objects.get(member=member).remaining == 0


def test_mini_program_refusal_for_lack_of_subscription_zeroes_the_grant(fake, app_keys, alipay_keys):
    fake.script(SUBSCRIBE_SEND, json_reply({"errcode": 43101, "errmsg": "user refuse to accept the msg"}))
    fake.script(ALIPAY_GATEWAY, alipay_gateway(app_keys, alipay_keys))
    member = make_member()
    miniapp_user(member)
    alipay_follower(member)
    miniapp_template()
    pushes.miniapp_subscription_grant(member=member, template_id="MP-TPL-EARN", count=3)

    push = deliver(queue(member))

    assert (push.status, push.channel) == (Push.Status.SENT, Push.Channel.ALIPAY)
    assert MiniappSubscription.objects.get(member=member).remaining == 0


def test_alipay_follower_gets_a_service_window_message(fake, app_keys, alipay_keys):
    fake.script(ALIPAY_GATEWAY, alipay_gateway(app_keys, alipay_keys))
    member = make_member(join_channel="alipay")
    alipay_follower(member)

    push = deliver(queue(member))

    assert (push.status, push.channel) == (Push.Status.SENT, Push.Channel.ALIPAY)
    assert push.recipient == f"alipay_user_id:{ALIPAY_USER_ID}"
    [request] = fake.requests_to(ALIPAY_GATEWAY)
    form = request.form
    assert form["method"] == "alipay.open.public.message.custom.send"
    assert alipay_request_signature_valid(form, app_keys.public_pem)
    assert json.loads(form["biz_content"]) == {
        "to_user_id": ALIPAY_USER_ID, "msg_type": "text", "chat": "0",
        "text": {"content": "你获得了 38 积分\n在星巴克消费 ¥38.00，当前积分 138。"},
    }


def test_an_alipay_open_id_follower_gets_the_message_addressed_by_open_id(fake, app_keys, alipay_keys):
    """Alipay apps created since 2023 know their users by an open_id, not a user_id."""
    fake.script(ALIPAY_GATEWAY, alipay_gateway(app_keys, alipay_keys))
    member = make_member(join_channel="alipay")
    open_id = "074a1CcTG1LelxKe4xQC0zgNdId0nxi95b5lsNpazWYoCo5"
    Identity.objects.create(
        member=member, channel=Identity.Channel.ALIPAY_OPEN_ID, external_id=open_id, is_following=True,
        last_inbound_at=timezone.now(),
    )

    push = deliver(queue(member))

    assert (push.status, push.channel) == (Push.Status.SENT, Push.Channel.ALIPAY)
    [request] = fake.requests_to(ALIPAY_GATEWAY)
    body = json.loads(request.form["biz_content"])
    assert body["open_id"] == open_id and "to_user_id" not in body


def test_alipay_refusal_leaves_the_push_in_the_inbox_without_retrying(fake, app_keys, alipay_keys):
    refusal = {"code": "40004", "msg": "Business Failed", "sub_code": "USER_NOT_FOLLOW", "sub_msg": "用户未关注"}
    fake.script(ALIPAY_GATEWAY, alipay_gateway(app_keys, alipay_keys, refusal))
    member = make_member(join_channel="alipay")
    alipay_follower(member)

    push = deliver(queue(member))

    assert (push.status, push.channel) == (Push.Status.SKIPPED, Push.Channel.INBOX)
    assert "USER_NOT_FOLLOW" in push.last_error
    assert run_sweep_at(timedelta(days=1)) == 0


def test_best_channel_wins_when_a_member_has_several(fake, app_keys, alipay_keys):
    fake.script(TEMPLATE_SEND, WECHAT_OK)
    fake.script(ALIPAY_GATEWAY, alipay_gateway(app_keys, alipay_keys))
    member = make_member()
    follower(member)
    alipay_follower(member)
    wechat_template()

    push = deliver(queue(member))

    assert push.channel == Push.Channel.WECHAT_TEMPLATE
    assert fake.requests_to(ALIPAY_GATEWAY) == []


@pytest.mark.parametrize("channel", [Identity.Channel.WECHAT_OPENID, Identity.Channel.ALIPAY_USER_ID])
def test_unfollowed_member_is_not_sent_but_keeps_the_inbox_copy(fake, channel):
    member = make_member()
    Identity.objects.create(
        member=member, channel=channel, external_id="someone", is_following=False, last_inbound_at=timezone.now()
    )
    wechat_template()

    push = deliver(queue(member))

    assert (push.status, push.channel) == (Push.Status.SKIPPED, Push.Channel.INBOX)
    assert fake.requests == []
    message = InboxMessage.objects.get(push=push)
    assert (message.member, message.title) == (member, "你获得了 38 积分")


def test_member_reached_through_no_channel_gets_the_inbox_alone(fake):
    member = make_member(join_channel="pos")

    push = deliver(queue(member))

    assert (push.status, push.channel, push.last_error) == (Push.Status.SKIPPED, Push.Channel.INBOX, "")
    assert fake.requests == [] and InboxMessage.objects.filter(push=push).exists()


def test_pushes_to_a_merged_member_reach_the_member_it_was_merged_into(fake):
    from members.identity import member_merge

    fake.script(TEMPLATE_SEND, WECHAT_OK)
    older, newer = make_member(), make_member()
    follower(newer)
    wechat_template()
    member_merge(source=newer, target=older, reason="test")
    newer.refresh_from_db()

    push = deliver(queue(newer))

    assert push.channel == Push.Channel.WECHAT_TEMPLATE
    assert fake.requests_to(TEMPLATE_SEND)[0].json()["touser"] == OPENID


# --- the daily cap ------------------------------------------------------------------------


def test_daily_cap_keeps_the_pushes_past_it_in_the_inbox(fake, settings):
    settings.PUSH_DAILY_CAP = 2
    fake.script(TEMPLATE_SEND, WECHAT_OK)
    member = make_member()
    follower(member)
    wechat_template()

    sent = [deliver(queue(member, f"k:{i}")) for i in range(3)]

    assert [p.status for p in sent] == [Push.Status.SENT, Push.Status.SENT, Push.Status.SKIPPED]
    assert sent[2].channel == Push.Channel.INBOX and "daily cap" in sent[2].last_error
    assert len(fake.requests_to(TEMPLATE_SEND)) == 2
    assert InboxMessage.objects.filter(member=member).count() == 3
    # Another member is not held back by this one's cap.
    other = make_member()
    follower(other, openid="o-other")
    assert deliver(queue(other, "other:1")).status == Push.Status.SENT


def test_daily_cap_starts_again_the_next_local_day(fake, settings):
    settings.PUSH_DAILY_CAP = 1
    fake.script(TEMPLATE_SEND, WECHAT_OK)
    member = make_member()
    follower(member)
    wechat_template()
    assert deliver(queue(member, "k:1")).status == Push.Status.SENT
    assert deliver(queue(member, "k:2")).status == Push.Status.SKIPPED

    with later(timedelta(days=1)):
        tomorrow = deliver(queue(member, "k:3"))

    assert tomorrow.status == Push.Status.SENT


def test_pushes_kept_in_the_inbox_do_not_count_against_the_cap(fake, settings):
    settings.PUSH_DAILY_CAP = 1
    fake.script(TEMPLATE_SEND, WECHAT_OK)
    member = make_member()
    identity = follower(member, following=False)
    wechat_template()
    assert deliver(queue(member, "k:1")).channel == Push.Channel.INBOX
    Identity.objects.filter(pk=identity.pk).update(is_following=True)

    assert deliver(queue(member, "k:2")).status == Push.Status.SENT


# --- retries --------------------------------------------------------------------------------


def test_push_that_fails_twice_then_succeeds_is_delivered_exactly_once(fake):
    fake.script(
        TEMPLATE_SEND,
        replies(json_reply({"errmsg": "busy"}, status=500), json_reply({"errcode": -1, "errmsg": "system error"}), WECHAT_OK),
    )
    member = make_member()
    follower(member)
    wechat_template()

    push = deliver(queue(member))
    assert (push.status, push.attempts) == (Push.Status.PENDING, 1)
    first_wait = push.next_attempt_at - timezone.now()
    assert timedelta(seconds=55) < first_wait <= timedelta(seconds=66)
    assert "500" in push.last_error

    # Not due yet: neither the sweep nor a stray task sends it early.
    assert run_sweep_at(timedelta(seconds=10)) == 0
    assert deliver(push).attempts == 1

    assert run_sweep_at(timedelta(seconds=70)) == 1
    push.refresh_from_db()
    assert (push.status, push.attempts) == (Push.Status.PENDING, 2)
    assert "-1" in push.last_error
    # The wait doubles.
    assert push.next_attempt_at - timezone.now() > timedelta(seconds=70 + 110)

    assert run_sweep_at(timedelta(seconds=70 + 140)) == 1
    push.refresh_from_db()
    assert (push.status, push.attempts, push.channel) == (Push.Status.SENT, 3, Push.Channel.WECHAT_TEMPLATE)

    assert run_sweep_at(timedelta(days=2)) == 0
    assert deliver(push).status == Push.Status.SENT
    assert len(fake.requests_to(TEMPLATE_SEND)) == 3


def test_platform_that_does_not_answer_in_time_is_retried(fake, settings):
    settings.PLATFORM_TIMEOUT_SECONDS = 0.3
    fake.script(TEMPLATE_SEND, replies(Reply(body="{}", delay=2), WECHAT_OK))
    member = make_member()
    follower(member)
    wechat_template()

    push = deliver(queue(member))
    assert push.status == Push.Status.PENDING

    run_sweep_at(timedelta(minutes=2))
    push.refresh_from_db()
    assert (push.status, push.attempts) == (Push.Status.SENT, 2)


def test_backoff_is_exponential_and_capped(settings):
    settings.PUSH_RETRY_BASE_SECONDS, settings.PUSH_RETRY_MAX_SECONDS = 60, 600
    delays = [pushes.push_retry_delay(attempt=n).total_seconds() for n in range(1, 8)]
    for delay, base in zip(delays, [60, 120, 240, 480, 600, 600, 600]):
        assert base <= delay <= base * 1.1


def test_push_is_given_up_after_max_attempts(fake, settings):
    settings.PUSH_MAX_ATTEMPTS = 3
    fake.script(TEMPLATE_SEND, json_reply({"errmsg": "busy"}, status=503))
    member = make_member()
    follower(member)
    wechat_template()

    push = deliver(queue(member))
    for hours in (1, 2):
        run_sweep_at(timedelta(hours=hours))
    push.refresh_from_db()

    assert (push.status, push.attempts, push.next_attempt_at) == (Push.Status.FAILED, 3, None)
    assert push.last_error.startswith("gave up after 3 attempts")
    assert run_sweep_at(timedelta(days=1)) == 0
    assert len(fake.requests_to(TEMPLATE_SEND)) == 3
    assert InboxMessage.objects.filter(push=push).exists()


def test_failed_token_fetch_is_retried_like_any_failure(fake):
    fake.script("/cgi-bin/token", replies(json_reply({}, status=502), json_reply({"access_token": "T2", "expires_in": 7200})))
    fake.script(TEMPLATE_SEND, WECHAT_OK)
    member = make_member()
    follower(member)
    wechat_template()

    assert deliver(queue(member)).status == Push.Status.PENDING
    run_sweep_at(timedelta(minutes=2))

    assert Push.objects.get().status == Push.Status.SENT
    assert len(fake.requests_to(TEMPLATE_SEND)) == 1


def test_sweep_picks_up_a_push_whose_first_task_was_lost(fake):
    fake.script(TEMPLATE_SEND, WECHAT_OK)
    member = make_member()
    follower(member)
    wechat_template()
    push = queue(member)  # outside an on-commit capture: the task is never run

    assert run_sweep_at(timedelta(seconds=10)) == 0  # the task may still be on its way
    assert run_sweep_at(timedelta(minutes=3)) == 1
    push.refresh_from_db()
    assert push.status == Push.Status.SENT


# --- never twice ----------------------------------------------------------------------------


def test_worker_dying_between_the_send_and_the_save_never_sends_again(fake):
    fake.script(TEMPLATE_SEND, WECHAT_OK)
    member = make_member()
    follower(member)
    wechat_template()
    push = queue(member)

    class WorkerKilled(BaseException):
        pass

    with mock.patch.object(pushes, "_finish_sent", side_effect=WorkerKilled), pytest.raises(WorkerKilled):
        pushes.push_deliver(push_id=push.pk)
    push.refresh_from_db()
    assert push.status == Push.Status.SENDING
    assert len(fake.requests_to(TEMPLATE_SEND)) == 1

    assert run_sweep_at(timedelta(minutes=1)) == 0  # the claim still runs
    assert run_sweep_at(timedelta(minutes=10)) == 0  # the claim ran out: given up, not resent
    push.refresh_from_db()
    assert push.status == Push.Status.FAILED and push.last_error.startswith("outcome unknown")
    run_sweep_at(timedelta(days=1))
    assert len(fake.requests_to(TEMPLATE_SEND)) == 1


def test_unexpected_error_during_delivery_gives_up_without_retrying(fake):
    member = make_member()
    follower(member)
    wechat_template()
    push = queue(member)

    with mock.patch.object(pushes, "_call", side_effect=RuntimeError("boom")):
        push = deliver(push)

    assert (push.status, push.next_attempt_at) == (Push.Status.FAILED, None)
    assert push.last_error.startswith("outcome unknown")
    assert run_sweep_at(timedelta(days=1)) == 0


def test_delivery_is_safe_to_run_twice_on_a_platform_too(fake):
    fake.script(TEMPLATE_SEND, WECHAT_OK)
    member = make_member()
    follower(member)
    wechat_template()
    push = queue(member)

    deliver(push)
    deliver(push)

    assert len(fake.requests_to(TEMPLATE_SEND)) == 1
    assert push.attempts == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_deliveries_of_one_push_send_it_once(fake):
    # The platform is slow, so the second worker arrives while the first is sending.
    fake.script(TEMPLATE_SEND, Reply(body=json.dumps({"errcode": 0, "errmsg": "ok"}), delay=0.5))
    member = make_member()
    follower(member)
    wechat_template()
    with mock.patch.object(pushes, "_enqueue_on_commit"):  # committed at once here: keep its task for the race
        push = queue(member)
    start = threading.Barrier(4)
    errors = []

    def worker():
        try:
            start.wait(timeout=10)
            pushes.push_deliver(push_id=push.pk)
        except BaseException as exc:  # noqa: BLE001 - inspected below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    push.refresh_from_db()
    assert (push.status, push.attempts) == (Push.Status.SENT, 1)
    assert len(fake.requests_to(TEMPLATE_SEND)) == 1


# --- the sandbox ----------------------------------------------------------------------------


def test_sandbox_without_credentials_records_what_would_have_been_sent(settings, platform_server):
    settings.O2O_SANDBOX = True
    member = make_member()
    follower(member)
    wechat_template()

    push = deliver(queue(member))

    assert (push.status, push.channel) == (Push.Status.SENT, Push.Channel.SANDBOX)
    assert push.recipient == f"wechat_template → wechat_openid:{OPENID}"
    assert push.payload["template_id"] == "TPL-EARN"
    assert push.payload["data"]["keyword1"] == {"value": "38"}
    assert platform_server.requests == []


def test_sandbox_stands_in_only_for_platforms_without_credentials(fake, settings, app_keys, alipay_keys):
    settings.O2O_SANDBOX = True
    settings.WECHAT_APP_ID = ""  # WeChat unconfigured, Alipay configured
    fake.script(ALIPAY_GATEWAY, alipay_gateway(app_keys, alipay_keys))
    wechat_member, alipay_member = make_member(), make_member()
    follower(wechat_member)
    alipay_follower(alipay_member)
    wechat_template()

    assert deliver(queue(wechat_member, "w")).channel == Push.Channel.SANDBOX
    assert deliver(queue(alipay_member, "a")).channel == Push.Channel.ALIPAY
    assert len(fake.requests_to(ALIPAY_GATEWAY)) == 1 and fake.requests_to(TEMPLATE_SEND) == []


def test_without_credentials_or_sandbox_a_push_stays_in_the_inbox(settings):
    settings.O2O_SANDBOX = False
    member = make_member()
    follower(member)
    wechat_template()

    push = deliver(queue(member))

    assert (push.status, push.channel) == (Push.Status.SKIPPED, Push.Channel.INBOX)


# --- resend ---------------------------------------------------------------------------------


def test_resend_queues_failed_and_inbox_only_pushes_again_and_leaves_the_others(
    fake, settings, django_capture_on_commit_callbacks
):
    settings.PUSH_MAX_ATTEMPTS = 1
    fake.script(TEMPLATE_SEND, replies(json_reply({}, status=500), WECHAT_OK))
    member = make_member()
    identity = follower(member, following=False)
    wechat_template()
    failed_later = queue(member, "f")
    skipped = deliver(queue(member, "s"))
    Identity.objects.filter(pk=identity.pk).update(is_following=True)
    failed = deliver(failed_later)
    sent = deliver(queue(member, "ok"))
    pending = queue(member, "p")
    assert [failed.status, skipped.status, sent.status] == [Push.Status.FAILED, Push.Status.SKIPPED, Push.Status.SENT]

    with django_capture_on_commit_callbacks(execute=True):
        queued = pushes.push_resend(push_ids=[failed.pk, skipped.pk, sent.pk, pending.pk])

    assert queued == 2
    for push in (failed, skipped, sent):
        push.refresh_from_db()
    assert (failed.status, failed.attempts, failed.channel) == (Push.Status.SENT, 1, Push.Channel.WECHAT_TEMPLATE)
    assert skipped.status == Push.Status.SENT
    assert sent.attempts == 1
    assert len(fake.requests_to(TEMPLATE_SEND)) == 4  # the failure, then sent, resent ×2


# --- the member's side ----------------------------------------------------------------------


def test_subscription_grants_add_up(fake):
    member = make_member()
    pushes.miniapp_subscription_grant(member=member, template_id="MP-1")
    subscription = pushes.miniapp_subscription_grant(member=member, template_id=" MP-1 ", count=2)
    assert subscription.remaining == 3 and MiniappSubscription.objects.count() == 1


@pytest.mark.parametrize("template_id, count", [("", 1), ("x" * 129, 1), ("MP-1", 0), ("MP-1", 101), ("MP-1", True), (None, 1)])
def test_subscription_grant_refuses_nonsense_with_its_code(template_id, count):
    with pytest.raises(pushes.SubscriptionInvalid) as caught:
        pushes.miniapp_subscription_grant(member=make_member(), template_id=template_id, count=count)
    assert caught.value.code == "subscription_invalid"
    assert not MiniappSubscription.objects.exists()


def test_template_placeholders_are_names_only(fake):
    fake.script(TEMPLATE_SEND, WECHAT_OK)
    member = make_member()
    follower(member)
    PushTemplate.objects.create(
        event="points_earned", channel=PushTemplate.Channel.WECHAT_TEMPLATE, template_id="T",
        fields={"a": "{title.__class__} {missing} {member_no}"},
    )

    deliver(queue(member))

    data = fake.requests_to(TEMPLATE_SEND)[0].json()["data"]
    assert data == {"a": {"value": "{title.__class__}  " + member.member_no}}
