"""The dynamic member code: 23 digits, signed, rotating every minute, with a guess throttle.

First members.codes on its own (with an explicit ``now``), then the code as a POS
meets it at GET /api/v1/members/lookup/.
"""

import uuid
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from unittest import mock

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone

from core.errors import NotFound
from members import codes, services
from members.codes import (
    GUESS_LIMIT,
    MemberCodeExpired,
    MemberCodeInvalid,
    TooManyInvalidCodes,
)
from members.models import Member
from tests.factories import make_member, make_plaza

pytestmark = pytest.mark.django_db

# The first instant of a time step (a multiple of 60 s since the epoch).
T0 = datetime(2026, 3, 10, 2, 0, 0, tzinfo=dt_timezone.utc)
assert int(T0.timestamp()) % codes.STEP_SECONDS == 0


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def issue(member, seconds: float = 0) -> str:
    return codes.member_code_issue(member=member, now=at(seconds)).code


def check(code: str, seconds: float = 0, caller: str = "pos-1") -> Member:
    return codes.member_code_check(code=code, caller=caller, now=at(seconds))


def flip(digit: str) -> str:
    return str((int(digit) + 1) % 10)


@pytest.fixture
def member():
    return make_member(nickname="张三丰", phone="13800138000")


# --- the code -----------------------------------------------------------------------------


def test_code_is_23_ascii_digits_starting_with_the_member_no(member):
    code = issue(member)

    assert len(code) == 23 == codes.CODE_LENGTH
    assert code.isascii() and code.isdigit()
    assert code.startswith(member.member_no) and len(member.member_no) == 12


def test_code_says_when_the_next_one_is_due(member):
    assert codes.member_code_issue(member=member, now=at(17)).expires_at == at(60)


def test_code_stays_the_same_within_a_step_and_rotates_at_the_next(member):
    assert issue(member, 0) == issue(member, 59.9)
    assert issue(member, 60) != issue(member, 59.9)
    assert len({issue(member, 60 * n) for n in range(30)}) == 30


@pytest.mark.parametrize("seconds", [0, 30, 59.999, 60, 89.999])
def test_code_is_valid_during_its_step_and_the_grace_after(member, seconds):
    assert check(issue(member, 0), seconds) == member


@pytest.mark.parametrize("seconds", [90, 91, 120, 599, 600, 601, 3_000])
def test_code_is_expired_after_its_step_and_the_grace(member, seconds):
    with pytest.raises(MemberCodeExpired) as exc:
        check(issue(member, 0), seconds)
    assert exc.value.code == "member_code_expired" and exc.value.status == 400


@pytest.mark.parametrize("ahead", [60, 120, 540, 600])
def test_code_from_a_future_step_is_not_accepted(member, ahead):
    with pytest.raises(MemberCodeInvalid):
        check(issue(member, ahead), 0)


@pytest.mark.parametrize("position", range(13, 23))
def test_code_with_a_forged_mac_digit_is_invalid(member, position):
    code = issue(member)
    forged = code[:position] + flip(code[position]) + code[position + 1:]

    with pytest.raises(MemberCodeInvalid) as exc:
        check(forged)
    assert exc.value.code == "member_code_invalid" and exc.value.status == 400


def test_code_with_a_tampered_step_digit_is_invalid(member):
    code = issue(member)
    with pytest.raises(MemberCodeInvalid):
        check(code[:12] + flip(code[12]) + code[13:])


def test_code_with_another_members_number_is_invalid(member):
    other = make_member()
    code = issue(member)

    with pytest.raises(MemberCodeInvalid):
        check(other.member_no + code[12:])


