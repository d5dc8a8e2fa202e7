"""The H5 pages under /m/: member card, code refresh, history, inbox, check-in, pay, QR images, language."""

import re
from datetime import timedelta
from unittest import mock
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from members import checkin, codes, ledger, pushes, web_auth
from members.models import Checkin, InboxMessage, Member, Visit
from tests.factories import make_member, make_plaza, make_store

pytestmark = pytest.mark.django_db


@pytest.fixture
def member():
    return make_member(nickname="Ada")


def log_in(client, member):
    session = client.session
    session[web_auth.SESSION_MEMBER] = member.pk
    session.save()


def text(response) -> str:
    return response.content.decode()


def login_next(response) -> str:
    """Where the login page the response redirects to will go on to."""
    location = urlsplit(response["Location"])
    assert location.path == reverse("h5:login")
    return parse_qs(location.query)["next"][0]


# --- the member card ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["h5:card", "h5:history", "h5:inbox"])
def test_member_pages_send_a_visitor_to_login_keeping_the_page(client, name):
    response = client.get(reverse(name) + "?page=2")

    assert response.status_code == 302
    assert login_next(response) == reverse(name) + "?page=2"


def test_card_shows_balance_expiring_points_tier_and_both_codes(client, member):
    store = make_store()
    ledger.points_earn(member=member, store=store, amount_fen=12_300, idempotency_key="t:earn")  # 123 points
    log_in(client, member)

    response = client.get(reverse("h5:card"))

    assert response.status_code == 200
    page = text(response)
    assert 'id="points-balance">123<' in page
    assert member.member_no in page
    assert member.tier.name in page
    code = codes.member_code_issue(member=member).code
    assert f'data-code="{code}"' in page
    assert page.count("<svg") == 2  # the QR and the Code 128 barcode, inline
    assert 'class="barcode"' in page and 'class="qr"' in page
    assert "no-store" in response["Cache-Control"]


def test_card_counts_points_expiring_within_30_days(client, member):
    store = make_store()
    long_ago = timezone.now() - timedelta(days=350)
    with mock.patch("django.utils.timezone.now", lambda: long_ago):
        ledger.points_earn(member=member, store=store, amount_fen=4_000, idempotency_key="t:old")  # 40, expires in 15 days
    ledger.points_earn(member=member, store=store, amount_fen=1_000, idempotency_key="t:new")  # 10, expires in a year
    log_in(client, member)

    response = client.get(reverse("h5:card"))

    assert response.context["points_balance"] == 50
    assert response.context["points_expiring"] == 40
    assert "<strong>40</strong>" in text(response)


def test_card_is_in_chinese_by_default(client, member):
    log_in(client, member)

    page = text(client.get(reverse("h5:card")))

    assert '<html lang="zh-hans">' in page
    assert "会员码" in page and "积分明细" in page


def test_code_json_returns_the_current_code_drawn_both_ways(client, member):
    log_in(client, member)

    response = client.get(reverse("h5:card-code"))

    assert response.status_code == 200
    body = response.json()
    issued = codes.member_code_issue(member=member)
    assert body["code"] == issued.code
    assert body["expires_at"] == issued.expires_at.isoformat()
    assert 0 <= body["refresh_in"] <= codes.STEP_SECONDS
    assert body["qr_svg"].startswith("<svg") and body["barcode_svg"].startswith("<svg")
    assert body["code_display"].replace(" ", "") == issued.code
    assert codes.member_code_check(code=body["code"], caller="test").pk == member.pk
    assert "no-store" in response["Cache-Control"]


def test_code_json_follows_the_step_so_the_next_fetch_gets_the_next_code(client, member, monkeypatch):
    log_in(client, member)
    first = client.get(reverse("h5:card-code")).json()

    later = timezone.now() + timedelta(seconds=first["refresh_in"] + 0.3)
    with mock.patch("django.utils.timezone.now", lambda: later):
        second = client.get(reverse("h5:card-code")).json()

    assert second["code"] != first["code"]
    assert second["code"][:12] == first["code"][:12] == member.member_no


def test_code_json_answers_401_not_a_redirect_without_a_login(client):
    response = client.get(reverse("h5:card-code"))

    assert response.status_code == 401
    assert response.json()["code"] == "login_required"


