"""Check-in farming, as the attack: a photo of a poster must not earn points from home.

Through the real endpoints: the mini-program API (/api/mp/v1/checkin/), the H5 page
(/m/checkin/<token>/), the check-in screen in the admin, the printed posters.
"""

import json
import re
from datetime import datetime, timedelta
from unittest import mock

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone

from members import checkin, ledger, web_auth
from members.auth import shopper_token_issue
from members.models import Checkin, Member, Plaza
from tests.factories import make_member, make_plaza
from tests.fakes.platform_server import json_reply

pytestmark = pytest.mark.django_db

# Shanghai, in GCJ-02 (as a map shows the plaza) and, for the phone, WGS-84.
PLAZA_GCJ02 = (31.301228, 121.514412)


class Shopper:
    """The mini-program of one member."""

    def __init__(self, member: Member):
        self.member = member
        self.client = Client(headers={"Authorization": f"Bearer {shopper_token_issue(member=member).token}"})

    def checkin(self, token: str, **location):
        body = json.dumps({"token": token, **location})
        return self.client.post("/api/mp/v1/checkin/", data=body, content_type="application/json")


def assert_refused(response, status: int, code: str) -> dict:
    assert response.status_code == status, (response.status_code, response.content[:300])
    body = response.json()
    assert body["code"] == code and body["message"], body
    return body


def assert_no_checkin(member: Member) -> None:
    assert not Checkin.objects.filter(member=member).exists()
    assert ledger.member_points_balance(member=member) == 0


def frozen(at: datetime):
    return mock.patch("django.utils.timezone.now", lambda: at)


def configure(plaza: Plaza, **fields) -> Plaza:
    for name, value in fields.items():
        setattr(plaza, name, value)
    plaza.save()
    return plaza


@pytest.fixture
def member():
    return make_member()


@pytest.fixture
def shopper(member):
    return Shopper(member)


@pytest.fixture
def plaza():
    return make_plaza()


@pytest.fixture
def screen_only(plaza):
    """A plaza that takes the rotating code on its screen and nothing else."""
    return configure(plaza, checkin_accepts_permanent=False, checkin_accepts_printed=False, checkin_accepts_screen=True)


@pytest.fixture
def fenced(plaza):
    """A plaza that takes its permanent code only with a location inside 300 m."""
    return configure(
        plaza, checkin_accepts_permanent=False, checkin_accepts_printed=False, checkin_accepts_screen=True,
        checkin_accepts_location=True, latitude=PLAZA_GCJ02[0], longitude=PLAZA_GCJ02[1], geofence_radius_m=300,
    )


def log_in(client, member):
    session = client.session
    session[web_auth.SESSION_MEMBER] = member.pk
    session.save()


# --- printed links carry an expiry ---------------------------------------------------------


def test_a_photo_of_an_expired_printed_link_earns_nothing_in_the_app(shopper, member, plaza):
    token = checkin.checkin_token_make(plaza=plaza, expires_at=timezone.now() - timedelta(days=1))

    body = assert_refused(shopper.checkin(token), 400, "checkin_token_expired")

    assert "printed" in body["accepts"]
    assert_no_checkin(member)


def test_a_photo_of_an_expired_printed_link_earns_nothing_on_the_page(client, member, plaza):
    url = reverse("h5:checkin", args=[checkin.checkin_token_make(plaza=plaza, expires_at=timezone.now() - timedelta(seconds=1))])
    log_in(client, member)

    page, post = client.get(url), client.post(url)

    assert page.status_code == post.status_code == 410
    assert "签到码已过期" in page.content.decode() and "签到屏" in page.content.decode()
    assert_no_checkin(member)