@pytest.mark.parametrize("position", range(12))
def test_code_with_a_tampered_member_no_digit_is_invalid(member, position):
    code = issue(member)
    with pytest.raises(MemberCodeInvalid):
        check(code[:position] + flip(code[position]) + code[position + 1:])


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "   ",
        "abc",
        "12345678901234567890123"[:22],
        "12345678901234567890123" + "4",
        "1234567890a234567890123",
        "１２３４５６７８９０１２３４５６７８９０１２３",  # fullwidth digits: isdigit() but not ASCII
        "١٢٣٤٥٦٧٨٩٠١٢٣٤٥٦٧٨٩٠١٢٣",  # Arabic-Indic digits
        "+1234567890123456789012",
        "-1234567890123456789012",
        "1234567890 1234567890123",
        None,
    ],
)
def test_garbage_is_invalid(garbage):
    with pytest.raises(MemberCodeInvalid):
        check(garbage)


def test_code_of_garbage_built_from_a_real_code_is_invalid(member):
    code = issue(member)
    fullwidth = "".join(chr(ord(c) + 0xFEE0) for c in code)
    with pytest.raises(MemberCodeInvalid):
        check(fullwidth)


def test_surrounding_whitespace_from_a_scanner_is_ignored(member):
    assert check(f" {issue(member)}\n") == member


def test_a_well_signed_code_of_no_member_is_member_not_found():
    ghost = Member(member_no="100000000009")
    code = codes.member_code_issue(member=ghost, now=T0).code

    with pytest.raises(NotFound) as exc:
        check(code)
    assert exc.value.code == "member_not_found"


def test_codes_depend_on_the_secret_key(member):
    code = issue(member)
    with mock.patch.object(settings, "SECRET_KEY", settings.SECRET_KEY + "-rotated"):
        assert issue(member) != code
        with pytest.raises(MemberCodeInvalid):
            check(code)


# --- the guess throttle -----------------------------------------------------------------


def wrong_guesses(n: int, caller: str = "pos-1", seconds: float = 0) -> None:
    for i in range(n):
        with pytest.raises(MemberCodeInvalid):
            check(f"{i:023d}", seconds, caller)


def test_after_the_guess_limit_even_a_valid_code_is_refused(member):
    wrong_guesses(GUESS_LIMIT)

    with pytest.raises(TooManyInvalidCodes) as exc:
        check(issue(member))
    assert exc.value.code == "too_many_invalid_codes" and exc.value.status == 429


def test_below_the_guess_limit_a_valid_code_still_works(member):
    wrong_guesses(GUESS_LIMIT - 1)

    assert check(issue(member)) == member


def test_expired_codes_count_as_wrong_guesses(member):
    stale = issue(member, -600)
    for _ in range(GUESS_LIMIT):
        with pytest.raises(MemberCodeExpired):
            check(stale)

    with pytest.raises(TooManyInvalidCodes):
        check(issue(member))


def test_valid_codes_do_not_count_against_the_caller(member):
    for _ in range(GUESS_LIMIT + 5):
        check(issue(member))

    assert check(issue(member)) == member


def test_wrong_guesses_count_per_caller(member):
    wrong_guesses(GUESS_LIMIT, caller="pos-1")

    assert check(issue(member), caller="pos-2") == member


def test_wrong_guesses_are_remembered_until_their_window_ends(member):
    """A fixed window of GUESS_WINDOW_SECONDS (10 minutes): refused to its last second, free in the next."""
    assert int(T0.timestamp()) % codes.GUESS_WINDOW_SECONDS == 0  # T0 opens a window
    wrong_guesses(GUESS_LIMIT, seconds=1)
    last = codes.GUESS_WINDOW_SECONDS - 1

    with pytest.raises(TooManyInvalidCodes):
        check(issue(member, last), last)
    assert check(issue(member, last + 2), last + 2) == member


# --- at the merchant API: GET /api/v1/members/lookup/ ------------------------------------


def pos(name: str = "Shop") -> Client:
    """A new merchant's POS: a Client that sends its API key (``client.store_code`` is its store)."""
    _, store, _, raw_key = services.merchant_create(name=name, plaza=make_plaza(), store_code=f"st-{uuid.uuid4().hex[:8]}")
    client = Client(headers={"Authorization": f"Bearer {raw_key}"})
    client.store_code = store.code
    return client