def test_a_banned_member_is_logged_out_and_refused(client, member):
    log_in(client, member)
    Member.objects.filter(pk=member.pk).update(status=Member.Status.BANNED)

    response = client.get(reverse("h5:card"))

    assert response.status_code == 403
    assert web_auth.SESSION_MEMBER not in client.session
    assert client.get(reverse("h5:card-code")).status_code == 401


def test_a_merged_member_sees_the_membership_they_were_merged_into(client, member):
    from members.identity import member_merge

    survivor = make_member()
    log_in(client, member)
    member_merge(source=member, target=survivor, reason="test")

    response = client.get(reverse("h5:card"))

    assert response.context["member"].pk == survivor.pk
    assert client.session[web_auth.SESSION_MEMBER] == survivor.pk


# --- history and inbox ----------------------------------------------------------------


def test_history_lists_newest_first_with_shop_reason_and_signed_points(client, member):
    store = make_store()
    ledger.points_grant(member=member, points=100, reason="welcome gift", idempotency_key="t:g")
    ledger.points_earn(member=member, store=store, amount_fen=5_000, idempotency_key="t:e")
    ledger.points_redeem(member=member, store=store, points=30, idempotency_key="t:r")
    log_in(client, member)

    response = client.get(reverse("h5:history"))

    rows = response.context["rows"]
    assert [(row["label"], row["shop"], row["points"]) for row in rows] == [
        ("积分抵扣", store.name, -30),
        ("消费", store.name, 50),
        ("赠送", "", 100),
    ]
    page = text(response)
    assert "welcome gift" in page and store.name in page
    assert "+50" in page and "-30" in page


def test_history_names_check_in_points(client, member):
    plaza = make_plaza()
    with mock.patch("members.pushes.push_checkin"):
        checkin.checkin(member=member, plaza=plaza)
    log_in(client, member)

    rows = client.get(reverse("h5:history")).context["rows"]

    assert [(row["label"], row["points"]) for row in rows] == [("签到", settings.CHECKIN_POINTS)]


def test_history_is_paginated(client, member):
    for n in range(25):
        ledger.points_grant(member=member, points=n + 1, reason=f"gift {n}", idempotency_key=f"t:g:{n}")
    log_in(client, member)

    first = client.get(reverse("h5:history"))
    second = client.get(reverse("h5:history") + "?page=2")

    assert [row["points"] for row in first.context["rows"]] == list(range(25, 5, -1))
    assert [row["points"] for row in second.context["rows"]] == [5, 4, 3, 2, 1]
    assert 'href="?page=2"' in text(first) and 'href="?page=1"' in text(second)
    assert client.get(reverse("h5:history") + "?page=junk").status_code == 200


def test_history_shows_only_the_members_own_transactions(client, member):
    other = make_member()
    ledger.points_grant(member=other, points=77, reason="someone else's", idempotency_key="t:other")
    log_in(client, member)

    response = client.get(reverse("h5:history"))

    assert response.context["rows"] == []
    assert "someone else's" not in text(response)


def test_inbox_lists_messages_and_marks_them_read_on_view(client, member):
    other = make_member()
    for n in range(3):
        pushes.push_send(member=member, event="test", event_key=f"t:{n}", title=f"Hello {n}", body=f"Body {n}")
    pushes.push_send(member=other, event="test", event_key="t:other", title="Not yours", body="x")
    log_in(client, member)

    response = client.get(reverse("h5:inbox"))

    assert response.status_code == 200
    page = text(response)
    assert "Hello 0" in page and "Hello 2" in page and "Not yours" not in page
    assert page.count('class="unread"') == 3
    assert not InboxMessage.objects.filter(member=member, read_at__isnull=True).exists()
    assert InboxMessage.objects.filter(member=other, read_at__isnull=True).count() == 1
    assert text(client.get(reverse("h5:inbox"))).count('class="unread"') == 0


def test_inbox_links_only_web_pages(client, member):
    pushes.push_send(member=member, event="t", event_key="t:web", title="Web", body="b", link="/m/history/")
    pushes.push_send(member=member, event="t", event_key="t:js", title="Script", body="b", link="javascript:alert(1)")
    log_in(client, member)

    page = text(client.get(reverse("h5:inbox")))

    assert 'href="/m/history/"' in page
    assert "javascript:" not in page


