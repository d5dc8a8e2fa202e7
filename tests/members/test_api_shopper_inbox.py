"""The shopper's inbox through /api/mp/v1/inbox/: every push, newest first, read and unread."""

import json

import pytest
from django.test import Client

from members import pushes
from members.auth import shopper_token_issue
from members.models import InboxMessage, Member
from tests.factories import make_member

pytestmark = pytest.mark.django_db


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, (response.status_code, response.content[:500])
    body = response.json()
    assert body["code"] == code, body
    return body


class Shopper:
    def __init__(self, member: Member):
        self.client = Client(headers={"Authorization": f"Bearer {shopper_token_issue(member=member).token}"})

    def inbox(self, **params):
        return self.client.get("/api/mp/v1/inbox/", params)

    def read(self, body):
        return self.client.post("/api/mp/v1/inbox/read/", data=json.dumps(body), content_type="application/json")


def send(member: Member, n: int) -> InboxMessage:
    push = pushes.push_send(
        member=member, event="test", event_key=f"test:{member.pk}:{n}", title=f"Message {n}", body=f"Body {n}", link=f"/m/{n}/"
    )
    return push.inbox_message


@pytest.fixture
def member() -> Member:
    return make_member()


@pytest.fixture
def shopper(member) -> Shopper:
    return Shopper(member)


def test_inbox_lists_messages_newest_first_with_read_state(member, shopper):
    first, second = send(member, 1), send(member, 2)
    pushes.inbox_mark_read(member=member, message_ids=[first.pk])

    response = shopper.inbox()

    assert response.status_code == 200
    body = response.json()
    assert (body["unread"], body["next_cursor"]) == (1, None)
    assert [(m["id"], m["title"], m["body"], m["link"], m["read"]) for m in body["results"]] == [
        (second.pk, "Message 2", "Body 2", "/m/2/", False),
        (first.pk, "Message 1", "Body 1", "/m/1/", True),
    ]


def test_inbox_shows_only_the_shoppers_own_messages(member, shopper):
    send(make_member(), 1)

    assert shopper.inbox().json() == {"results": [], "next_cursor": None, "unread": 0}


def test_inbox_pages_by_cursor(member, shopper):
    for n in range(7):
        send(member, n)

    first = shopper.inbox(limit=4).json()
    rest = shopper.inbox(limit=4, cursor=first["next_cursor"]).json()

    assert [m["title"] for m in first["results"] + rest["results"]] == [f"Message {n}" for n in range(6, -1, -1)]
    assert rest["next_cursor"] is None
    assert first["unread"] == rest["unread"] == 7


def test_inbox_refuses_a_cursor_it_did_not_give(shopper):
    assert_error(shopper.inbox(cursor="abc"), 400, "invalid_cursor")


def test_reading_some_messages_marks_only_those(member, shopper):
    a, _, c = send(member, 1), send(member, 2), send(member, 3)

    response = shopper.read({"ids": [a.pk, c.pk]})

    assert response.status_code == 200
    assert response.json() == {"marked": 2, "unread": 1}
    assert [m["read"] for m in shopper.inbox().json()["results"]] == [True, False, True]
    assert shopper.read({"ids": [a.pk]}).json() == {"marked": 0, "unread": 1}  # already read


def test_reading_without_ids_marks_the_whole_inbox(member, shopper):
    for n in range(3):
        send(member, n)

    assert shopper.read({}).json() == {"marked": 3, "unread": 0}
    assert all(m["read"] for m in shopper.inbox().json()["results"])


def test_reading_an_empty_list_marks_nothing(member, shopper):
    send(member, 1)

    assert shopper.read({"ids": []}).json() == {"marked": 0, "unread": 1}


def test_reading_another_members_messages_is_passed_over(member, shopper):
    theirs = send(make_member(), 1)

    assert shopper.read({"ids": [theirs.pk]}).json() == {"marked": 0, "unread": 0}
    theirs.refresh_from_db()
    assert theirs.read_at is None


@pytest.mark.parametrize("body", [{"ids": ["1"]}, {"ids": [1.5]}, {"ids": [0]}, {"ids": [True]}, {"ids": 1}, {"ids": [2**63]}])
def test_reading_refuses_ids_that_are_not_message_ids(member, shopper, body):
    send(member, 1)

    assert_error(shopper.read(body), 400, "validation_error")
    assert shopper.inbox().json()["unread"] == 1