def test_a_printed_link_checks_in_until_its_expiry_and_not_after(member, plaza):
    expires_at = timezone.now() + timedelta(days=30)
    token = checkin.checkin_token_make(plaza=plaza, expires_at=expires_at)

    with frozen(expires_at + timedelta(seconds=1)):
        assert_refused(Shopper(member).checkin(token), 400, "checkin_token_expired")
    assert_no_checkin(member)
    with frozen(expires_at - timedelta(seconds=1)):
        assert Shopper(member).checkin(token).json()["points"] == 10


def test_an_expiry_cannot_be_moved_in_the_signed_link(shopper, member, plaza):
    token = checkin.checkin_token_make(plaza=plaza, expires_at=timezone.now() - timedelta(days=1))
    payload, _, signature = token.partition(":")
    forged = checkin.checkin_token_make(plaza=plaza, expires_at=timezone.now() + timedelta(days=365)).split(":")[0]

    assert_refused(shopper.checkin(f"{forged}:{signature}"), 400, "checkin_token_invalid")
    assert_no_checkin(member)


def test_the_old_permanent_link_still_checks_in_where_the_plaza_accepts_it(shopper, plaza):
    assert plaza.checkin_accepts_permanent  # a new plaza does, as the contract says
    assert shopper.checkin(checkin.checkin_token_make(plaza=plaza)).json()["points"] == 10


def test_a_plaza_requiring_the_rotating_code_refuses_the_old_permanent_link(shopper, member, screen_only, client):
    token = checkin.checkin_token_make(plaza=screen_only)

    body = assert_refused(shopper.checkin(token), 403, "checkin_proof_required")
    assert body["accepts"] == ["screen"]
    log_in(client, member)
    page = client.get(reverse("h5:checkin", args=[token]))
    assert page.status_code == 403 and "扫描服务台签到屏上的签到码" in page.content.decode()
    assert client.post(reverse("h5:checkin", args=[token])).status_code == 403
    assert_no_checkin(member)


def test_a_plaza_that_turned_printed_links_off_refuses_them_before_expiry(shopper, member, plaza):
    configure(plaza, checkin_accepts_printed=False)
    token = checkin.checkin_token_make(plaza=plaza, expires_at=timezone.now() + timedelta(days=10))

    assert_refused(shopper.checkin(token), 403, "checkin_proof_required")
    assert_no_checkin(member)


# --- the rotating code on the screen -----------------------------------------------------


def test_a_valid_rotating_code_checks_in_once(member, screen_only):
    screen = checkin.checkin_screen_code(plaza=screen_only)
    shopper = Shopper(member)

    first, again = shopper.checkin(screen.link_token), shopper.checkin(screen.link_token)

    assert (first.status_code, first.json()["points"], first.json()["already"]) == (200, 10, False)
    assert (again.json()["points"], again.json()["already"]) == (0, True)
    assert Checkin.objects.filter(member=member).count() == 1
    assert ledger.member_points_balance(member=member) == 10


def test_a_screen_code_older_than_60_seconds_is_refused(member, screen_only):
    screen = checkin.checkin_screen_code(plaza=screen_only)
    assert screen.expires_at - screen.issued_at == timedelta(seconds=60)

    with frozen(screen.issued_at + timedelta(seconds=61)):
        assert_refused(Shopper(member).checkin(screen.link_token), 400, "checkin_token_expired")
    assert_no_checkin(member)
    with frozen(screen.issued_at + timedelta(seconds=59)):
        assert Shopper(member).checkin(screen.link_token).json()["points"] == 10


def test_the_screen_shows_a_new_code_every_30_seconds_the_same_on_every_screen(screen_only):
    now = timezone.now()
    a, b = checkin.checkin_screen_code(plaza=screen_only, at=now), checkin.checkin_screen_code(plaza=screen_only, at=now)
    later = checkin.checkin_screen_code(plaza=screen_only, at=now + timedelta(seconds=30))
    other = checkin.checkin_screen_code(plaza=make_plaza(), at=now)

    assert a.token == b.token and a.token != later.token and a.token != other.token
    assert a.refresh_at - a.issued_at == timedelta(seconds=30)
    assert later.issued_at == a.refresh_at


