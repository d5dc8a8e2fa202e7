"""Setting up the official account: the menu and the plazas' permanent check-in QR codes."""

import io

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings
from PIL import Image

from bots.commands import COMMANDS
from bots.official_account import MENU
from tests.fakes.platform_server import json_reply

pytestmark = pytest.mark.django_db

QR_URL = "http://weixin.qq.com/q/kZgfwMTm72WWPkovabbI"


@pytest.fixture
def wechat_api(platform_server):
    platform_server.script("/cgi-bin/token", json_reply({"access_token": "TOKEN-1", "expires_in": 7200}))
    with override_settings(**platform_server.settings(), WECHAT_APP_ID="wx-oa", WECHAT_APP_SECRET="oa-secret"):
        yield platform_server


def _buttons(menu):
    for button in menu["button"]:
        yield from button.get("sub_button", [button])


def test_every_menu_button_runs_a_command_and_every_command_has_a_button():
    keys = [button["key"] for button in _buttons(MENU)]
    assert sorted(keys) == sorted(COMMANDS)


def test_the_menu_is_installed_through_menu_create(wechat_api):
    wechat_api.script("/cgi-bin/menu/create", json_reply({"errcode": 0, "errmsg": "ok"}))
    out = io.StringIO()
    call_command("wechat_menu", stdout=out)
    [request] = wechat_api.requests_to("/cgi-bin/menu/create")
    assert request.param("access_token") == "TOKEN-1" and request.json() == MENU
    assert "Menu installed" in out.getvalue()


def test_a_refused_menu_is_a_command_error(wechat_api):
    wechat_api.script("/cgi-bin/menu/create", json_reply({"errcode": 40018, "errmsg": "invalid button name size"}))
    with pytest.raises(CommandError, match="40018"):
        call_command("wechat_menu")


def test_the_menu_needs_the_app_secret_but_a_dry_run_does_not(settings):
    settings.WECHAT_APP_ID = settings.WECHAT_APP_SECRET = ""
    with pytest.raises(CommandError, match="WECHAT_APP_SECRET"):
        call_command("wechat_menu")
    out = io.StringIO()
    call_command("wechat_menu", "--dry-run", stdout=out)
    assert '"key": "member_code"' in out.getvalue()


def test_a_plazas_permanent_qr_code_is_created_and_drawn_locally(wechat_api, plaza, tmp_path):
    wechat_api.script("/cgi-bin/qrcode/create", json_reply({"ticket": "gQH47joAAAAAAAAAASxod", "url": QR_URL}))
    out = io.StringIO()
    call_command("wechat_plaza_qr", "sh-wanda", "--out", str(tmp_path / "qr.png"), stdout=out)
    [request] = wechat_api.requests_to("/cgi-bin/qrcode/create")
    assert request.json() == {
        "action_name": "QR_LIMIT_STR_SCENE", "action_info": {"scene": {"scene_str": "checkin:sh-wanda"}},
    }
    assert Image.open(tmp_path / "qr.png").format == "PNG"
    assert f"url:    {QR_URL}" in out.getvalue()
    # Only the API base is called: the image is not fetched from mp.weixin.qq.com.
    assert {r.path for r in wechat_api.requests} == {"/cgi-bin/token", "/cgi-bin/qrcode/create"}
    call_command("wechat_plaza_qr", "sh-wanda", "--out", str(tmp_path / "qr.svg"), stdout=io.StringIO())
    assert (tmp_path / "qr.svg").read_text().startswith("<")


def test_a_qr_code_for_an_unknown_plaza_or_without_credentials_is_a_command_error(wechat_api, settings):
    with pytest.raises(CommandError, match="plaza_not_found"):
        call_command("wechat_plaza_qr", "nowhere")
    assert wechat_api.requests_to("/cgi-bin/qrcode/create") == []
    with override_settings(WECHAT_APP_SECRET=""), pytest.raises(CommandError, match="WECHAT_APP_SECRET"):
        call_command("wechat_plaza_qr", "sh-wanda")


def test_the_plaza_admin_action_creates_and_shows_the_codes(wechat_api, plaza, rf):
    from django.contrib import admin as django_admin
    from django.contrib.auth.models import User
    from django.contrib.messages.storage.fallback import FallbackStorage
    from django.utils import translation

    from bots.admin import create_wechat_checkin_qr
    from members.models import Plaza

    wechat_api.script("/cgi-bin/qrcode/create", json_reply({"ticket": "T-1", "url": QR_URL}))
    request = rf.post("/admin/members/plaza/")
    request.user = User.objects.create_superuser("boss", password="pw")
    request.session, request._messages = {}, None
    request._messages = FallbackStorage(request)
    response = create_wechat_checkin_qr(django_admin.site._registry[Plaza], request, Plaza.objects.all())
    page = response.content.decode()
    assert response.status_code == 200 and "checkin:sh-wanda" in page and "data:image/png;base64," in page
    with override_settings(WECHAT_APP_SECRET=""), translation.override("en"):  # the message, as English staff read it
        assert create_wechat_checkin_qr(django_admin.site._registry[Plaza], request, Plaza.objects.all()) is None
    assert "must be set" in str(list(request._messages)[-1])
