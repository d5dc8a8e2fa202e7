"""The shopper's account through /api/mp/v1/: me (read and edit), the member code,
the points history and checking in."""

import json
from datetime import date, timedelta

import pytest
from django.test import Client
from django.utils import timezone

from core.errors import ApplicationError
from members import checkin, codes, identity, ledger
from members.auth import shopper_token_issue
from members.models import Member, Plaza
from members.shopper import member_profile_update
from tests.factories import (
    assert_ledger_invariants,
    make_member,
    make_plaza,
    make_store,
)

pytestmark = pytest.mark.django_db


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, (response.status_code, response.content[:500])
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["code"] == code, body
    assert isinstance(body["message"], str) and body["message"]
    return body


class Shopper:
    """The mini-program of one member."""

    def __init__(self, member: Member):
        self.member = member
        self.client = Client(headers={"Authorization": f"Bearer {shopper_token_issue(member=member).token}"})

    def get(self, path: str, params: dict | None = None):
        return self.client.get("/api/mp/v1/" + path, params or {})

    def post(self, path: str, body):
        return self.client.post("/api/mp/v1/" + path, data=json.dumps(body), content_type="application/json")

    def patch(self, path: str, body):
        return self.client.patch("/api/mp/v1/" + path, data=json.dumps(body), content_type="application/json")


def grant(member: Member, points: int, key: str) -> None:
    ledger.points_grant(member=member, points=points, reason="gift", idempotency_key=key)


@pytest.fixture
def member() -> Member:
    return make_member(nickname="张三丰", phone="13800138000")


@pytest.fixture
def shopper(member) -> Shopper:
    return Shopper(member)


# --- me -----------------------------------------------------------------------------------


def test_me_shows_number_points_tier_and_profile(member, shopper):
    grant(member, 300, "g1")
    ledger.points_grant(
        member=member, points=40, reason="soon gone", idempotency_key="g2", expires_at=timezone.now() + timedelta(days=10)
    )
    Member.objects.filter(pk=member.pk).update(birthday=date(1990, 5, 1), gender="f")

    response = shopper.get("me/")

    assert response.status_code == 200
    assert response.json() == {
        "member_no": member.member_no,
        "points_balance": 340,
        "points_pending": 0,
        "points_expiring_30d": 40,
        "tier": "standard",
        "tier_name": "普卡",
        "nickname": "张三丰",
        "gender": "f",
        "birthday": "1990-05-01",
        "phone_masked": "138****8000",
        "unread_messages": 0,
    }


def test_me_of_a_new_member_without_phone_or_birthday():
    member = make_member()

    body = Shopper(member).get("me/").json()

    assert (body["points_balance"], body["phone_masked"], body["birthday"], body["gender"]) == (0, "", None, "")


def test_me_counts_unread_messages(member, shopper):
    checkin.checkin(member=member, plaza=make_plaza())  # pushes "you checked in"

    assert shopper.get("me/").json()["unread_messages"] == 1


def test_patch_me_changes_what_is_sent_and_keeps_the_rest(member, shopper):
    Member.objects.filter(pk=member.pk).update(birthday=date(1990, 5, 1))

    response = shopper.patch("me/", {"nickname": "  Alice  ", "gender": "m"})

    assert response.status_code == 200, response.content
    assert (response.json()["nickname"], response.json()["gender"], response.json()["birthday"]) == ("Alice", "m", "1990-05-01")
    member.refresh_from_db()
    assert (member.nickname, member.gender, member.birthday) == ("Alice", "m", date(1990, 5, 1))


def test_patch_me_can_forget_the_birthday_and_gender(member, shopper):
    Member.objects.filter(pk=member.pk).update(birthday=date(1990, 5, 1), gender="f")

    body = shopper.patch("me/", {"birthday": None, "gender": ""}).json()

    assert (body["birthday"], body["gender"]) == (None, "")


def test_patch_me_accepts_a_birthday_of_today_and_of_1900(shopper):
    assert shopper.patch("me/", {"birthday": "1900-01-01"}).status_code == 200
    assert shopper.patch("me/", {"birthday": timezone.localdate().isoformat()}).status_code == 200


