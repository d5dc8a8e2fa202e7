"""Settings come from the environment and refuse unsafe combinations."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def manage(*args, **env):
    clean = {
        k: v for k, v in os.environ.items()
        if k not in {"DEBUG", "SECRET_KEY", "SECRET_KEY_FALLBACKS", "O2O_SANDBOX", "ALLOWED_HOSTS", "DJANGO_SETTINGS_MODULE"}
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=120
    )


def test_refuses_to_start_with_debug_off_and_no_secret_key():
    result = manage("check", DEBUG="0")
    assert result.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in result.stderr


def test_with_no_environment_at_all_debug_is_off_and_nothing_starts():
    """The unsafe default was DEBUG on with a SECRET_KEY written in the code."""
    result = manage("check")
    assert result.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in result.stderr


def test_refuses_to_start_with_debug_off_and_no_allowed_hosts():
    result = manage("check", DEBUG="0", SECRET_KEY=secrets.token_urlsafe(60))
    assert result.returncode != 0
    assert "ALLOWED_HOSTS must be set when DEBUG is off" in result.stderr


def test_the_demo_key_is_random_per_machine_and_not_in_the_code(tmp_path):
    code = "from django.conf import settings; print(settings.SECRET_KEY, settings.DEBUG, settings.O2O_SANDBOX)"
    first = manage("shell", "--no-imports", "-c", code, DEBUG="1", O2O_VAR_DIR=str(tmp_path))
    again = manage("shell", "--no-imports", "-c", code, DEBUG="1", O2O_VAR_DIR=str(tmp_path))
    other = manage("shell", "--no-imports", "-c", code, DEBUG="1", O2O_VAR_DIR=str(tmp_path / "other"))
    key, debug, sandbox = first.stdout.split()
    assert (debug, sandbox) == ("True", "True")
    assert len(key) >= 50 and again.stdout.split()[0] == key  # made once, kept in var/
    assert other.stdout.split()[0] != key
    assert key not in (ROOT / "o2o_site" / "settings.py").read_text()
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_old_keys_can_be_kept_for_rotation():
    code = "from django.conf import settings; print(settings.SECRET_KEY_FALLBACKS)"
    result = manage("shell", "--no-imports", "-c", code, DEBUG="1", SECRET_KEY="new-" + "k" * 50,
                    SECRET_KEY_FALLBACKS="old-one-" + "a" * 50 + ", old-two-" + "b" * 50)
    assert result.stdout.strip() == str(["old-one-" + "a" * 50, "old-two-" + "b" * 50]), result.stderr


@pytest.mark.django_db
def test_a_shopper_token_signed_with_the_previous_key_still_verifies_after_rotation(settings):
    from members.auth import shopper_token_issue, shopper_token_read
    from tests.factories import make_member

    member = make_member()
    old_key = settings.SECRET_KEY
    token = shopper_token_issue(member=member).token
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = "rotated-" + "r" * 50, [old_key]
    assert shopper_token_read(token=token).pk == member.pk
    settings.SECRET_KEY_FALLBACKS = []
    with pytest.raises(Exception):
        shopper_token_read(token=token)


def test_refuses_sandbox_with_debug_off():
    result = manage("check", DEBUG="0", SECRET_KEY=secrets.token_urlsafe(60), ALLOWED_HOSTS="mall.example.com", O2O_SANDBOX="1")
    assert result.returncode != 0
    assert "O2O_SANDBOX is refused when DEBUG is off" in result.stderr


def test_deploy_check_is_clean_with_production_settings():
    result = manage(
        "check", "--deploy", "--fail-level", "WARNING",
        DEBUG="0", SECRET_KEY=secrets.token_urlsafe(60), ALLOWED_HOSTS="mall.example.com",
    )
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_a_malformed_boolean_is_an_error_not_a_guess():
    result = manage("check", DEBUG="maybe")
    assert result.returncode != 0 and "DEBUG must be a boolean" in result.stderr


@pytest.mark.parametrize("name", ["WECHAT_API_BASE_URL", "WECHAT_PAY_API_BASE_URL", "ALIPAY_GATEWAY_URL"])
def test_platform_base_urls_come_from_the_environment(name):
    code = f"from django.conf import settings; print(settings.{name})"
    result = manage("shell", "--no-imports", "-c", code, DEBUG="1", **{name: "http://127.0.0.1:9/fake/"})
    assert result.stdout.strip() == "http://127.0.0.1:9/fake/", result.stderr


def test_a_sqlite_database_url_keeps_wal_immediate_and_the_busy_timeout(tmp_path):
    """DATABASE_URL=sqlite:///path used to drop the options: 19 of 20 concurrent redemptions failed locked."""
    code = "from django.conf import settings; d = settings.DATABASES['default']; print(d['NAME'], d['OPTIONS'], d['CONN_MAX_AGE'])"
    result = manage("shell", "--no-imports", "-c", code, DEBUG="1", DATABASE_URL=f"sqlite:///{tmp_path}/db.sqlite3")
    assert result.returncode == 0, result.stderr
    assert f"{tmp_path}/db.sqlite3" in result.stdout
    assert "'transaction_mode': 'IMMEDIATE'" in result.stdout and "'timeout': 30" in result.stdout
    assert "journal_mode=WAL" in result.stdout and "busy_timeout=30000" in result.stdout


def test_migrate_alone_makes_the_database_cache_table(tmp_path):
    """Throttles, access tokens and the cluster's heartbeat live in the cache: `migrate` must make its table."""
    db = tmp_path / "db.sqlite3"
    result = manage("migrate", "--noinput", DEBUG="1", DATABASE_URL=f"sqlite:///{db}", REDIS_URL="", O2O_VAR_DIR=str(tmp_path))
    assert result.returncode == 0, result.stderr
    import sqlite3

    tables = {row[0] for row in sqlite3.connect(db).execute("select name from sqlite_master where type='table'")}
    assert "o2o_cache" in tables


def test_an_empty_variable_is_unset_not_an_empty_value():
    """LOG_LEVEL= crashed the start; WECHAT_API_BASE_URL= became "", MERCHANT_API_RATE= too."""
    code = "from django.conf import settings as s; print(s.WECHAT_API_BASE_URL, s.MERCHANT_API_RATE, s.VAR_DIR.name)"
    result = manage("shell", "--no-imports", "-c", code, DEBUG="1", LOG_LEVEL="", WECHAT_API_BASE_URL="",
                    MERCHANT_API_RATE="", O2O_VAR_DIR="")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["https://api.weixin.qq.com/", "1200/min", "var"]