def test_a_screen_code_of_one_plaza_does_not_open_another(member, screen_only):
    other = make_plaza()
    token = checkin.checkin_screen_token(plaza=screen_only, at=timezone.now())

    with pytest.raises(checkin.CheckinTokenInvalid):
        checkin.checkin_scene_read(f"checkin:{other.code}:{token}")
    assert checkin.checkin_scene_read(f"checkin:{screen_only.code}:{token}").proof == checkin.Proof.SCREEN


def test_a_screen_link_opened_in_time_survives_the_login_but_not_in_another_browser(client, member, screen_only):
    screen = checkin.checkin_screen_code(plaza=screen_only)
    url = reverse("h5:checkin", args=[screen.link_token])
    assert client.get(url).status_code == 200  # scanned at the plaza, not logged in yet

    friend, friend_client = make_member(), Client()
    with frozen(screen.expires_at + timedelta(seconds=90)):  # a slow login
        log_in(client, member)
        assert client.post(url).status_code == 302
        log_in(friend_client, friend)
        assert friend_client.post(url).status_code == 410  # the link sent home

    assert Checkin.objects.filter(member=member).count() == 1
    assert_no_checkin(friend)


# --- the geofence --------------------------------------------------------------------------


def test_geofence_accepts_a_location_inside(shopper, member, fenced):
    token = checkin.checkin_token_make(plaza=fenced)
    inside = {"latitude": PLAZA_GCJ02[0] + 0.001, "longitude": PLAZA_GCJ02[1], "coordinate_system": "gcj02"}  # ~111 m

    assert shopper.checkin(token, **inside).json()["points"] == 10


def test_geofence_refuses_a_location_outside(shopper, member, fenced):
    token = checkin.checkin_token_make(plaza=fenced)
    home = {"latitude": PLAZA_GCJ02[0] + 0.02, "longitude": PLAZA_GCJ02[1], "coordinate_system": "gcj02"}  # ~2.2 km

    body = assert_refused(shopper.checkin(token, **home), 403, "checkin_out_of_range")

    assert 2100 < body["distance_m"] < 2300
    assert_no_checkin(member)


def test_geofence_refuses_no_location_when_the_code_alone_is_not_enough(shopper, member, fenced):
    body = assert_refused(shopper.checkin(checkin.checkin_token_make(plaza=fenced)), 403, "checkin_location_required")

    assert body["accepts"] == ["screen", "location"]
    assert_no_checkin(member)


def test_geofence_converts_a_gps_location_before_measuring(member, fenced):
    """GPS (WGS-84) and Chinese maps (GCJ-02) differ by ~500 m in Shanghai: more than the fence."""
    gps = (31.299280, 121.509980)
    gcj = checkin.checkin_location(latitude=gps[0], longitude=gps[1], datum="wgs84")
    configure(fenced, latitude=gcj.latitude, longitude=gcj.longitude)
    token = checkin.checkin_token_make(plaza=fenced)

    wrong = Shopper(member).checkin(token, latitude=gps[0], longitude=gps[1], coordinate_system="gcj02")
    assert_refused(wrong, 403, "checkin_out_of_range")
    right = Shopper(member).checkin(token, latitude=gps[0], longitude=gps[1], coordinate_system="wgs84")
    assert right.json()["points"] == 10


def test_a_location_does_not_revive_an_expired_code(shopper, member, fenced):
    token = checkin.checkin_token_make(plaza=fenced, expires_at=timezone.now() - timedelta(days=1))
    inside = {"latitude": PLAZA_GCJ02[0], "longitude": PLAZA_GCJ02[1], "coordinate_system": "gcj02"}

    assert_refused(shopper.checkin(token, **inside), 400, "checkin_token_expired")
    assert_no_checkin(member)