@pytest.mark.parametrize(("body", "field", "code"), [
    ({"nickname": "x" * 65}, "nickname", "max_length"),
    ({"nickname": 42}, "nickname", "not_a_string"),
    ({"nickname": "a\x00b"}, "nickname", "null_characters_not_allowed"),
    ({"birthday": (date.today() + timedelta(days=2)).isoformat()}, "birthday", "implausible_birthday"),
    ({"birthday": "1899-12-31"}, "birthday", "implausible_birthday"),
    ({"birthday": "01/05/1990"}, "birthday", "invalid"),
    ({"gender": "x"}, "gender", "invalid_choice"),
    ({"gender": None}, "gender", "null"),
    ({"phone": "13900139000"}, "phone", "not_editable"),
    ({"member_no": "000000000000"}, "member_no", "not_editable"),
])
def test_patch_me_refuses_bad_fields_and_changes_nothing(member, shopper, body, field, code):
    response = shopper.patch("me/", {"nickname": "Changed", **body} if field != "nickname" else body)

    errors = assert_error(response, 400, "validation_error")["errors"]
    assert errors[field][0]["code"] == code
    member.refresh_from_db()
    assert (member.nickname, member.phone, member.birthday) == ("张三丰", "+8613800138000", None)


@pytest.mark.parametrize(("change", "code"), [
    ({"nickname": "x" * 65}, "invalid_nickname"),
    ({"birthday": date(1899, 12, 31)}, "invalid_birthday"),
    ({"gender": "x"}, "invalid_gender"),
])
def test_the_profile_service_refuses_what_the_api_refuses(member, change, code):
    with pytest.raises(ApplicationError) as caught:
        member_profile_update(member=member, **change)

    assert caught.value.code == code
    member.refresh_from_db()
    assert (member.nickname, member.birthday, member.gender) == ("张三丰", None, "")


def test_patch_me_refuses_a_body_that_is_not_an_object(shopper):
    assert_error(shopper.patch("me/", ["nickname"]), 400, "validation_error")


# --- the member code ----------------------------------------------------------------------


def test_member_code_is_a_live_code_of_this_member(member, shopper):
    response = shopper.get("member-code/")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"code", "expires_at"}
    assert codes.member_code_check(code=body["code"], caller="test").pk == member.pk
    expires_at = timezone.datetime.fromisoformat(body["expires_at"])
    assert timezone.now() < expires_at <= timezone.now() + timedelta(seconds=60)


# --- the points history -------------------------------------------------------------------


def test_points_history_lists_newest_first_with_shop_and_signed_points(member, shopper):
    store = make_store()
    grant(member, 100, "g1")
    earn = ledger.points_earn(member=member, store=store, amount_fen=25_000, idempotency_key="e1", reference="POS-1")
    redeem = ledger.points_redeem(member=member, store=store, points=30, idempotency_key="r1")

    response = shopper.get("points/history/")

    assert response.status_code == 200
    body = response.json()
    assert body["next_cursor"] is None
    assert [(e["kind"], e["points"], e["store_code"], e["shop"]) for e in body["results"]] == [
        ("redeem", -30, store.code, store.name),
        ("earn", 250, store.code, store.name),
        ("grant", 100, None, None),
    ]
    assert body["results"][1]["id"] == earn.pk and body["results"][0]["id"] == redeem.pk
    assert body["results"][2]["reason"] == "gift"
    assert set(body["results"][0]) == {"id", "kind", "points", "store_code", "shop", "reason", "created_at"}


def test_points_history_shows_what_a_merge_brought_in_as_a_gain(member, shopper):
    duplicate = make_member()
    grant(duplicate, 70, "dup")
    identity.member_merge(source=duplicate, target=member, reason="same person")

    [entry] = shopper.get("points/history/").json()["results"]

    assert (entry["kind"], entry["points"]) == ("transfer", 70)
    assert shopper.get("me/").json()["points_balance"] == 70
    assert_ledger_invariants()


def test_points_history_shows_only_the_shoppers_own_transactions(member, shopper):
    grant(make_member(), 500, "other")
    grant(member, 5, "mine")

    assert [e["points"] for e in shopper.get("points/history/").json()["results"]] == [5]


