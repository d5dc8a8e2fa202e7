import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from members import auth, services
from members.models import Account, Member, Merchant, MerchantApiKey, PointsTransaction, Store, Tier
from tests.factories import assert_ledger_invariants, make_member, make_plaza

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "raw, expected",
    [("13800138000", "+8613800138000"), ("138 0013 8000", "+8613800138000"), ("+86-138-0013-8000", "+8613800138000"),
     ("8613800138000", "+8613800138000"), ("008613800138000", "+8613800138000"), ("+852 9123 4567", "+85291234567")],
)
def test_phone_is_normalised_to_e164(raw, expected):
    assert services.phone_normalise(raw) == expected


@pytest.mark.parametrize("raw", ["", "12345", "23800138000", "+86 12800138000", "phone", "+0123456789"])
def test_phone_that_is_not_a_number_is_refused(raw):
    with pytest.raises(services.InvalidPhone) as exc:
        services.phone_normalise(raw)
    assert exc.value.code == "invalid_phone"


def test_member_gets_a_checked_number_an_empty_wallet_and_the_entry_tier():
    member = make_member(phone="138 0013 8000")
    assert services.member_no_is_valid(member.member_no)
    assert member.phone == "+8613800138000"
    assert member.tier == Tier.objects.get(threshold_fen=0)
    assert member.wallet.kind == Account.Kind.WALLET and member.wallet.balance == 0


def test_member_number_check_digit_catches_a_typo():
    member = make_member()
    typo = member.member_no[:-2] + str((int(member.member_no[-2]) + 1) % 10) + member.member_no[-1]
    assert not services.member_no_is_valid(typo)


def test_a_phone_belongs_to_one_member():
    make_member(phone="13800138000")
    with pytest.raises(services.PhoneTaken) as exc:
        make_member(phone="+8613800138000")
    assert exc.value.code == "phone_taken"
    assert Member.objects.count() == 1
    other = make_member()
    with pytest.raises(services.PhoneTaken):
        services.member_set_phone(member=other, phone="138-0013-8000")


def test_merchant_create_makes_store_accounts_and_a_hashed_key():
    plaza = make_plaza()
    merchant, store, key, raw_key = services.merchant_create(name="Tea", plaza=plaza, earn_rate_bp=200)
    assert merchant.earn_rate_bp == 200 and store.plaza == plaza
    assert set(merchant.accounts.values_list("kind", flat=True)) == {"merchant_funding", "merchant_acceptance"}
    assert raw_key not in key.key_hash and len(key.key_hash) == 64
    assert auth.merchant_api_key_verify(raw_key=raw_key) == key
    assert auth.merchant_api_key_verify(raw_key=raw_key[:-1] + ("A" if raw_key[-1] != "A" else "B")) is None


@pytest.mark.parametrize("rate", [-1, 10001, "100"])
def test_merchant_create_refuses_a_bad_earn_rate(rate):
    with pytest.raises(services.ApplicationError) as exc:
        services.merchant_create(name="Tea", plaza=make_plaza(), earn_rate_bp=rate)
    assert exc.value.code == "invalid_earn_rate"
    assert not Merchant.objects.exists()


def test_revoked_key_no_longer_verifies():
    _, _, key, raw_key = services.merchant_create(name="Tea", plaza=make_plaza())
    auth.merchant_api_key_revoke(key=key)
    assert auth.merchant_api_key_verify(raw_key=raw_key) is None


def test_createplaza_and_createmerchant_print_one_json_line():
    call_command("createplaza", "sh-1", "上海一号广场", stdout=StringIO())
    out = StringIO()
    call_command("createmerchant", "Tea House", "--plaza", "sh-1", "--earn-rate-bp", "150", stdout=out)
    line = out.getvalue().strip()
    assert "\n" not in line
    data = json.loads(line)
    assert set(data) == {"merchant_id", "store_code", "api_key"}
    store = Store.objects.get(code=data["store_code"])
    assert store.merchant_id == data["merchant_id"] and store.merchant.earn_rate_bp == 150
    assert auth.merchant_api_key_verify(raw_key=data["api_key"]).merchant_id == data["merchant_id"]
    assert not MerchantApiKey.objects.filter(key_hash=data["api_key"]).exists()


def test_createmerchant_defaults_to_one_percent_and_refuses_an_unknown_plaza():
    call_command("createplaza", "p", "P", stdout=StringIO())
    out = StringIO()
    call_command("createmerchant", "Shop", "--plaza", "p", stdout=out)
    assert Merchant.objects.get(pk=json.loads(out.getvalue())["merchant_id"]).earn_rate_bp == 100
    with pytest.raises(CommandError, match="plaza_not_found"):
        call_command("createmerchant", "Shop", "--plaza", "nope", stdout=StringIO())


def test_createplaza_refuses_a_duplicate_code():
    call_command("createplaza", "p", "P", stdout=StringIO())
    with pytest.raises(CommandError, match="plaza_exists"):
        call_command("createplaza", "p", "Again", stdout=StringIO())


def test_seed_demo_is_safe_to_run_twice(settings):
    settings.DEBUG = True
    # A small mall here; tests/members/test_seed_demo.py checks the books and the rerun in full.
    call_command("seed_demo", members=8, stdout=StringIO())
    counts = (Member.objects.count(), Store.objects.count())
    call_command("seed_demo", members=8, stdout=StringIO())
    assert (Member.objects.count(), Store.objects.count()) == counts
    assert counts[0] == 8 and PointsTransaction.objects.count() > 8
    assert_ledger_invariants()