@pytest.mark.parametrize("location", [
    {"latitude": 31.3, "longitude": 121.5},  # which datum?
    {"latitude": "31.3", "longitude": 121.5, "coordinate_system": "gcj02"},
    {"latitude": True, "longitude": 121.5, "coordinate_system": "gcj02"},
    {"latitude": 91, "longitude": 121.5, "coordinate_system": "gcj02"},
    {"latitude": 31.3, "longitude": 121.5, "coordinate_system": "bd09"},
])
def test_a_malformed_location_is_a_validation_error(shopper, member, fenced, location):
    assert_refused(shopper.checkin(checkin.checkin_token_make(plaza=fenced), **location), 400, "validation_error")
    assert_no_checkin(member)


def test_the_page_asks_the_browser_for_its_location_and_checks_it(client, member, fenced):
    url = reverse("h5:checkin", args=[checkin.checkin_token_make(plaza=fenced)])
    log_in(client, member)

    page = client.get(url).content.decode()
    assert 'data-needs-location="1"' in page and "navigator.geolocation" in page
    assert client.post(url).status_code == 403  # no location: refused
    outside = client.post(url, {"latitude": PLAZA_GCJ02[0] + 0.02, "longitude": PLAZA_GCJ02[1]})
    assert outside.status_code == 403 and "不在签到范围内" in outside.content.decode()
    assert_no_checkin(member)

    gps = checkin.checkin_location(latitude=PLAZA_GCJ02[0], longitude=PLAZA_GCJ02[1], datum="wgs84")
    # The browser reports WGS-84: the point whose GCJ-02 is ~the plaza's.
    browser = (2 * PLAZA_GCJ02[0] - gps.latitude, 2 * PLAZA_GCJ02[1] - gps.longitude)
    assert client.post(url, {"latitude": browser[0], "longitude": browser[1]}).status_code == 302
    assert Checkin.objects.filter(member=member, plaza=fenced).count() == 1


# --- staff: the check-in screen and the printed posters ---------------------------------


@pytest.fixture
def boss(client):
    client.force_login(User.objects.create_superuser("boss", "boss@example.com", "pw"))


def screen_urls(plaza):
    return (
        reverse("admin:members_plaza_checkin_screen", args=[plaza.pk]),
        reverse("admin:members_plaza_checkin_screen_code", args=[plaza.pk]),
    )


def test_the_screen_shows_the_current_link_as_a_qr_in_the_sandbox(client, boss, screen_only, settings):
    settings.WECHAT_APP_ID = settings.WECHAT_APP_SECRET = ""
    page_url, code_url = screen_urls(screen_only)

    page = client.get(page_url)
    data = client.get(code_url).json()

    assert page.status_code == 200 and screen_only.name in page.content.decode() and code_url in page.content.decode()
    assert data["wechat_svg"] == "" and data["link_svg"].startswith("<")
    assert 0 < data["refresh_in"] <= 31
    token = re.fullmatch(r"http://testserver/m/checkin/([^/]+)/", data["link"])[1]
    code = checkin.checkin_token_read(token)
    assert code.proof == checkin.Proof.SCREEN and code.plaza == screen_only
    assert timezone.now() < code.expires_at <= timezone.now() + timedelta(seconds=60)


def test_the_screen_shows_a_temporary_wechat_code_once_per_time_step(client, boss, screen_only, platform_server):
    platform_server.script("/cgi-bin/token", json_reply({"access_token": "TOKEN-1", "expires_in": 7200}))
    platform_server.script(
        "/cgi-bin/qrcode/create", json_reply({"ticket": "T", "expire_seconds": 60, "url": "http://weixin.qq.com/q/tmp1"})
    )
    _page_url, code_url = screen_urls(screen_only)
    with override_settings(**platform_server.settings(), WECHAT_APP_ID="wx-oa", WECHAT_APP_SECRET="oa-secret"):
        with frozen(timezone.now()):
            first, again = client.get(code_url).json(), client.get(code_url).json()

    assert first["wechat_svg"].startswith("<") and first["wechat_svg"] == again["wechat_svg"]
    [request] = platform_server.requests_to("/cgi-bin/qrcode/create")
    body = request.json()
    assert body["action_name"] == "QR_STR_SCENE" and body["expire_seconds"] == 60
    scene = body["action_info"]["scene"]["scene_str"]
    assert len(scene) <= 64 and scene.startswith(f"checkin:{screen_only.code}:")
    assert checkin.checkin_scene_read(scene).proof == checkin.Proof.SCREEN