def test_points_history_pages_by_cursor_without_gaps_or_repeats(member, shopper):
    for n in range(25):
        grant(member, n + 1, f"g{n}")

    seen, cursor, pages = [], None, 0
    while True:
        body = shopper.get("points/history/", {"limit": 10, **({"cursor": cursor} if cursor else {})}).json()
        seen += [e["points"] for e in body["results"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break

    assert pages == 3
    assert seen == list(range(25, 0, -1))


def test_points_history_cursor_keeps_its_place_when_new_points_arrive(member, shopper):
    for n in range(5):
        grant(member, n + 1, f"g{n}")
    first = shopper.get("points/history/", {"limit": 2}).json()

    grant(member, 99, "new")
    second = shopper.get("points/history/", {"limit": 2, "cursor": first["next_cursor"]}).json()

    assert [e["points"] for e in first["results"]] == [5, 4]
    assert [e["points"] for e in second["results"]] == [3, 2]


@pytest.mark.parametrize("cursor", ["garbage", "1-", "-1-2", "1-2-3", "999999999999999999-1", "9999999999999999999-1"])
def test_points_history_refuses_a_cursor_it_did_not_give(shopper, cursor):
    assert_error(shopper.get("points/history/", {"cursor": cursor}), 400, "invalid_cursor")


@pytest.mark.parametrize("limit", ["0", "101", "ten", "-1"])
def test_points_history_refuses_a_limit_outside_1_to_100(shopper, limit):
    body = assert_error(shopper.get("points/history/", {"limit": limit}), 400, "validation_error")

    assert "limit" in body["errors"]


# --- check-in -----------------------------------------------------------------------------


@pytest.fixture
def plaza() -> Plaza:
    plaza = make_plaza("sh-test")
    Plaza.objects.filter(pk=plaza.pk).update(notice="Spring sale on L2")
    plaza.refresh_from_db()
    return plaza


def test_checkin_by_the_plaza_qr_token_gives_points_once_a_day(member, shopper, plaza):
    token = checkin.checkin_token_make(plaza=plaza)

    first = shopper.post("checkin/", {"token": token})
    again = shopper.post("checkin/", {"token": token})

    assert first.status_code == 200, first.content
    assert first.json() == {
        "points": 10, "bonus": 0, "streak": 1, "already": False, "balance": 10,
        "plaza": {"code": "sh-test", "name": plaza.name, "notice": "Spring sale on L2"},
    }
    assert (again.json()["already"], again.json()["points"], again.json()["balance"]) == (True, 0, 10)
    assert ledger.member_points_balance(member=member) == 10


def test_checkin_reports_the_streak_bonus(shopper, plaza, settings):
    settings.CHECKIN_STREAK_DAYS = 1  # every day completes a streak

    body = shopper.post("checkin/", {"token": checkin.checkin_token_make(plaza=plaza)}).json()

    assert (body["points"], body["bonus"], body["balance"]) == (10, 50, 60)


@pytest.mark.parametrize(("token", "code"), [("not-a-token", "checkin_token_invalid"), ("", "validation_error"), (42, "validation_error")])
def test_checkin_refuses_a_token_that_is_not_a_plaza_qr(member, shopper, token, code):
    assert_error(shopper.post("checkin/", {"token": token}), 400, code)

    assert ledger.member_points_balance(member=member) == 0


def test_checkin_refuses_a_forged_plaza_token(shopper, plaza):
    token = checkin.checkin_token_make(plaza=plaza)

    assert_error(shopper.post("checkin/", {"token": token[:-2] + "xx"}), 400, "checkin_token_invalid")


def test_checkin_refuses_a_shopper_token_as_a_plaza_token(member, shopper):
    assert_error(shopper.post("checkin/", {"token": shopper_token_issue(member=member).token}), 400, "checkin_token_invalid")


def test_checkin_at_a_closed_plaza_is_404(shopper, plaza):
    token = checkin.checkin_token_make(plaza=plaza)
    Plaza.objects.filter(pk=plaza.pk).update(is_active=False)

    assert_error(shopper.post("checkin/", {"token": token}), 404, "plaza_not_found")


# --- every endpoint needs the token -------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), [
    ("get", "me/"), ("patch", "me/"), ("get", "points/history/"), ("get", "member-code/"), ("post", "checkin/"),
    ("get", "inbox/"), ("post", "inbox/read/"), ("post", "phone/"),
])
def test_every_shopper_endpoint_is_401_without_a_token(method, path):
    response = Client().generic(method.upper(), "/api/mp/v1/" + path, data="{}", content_type="application/json")

    assert_error(response, 401, "not_authenticated")
