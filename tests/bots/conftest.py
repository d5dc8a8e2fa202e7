import pytest

from members import services
from tests.bots.platforms import WECHAT_AES_KEY, WECHAT_APP_ID, WECHAT_TOKEN, WeChat


@pytest.fixture
def plaza(db):
    plaza = services.plaza_create(code="sh-wanda", name="上海五角场万达广场", city="上海")
    plaza.notice = "星巴克买一送一"
    plaza.save(update_fields=["notice"])
    return plaza


@pytest.fixture(params=["plaintext", "safe"])
def mode(request):
    return request.param


def configure_wechat(settings, *, aes_key: str) -> None:
    """The official account configured for messages only (no app secret: WeChat's API
    is not called); no AES key is plaintext mode."""
    settings.WECHAT_TOKEN = WECHAT_TOKEN
    settings.WECHAT_APP_ID = WECHAT_APP_ID
    settings.WECHAT_APP_SECRET = ""
    settings.WECHAT_ENCODING_AES_KEY = aes_key


@pytest.fixture
def wechat_settings(settings, mode):
    configure_wechat(settings, aes_key=WECHAT_AES_KEY if mode == "safe" else "")
    return settings


@pytest.fixture
def wechat(db, client, wechat_settings, mode, django_capture_on_commit_callbacks):
    """WeChat posting to /wechat/, once in plaintext mode and once in safe mode."""
    return WeChat(client, safe=mode == "safe", on_commit=django_capture_on_commit_callbacks)


@pytest.fixture
def safe_wechat(db, client, settings, django_capture_on_commit_callbacks):
    """WeChat in safe mode only, for what only safe mode has (msg_signature, AES)."""
    configure_wechat(settings, aes_key=WECHAT_AES_KEY)
    return WeChat(client, safe=True, on_commit=django_capture_on_commit_callbacks)