def lookup(client: Client, code):
    return client.get("/api/v1/members/lookup/", {} if code is None else {"code": code})


def error_code(response) -> str:
    assert response["Content-Type"].startswith("application/json")
    return response.json()["code"]


def test_lookup_shows_what_a_cashier_needs_and_no_more(member):
    from members import ledger

    ledger.points_grant(member=member, points=420, reason="t", idempotency_key="g")

    response = lookup(pos(), codes.member_code_issue(member=member).code)

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"member_no", "tier", "tier_name", "points_balance", "name_masked", "phone_masked"}
    assert body["member_no"] == member.member_no
    assert body["tier"] == "standard"
    assert body["points_balance"] == 420
    assert body["name_masked"] == "张**"
    assert body["phone_masked"] == "138****8000"
    raw = response.content.decode()
    assert "13800138000" not in raw and "张三丰" not in raw


def test_lookup_of_a_member_without_a_phone_masks_nothing():
    member = make_member(nickname="Alice")

    body = lookup(pos(), codes.member_code_issue(member=member).code).json()

    assert body["phone_masked"] == "" and body["name_masked"] == "A****"


@pytest.mark.parametrize("code", [None, ""])
def test_lookup_without_a_code_is_400_member_code_invalid(code):
    response = lookup(pos(), code)

    assert response.status_code == 400
    assert error_code(response) == "member_code_invalid"


def test_lookup_of_a_forged_code_is_400_member_code_invalid(member):
    code = codes.member_code_issue(member=member).code

    response = lookup(pos(), code[:-1] + flip(code[-1]))

    assert response.status_code == 400
    assert error_code(response) == "member_code_invalid"


def test_lookup_of_an_expired_code_is_400_member_code_expired(member):
    stale = codes.member_code_issue(member=member, now=timezone.now() - timedelta(seconds=codes.STEP_SECONDS * 2)).code

    response = lookup(pos(), stale)

    assert response.status_code == 400
    assert error_code(response) == "member_code_expired"


def test_lookup_of_a_code_from_the_future_is_refused(member):
    future = codes.member_code_issue(member=member, now=timezone.now() + timedelta(minutes=3)).code

    response = lookup(pos(), future)

    assert response.status_code == 400
    assert error_code(response) == "member_code_invalid"


def test_lookup_of_a_banned_member_is_403_member_not_active(member):
    code = codes.member_code_issue(member=member).code
    Member.objects.filter(pk=member.pk).update(status=Member.Status.BANNED)

    response = lookup(pos(), code)

    assert response.status_code == 403
    assert error_code(response) == "member_not_active"


def test_lookup_after_too_many_wrong_codes_is_429_while_other_merchants_are_unaffected(member):
    guesser, honest = pos("Guesser"), pos("Honest")
    for i in range(GUESS_LIMIT):
        assert lookup(guesser, f"{i:023d}").status_code == 400

    refused = lookup(guesser, codes.member_code_issue(member=member).code)
    served = lookup(honest, codes.member_code_issue(member=member).code)

    assert refused.status_code == 429
    assert error_code(refused) == "too_many_invalid_codes"
    assert served.status_code == 200


def test_wrong_codes_in_purchases_count_towards_the_same_limit(member):
    client = pos()
    for i in range(GUESS_LIMIT):
        response = client.post(
            "/api/v1/purchases/", data={"member_code": f"{i:023d}", "store_code": client.store_code, "amount_fen": 100},
            content_type="application/json", headers={"Idempotency-Key": f"k{i}"},
        )
        assert error_code(response) == "member_code_invalid"

    response = lookup(client, codes.member_code_issue(member=member).code)

    assert response.status_code == 429
    assert error_code(response) == "too_many_invalid_codes"
