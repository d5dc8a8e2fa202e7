from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from members import checkin, ledger
from members.models import Checkin, Visit
from tests.factories import assert_ledger_invariants, make_member, make_plaza

pytestmark = pytest.mark.django_db


def at(days):
    return time_machine.travel(timezone.now() + timedelta(days=days))


def test_checkin_grants_mall_points_once_per_plaza_per_day():
    member, plaza = make_member(), make_plaza()
    first = checkin.checkin(member=member, plaza=plaza)
    assert (first.already, first.points, first.streak, first.points_balance) == (False, 10, 1, 10)
    again = checkin.checkin(member=member, plaza=plaza)
    assert again.already and again.points == 0 and again.points_balance == 10
    assert Checkin.objects.count() == 1
    assert Visit.objects.filter(member=member, kind=Visit.Kind.CHECKIN, plaza=plaza).count() == 1
    member.refresh_from_db()
    assert member.last_visit_plaza == plaza
    assert_ledger_invariants()


def test_another_plaza_the_same_day_is_another_checkin_without_another_streak_day():
    member, a, b = make_member(), make_plaza(), make_plaza()
    checkin.checkin(member=member, plaza=a)
    second = checkin.checkin(member=member, plaza=b)
    assert not second.already and second.streak == 1 and second.points_balance == 20


def test_every_seventh_consecutive_day_adds_the_streak_bonus():
    member, plaza = make_member(), make_plaza()
    results = []
    for day in range(8):
        with at(day):
            results.append(checkin.checkin(member=member, plaza=plaza))
    assert [r.streak for r in results] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert [r.bonus_points for r in results] == [0, 0, 0, 0, 0, 0, 50, 0]
    assert ledger.member_points_balance(member=member) == 8 * 10 + 50
    assert_ledger_invariants()


def test_a_missed_day_restarts_the_streak():
    member, plaza = make_member(), make_plaza()
    with at(0):
        checkin.checkin(member=member, plaza=plaza)
    with at(2):
        assert checkin.checkin(member=member, plaza=plaza).streak == 1


def test_checkin_token_round_trips_and_refuses_forgeries():
    plaza = make_plaza()
    token = checkin.checkin_token_make(plaza=plaza)
    assert checkin.checkin_token_read(token) == checkin.CheckinCode(plaza=plaza, proof=checkin.Proof.PERMANENT)
    for bad in [token[:-2] + "xx", "", "abc", token + "x"]:
        with pytest.raises(checkin.CheckinTokenInvalid) as exc:
            checkin.checkin_token_read(bad)
        assert exc.value.code == "checkin_token_invalid"


def test_a_token_signed_for_another_purpose_is_refused():
    from django.core import signing

    plaza = make_plaza()
    forged = signing.dumps({"p": plaza.code}, salt="some.other.purpose", compress=True)
    with pytest.raises(checkin.CheckinTokenInvalid):
        checkin.checkin_token_read(forged)


def test_an_inactive_plaza_cannot_be_checked_in():
    plaza = make_plaza()
    token = checkin.checkin_token_make(plaza=plaza)
    plaza.is_active = False
    plaza.save()
    with pytest.raises(checkin.NotFound) as exc:
        checkin.checkin_token_read(token)
    assert exc.value.code == "plaza_not_found"