def test_card_shows_the_unread_count(client, member):
    pushes.push_send(member=member, event="t", event_key="t:1", title="One", body="b")
    log_in(client, member)

    assert client.get(reverse("h5:card")).context["unread"] == 1
    client.get(reverse("h5:inbox"))
    assert client.get(reverse("h5:card")).context["unread"] == 0


# --- check-in -------------------------------------------------------------------------


@pytest.fixture
def plaza():
    plaza = make_plaza()
    plaza.notice = "周末满200减20"
    plaza.save(update_fields=["notice"])
    return plaza


def checkin_url(plaza):
    return reverse("h5:checkin", args=[checkin.checkin_token_make(plaza=plaza)])


def test_checkin_page_shows_the_plaza_and_a_login_button_to_a_visitor(client, plaza):
    url = checkin_url(plaza)

    response = client.get(url)

    assert response.status_code == 200
    page = text(response)
    assert plaza.name in page and plaza.notice in page
    assert f'href="{reverse("h5:login")}?next={quote(url)}"' in page


def test_checkin_post_without_login_goes_to_login_and_checks_nobody_in(client, plaza):
    url = checkin_url(plaza)

    response = client.post(url)

    assert response.status_code == 302
    assert login_next(response) == url
    assert not Checkin.objects.exists()


def test_checkin_post_checks_in_and_shows_points_streak_balance_and_notice(client, member, plaza):
    url = checkin_url(plaza)
    log_in(client, member)

    assert "立即签到" in text(client.get(url))
    response = client.post(url)

    assert response.status_code == 302 and response["Location"] == url
    page = text(client.get(url))
    assert f"+{settings.CHECKIN_POINTS}" in page
    assert "今日已签到" in page and "1 天" in page
    assert f'id="points-balance">{settings.CHECKIN_POINTS}<' in page
    assert plaza.notice in page
    assert Visit.objects.filter(member=member, plaza=plaza, kind=Visit.Kind.CHECKIN).count() == 1


def test_checkin_twice_a_day_earns_once(client, member, plaza):
    url = checkin_url(plaza)
    log_in(client, member)

    client.post(url)
    client.post(url)

    assert Checkin.objects.filter(member=member).count() == 1
    assert ledger.member_points_balance(member=member) == settings.CHECKIN_POINTS


def test_checkin_post_needs_the_csrf_token(member, plaza):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    log_in(client, member)

    response = client.post(checkin_url(plaza))

    assert response.status_code == 403
    assert not Checkin.objects.exists()


@pytest.mark.parametrize("token", ["forged", "eyJwIjoieCJ9:1abcde:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"])
def test_forged_checkin_token_is_a_friendly_404(client, member, token):
    log_in(client, member)

    get = client.get(reverse("h5:checkin", args=[token]))
    post = client.post(reverse("h5:checkin", args=[token]))

    assert get.status_code == post.status_code == 404
    assert "签到码无效" in text(get)
    assert 'class="topbar"' in text(get)  # the site's own page, not a bare error
    assert not Checkin.objects.exists()


def test_checkin_token_of_a_closed_plaza_is_a_404(client, plaza):
    url = checkin_url(plaza)
    plaza.is_active = False
    plaza.save(update_fields=["is_active"])

    assert client.get(url).status_code == 404


# --- pay at the shop ------------------------------------------------------------------


def test_pay_page_sends_a_visitor_to_login_and_then_shows_the_shop(client, member, settings):
    settings.O2O_SANDBOX = True
    store = make_store()
    store.unit = "L2-018"
    store.save(update_fields=["unit"])
    url = reverse("pay:page", args=[store.code])

    visitor = client.get(url)
    assert visitor.status_code == 302 and login_next(visitor) == url

    log_in(client, member)
    response = client.get(url)
    assert response.status_code == 200
    page = text(response)
    assert store.name in page and store.plaza.name in page and "L2-018" in page
    assert 'name="amount"' in page and 'value="sandbox"' in page


def test_pay_page_without_any_payment_channel_says_so(client, member, settings):
    settings.O2O_SANDBOX = False
    store = make_store()
    log_in(client, member)

    page = text(client.get(reverse("pay:page", args=[store.code])))

    assert 'name="amount"' not in page and "出示会员码" in page


