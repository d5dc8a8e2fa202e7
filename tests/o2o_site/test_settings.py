"""Settings come from the environment and refuse unsafe combinations."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def manage(*args, **env):
    clean = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "SECRET_KEY", "O2O_SANDBOX", "ALLOWED_HOSTS"}}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=120
    )


def test_refuses_to_start_with_debug_off_and_no_secret_key():
    result = manage("check", DEBUG="0")
    assert result.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in result.stderr


def test_refuses_sandbox_with_debug_off():
    result = manage("check", DEBUG="0", SECRET_KEY=secrets.token_urlsafe(60), O2O_SANDBOX="1")
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
    result = manage("shell", "--no-imports", "-c", code, **{name: "http://127.0.0.1:9/fake/"})
    assert result.stdout.strip() == "http://127.0.0.1:9/fake/", result.stderr