def test_a_plaza_code_of_32_characters_still_fits_a_wechat_scene():
    plaza = make_plaza(code="p" * 32)
    screen = checkin.checkin_screen_code(plaza=plaza, at=timezone.now() + timedelta(days=365 * 50))
    assert len(screen.scene) <= 64


def test_the_screen_needs_the_plaza_change_permission_or_the_screen_one(client, screen_only):
    page_url, code_url = screen_urls(screen_only)
    user = User.objects.create_user("screen-1", password="pw", is_staff=True)
    client.force_login(user)

    assert client.get(page_url).status_code == client.get(code_url).status_code == 403
    user.user_permissions.add(Permission.objects.get(codename="show_checkin_screen"))
    user = User.objects.get(pk=user.pk)
    client.force_login(user)
    assert client.get(page_url).status_code == client.get(code_url).status_code == 200
    client.logout()
    assert client.get(page_url).status_code == 302  # the admin's login


def test_a_plaza_without_the_rotating_code_has_no_screen(client, boss, plaza):
    configure(plaza, checkin_accepts_screen=False)
    page_url, code_url = screen_urls(plaza)

    assert client.get(page_url).status_code == 302
    assert client.get(code_url).status_code == 404


def test_posters_are_printed_for_the_days_staff_choose(client, boss, plaza):
    page = client.get(reverse("admin:members_plaza_print_qr", args=[plaza.pk]) + "?days=7").content.decode()

    token = re.search(r'<img src="/m/qr/checkin/([^"]+)\.svg"', page)[1]
    last_day = timezone.localdate() + timedelta(days=6)
    assert timezone.localdate(checkin.checkin_token_read(token).expires_at - timedelta(seconds=1)) == last_day
    assert 'name="days"' in page and 'value="7"' in page


def test_the_print_action_keeps_the_selection_to_print_again_with_other_days(client, boss, plaza):
    changelist = reverse("admin:members_plaza_changelist")

    page = client.post(changelist, {"action": "print_qr", "_selected_action": [plaza.pk], "days": "90"}).content.decode()

    token = re.search(r'<img src="/m/qr/checkin/([^"]+)\.svg"', page)[1]
    expires_at = checkin.checkin_token_read(token).expires_at
    assert timedelta(days=89) < expires_at - timezone.now() <= timedelta(days=90)
    assert f'action="{changelist}"' in page and f'name="_selected_action" value="{plaza.pk}"' in page


def test_the_admin_refuses_a_geofence_without_coordinates(client, boss, plaza):
    url = reverse("admin:members_plaza_change", args=[plaza.pk])
    form = {
        "code": plaza.code, "name": plaza.name, "city": "", "address": "", "notice": "", "is_active": "on",
        "checkin_accepts_screen": "on", "checkin_accepts_location": "on", "latitude": "", "longitude": "",
        "geofence_radius_m": "300",
    }

    response = client.post(url, form)

    assert response.status_code == 200 and "须填写纬度和经度" in response.content.decode()
    plaza.refresh_from_db()
    assert not plaza.checkin_accepts_location
    form.update(latitude=str(PLAZA_GCJ02[0]), longitude=str(PLAZA_GCJ02[1]))
    assert client.post(url, form).status_code == 302
    plaza.refresh_from_db()
    assert plaza.checkin_accepts_location and not plaza.checkin_accepts_permanent and plaza.latitude == PLAZA_GCJ02[0]