def test_pay_page_of_an_unknown_or_closed_store_is_a_404(client):
    store = make_store()
    store.is_active = False
    store.save(update_fields=["is_active"])

    unknown = client.get(reverse("pay:page", args=["no-such-store"]))
    closed = client.get(reverse("pay:page", args=[store.code]))

    assert unknown.status_code == closed.status_code == 404
    assert "门店码无效" in text(unknown)


# --- QR images ------------------------------------------------------------------------


def test_checkin_qr_is_served_as_svg_and_png_with_long_cache_and_etag(client, plaza):
    token = checkin.checkin_token_make(plaza=plaza)

    svg = client.get(reverse("h5:qr", kwargs={"kind": "checkin", "key": token, "fmt": "svg"}))
    png = client.get(reverse("h5:qr", kwargs={"kind": "checkin", "key": token, "fmt": "png"}))

    assert svg.status_code == png.status_code == 200
    assert svg["Content-Type"] == "image/svg+xml" and svg.content.startswith(b"<svg")
    assert png["Content-Type"] == "image/png" and png.content.startswith(b"\x89PNG")
    for response in (svg, png):
        assert "public" in response["Cache-Control"] and "max-age=2592000" in response["Cache-Control"]
    assert svg["ETag"] != png["ETag"]


def test_qr_answers_304_to_a_matching_etag(client):
    store = make_store()
    url = reverse("h5:qr", kwargs={"kind": "pay", "key": store.code, "fmt": "svg"})
    etag = client.get(url)["ETag"]

    again = client.get(url, HTTP_IF_NONE_MATCH=etag)

    assert again.status_code == 304
    assert again.content == b""


def test_qr_carries_the_public_link(client, settings):
    store = make_store()
    settings.O2O_PUBLIC_BASE_URL = "https://mall.example.com"
    url = reverse("h5:qr", kwargs={"kind": "pay", "key": store.code, "fmt": "svg"})

    with mock.patch("members.views.qr_svg", return_value="<svg/>") as draw:
        client.get(url)

    draw.assert_called_once_with(f"https://mall.example.com/m/pay/{store.code}/")


@pytest.mark.parametrize("kind,key", [("checkin", "forged"), ("pay", "no-such-store")])
def test_qr_of_an_unknown_code_is_a_404(client, kind, key):
    assert client.get(reverse("h5:qr", kwargs={"kind": kind, "key": key, "fmt": "svg"})).status_code == 404


def test_qr_draws_only_checkin_and_pay_links(client):
    assert client.get("/m/qr/url/https%3A%2F%2Fevil.example.svg").status_code == 404


# --- language -------------------------------------------------------------------------


def test_language_switch_to_english_is_remembered_for_a_year(client, member):
    log_in(client, member)

    response = client.post(reverse("h5:language"), {"language": "en", "next": reverse("h5:history")})

    assert response.status_code == 302 and response["Location"] == reverse("h5:history")
    cookie = response.cookies[settings.LANGUAGE_COOKIE_NAME]
    assert cookie.value == "en" and int(cookie["max-age"]) >= 365 * 24 * 3600
    page = text(client.get(reverse("h5:card")))
    assert '<html lang="en">' in page
    assert "Member code" in page and "Points history" in page and "会员码" not in page


def test_language_switch_back_to_chinese(client, member):
    log_in(client, member)
    client.post(reverse("h5:language"), {"language": "en"})

    client.post(reverse("h5:language"), {"language": "zh-hans"})

    assert "会员码" in text(client.get(reverse("h5:card")))


def test_language_switch_refuses_to_redirect_off_site(client):
    response = client.post(reverse("h5:language"), {"language": "en", "next": "https://evil.example/"})

    assert not response["Location"].startswith("https://evil.example")


def test_every_page_offers_the_language_switch(client, member, plaza):
    log_in(client, member)

    for url in [reverse("h5:card"), reverse("h5:history"), reverse("h5:inbox"), checkin_url(plaza), reverse("h5:login")]:
        page = text(client.get(url, follow=True))
        assert re.search(r'<button type="submit" name="language" value="en"', page), url
