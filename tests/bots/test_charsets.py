"""A charset that is not text is a 400 on both endpoints, before anything reads the
request with it, and never a 500 (rot13, base64 … are codecs Python knows, so being
known to ``codecs.lookup`` is not enough); real text charsets still work.

One hole was Django's, not the endpoints': a byte transform as the Content-Type's
charset made Django raise while it built the request; o2o_site/wsgi.py refuses it first.
"""

import io
from urllib.parse import quote_from_bytes, urlencode

import pytest
from django.test import override_settings

from bots.inbound import BadInbound, text_charset
from members.models import Checkin, Member
from tests.bots.conftest import configure_wechat
from tests.bots.effects import effects
from tests.bots.platforms import WeChat, alipay_answer, alipay_form, fixture_xml, xml_dict
from tests.bots.test_alipay_gateway import USER_ID, alipay  # noqa: F401 — a fixture
from tests.fakes.platform_server import rsa2_sign

pytestmark = pytest.mark.django_db

NOT_TEXT = ["rot13", "base64", "hex", "zlib", "bz2", "uu", "utf-16", "utf-16-le", "utf-32", "utf-7", "idna",
            "punycode", "unicode_escape", "cp037", "no-such-charset", "utf-8\x00"]
# Charsets in a Content-Type that Django hands to the view: it ignores a name
# codecs.lookup does not know, and decodes the query string in a text codec.
CONTENT_TYPE_NOT_TEXT = ["utf-16", "utf-16-le", "utf-32", "utf-7", "cp037", "idna", "no-such-charset"]
# Byte transforms Django decodes the query string in while it builds the request,
# before any middleware or view, and raises: see the last tests.
CONTENT_TYPE_TRANSFORMS = ["rot13", "base64", "hex", "zlib", "bz2", "uu"]


@pytest.mark.parametrize("name", NOT_TEXT + ["", "x" * 1000])
def test_only_text_charsets_are_read(name):
    with pytest.raises(BadInbound):
        text_charset(name)


@pytest.mark.parametrize(("name", "codec"), [
    ("UTF-8", "utf-8"), ("utf8", "utf-8"), ("us-ascii", "ascii"), ("GBK", "gbk"), ("cp936", "gbk"),
    ("GB2312", "gb2312"), ("GB18030", "gb18030"),
])
def test_text_charsets_are_named_by_their_codec(name, codec):
    assert text_charset(name) == codec


# --- /wechat/ -------------------------------------------------------------------------------


def post_wechat(wechat, body: bytes, query: dict[str, str], content_type: str = "text/xml"):
    # client.post would encode the body in the Content-Type's charset itself; generic sends it as is.
    return wechat.client.generic("POST", "/wechat/?" + urlencode(query), body, content_type=content_type)


@pytest.mark.parametrize("encoding", NOT_TEXT)
def test_wechat_refuses_an_xml_declaration_that_is_not_text(wechat, plaza, encoding):
    # In safe mode the declaration heads the envelope: msg_signature covers Encrypt alone.
    body, query = wechat.body_and_query(fixture_xml("wechat/subscribe_scene.xml"))
    before = effects()
    response = post_wechat(wechat, f'<?xml version="1.0" encoding="{encoding}"?>{body}'.encode(), query)
    assert response.status_code == 400
    assert effects() == before and not Member.objects.exists() and not Checkin.objects.exists()


@pytest.mark.parametrize("encoding", ["rot13", "base64", "utf-16", "no-such-charset"])
def test_wechat_refuses_a_declaration_that_is_not_text_inside_the_encrypted_message(safe_wechat, plaza, encoding):
    xml = f"<?xml version='1.0' encoding='{encoding}'?>" + fixture_xml("wechat/subscribe_scene.xml")
    assert safe_wechat.post(xml).status_code == 400
    assert not Member.objects.exists() and not Checkin.objects.exists()


@pytest.mark.parametrize("charset", CONTENT_TYPE_NOT_TEXT)
def test_wechat_refuses_a_content_type_charset_that_is_not_text(wechat, plaza, charset):
    body, query = wechat.body_and_query(fixture_xml("wechat/subscribe_scene.xml"))
    before = effects()
    response = post_wechat(wechat, body.encode(), query, content_type=f"text/xml; charset={charset}")
    assert response.status_code == 400
    assert effects() == before and not Member.objects.exists() and not Checkin.objects.exists()


@pytest.mark.parametrize("charset", ["utf-16", "no-such-charset"])
def test_wechat_url_verification_refuses_a_content_type_charset_that_is_not_text(client, wechat, charset):
    query = {**wechat.query(), "echostr": "42"}
    response = client.generic("GET", "/wechat/?" + urlencode(query), CONTENT_TYPE=f"text/xml; charset={charset}")
    assert response.status_code == 400 and b"42" not in response.content


def test_wechat_reads_a_gbk_message_in_plaintext_mode(client, settings):
    configure_wechat(settings, aes_key="")
    wechat = WeChat(client, safe=False)
    xml = '<?xml version="1.0" encoding="GBK"?>' + fixture_xml("wechat/text.xml", Content="积分")
    response = post_wechat(wechat, xml.encode("gbk"), wechat.query())
    assert "您的积分：0 分" in wechat.reply(response)["Content"]
    xml = fixture_xml("wechat/text.xml", Content="帮助", MsgId=2)
    response = post_wechat(wechat, xml.encode("gb18030"), wechat.query(), content_type="text/xml; charset=GB18030")
    assert "您可以发送" in wechat.reply(response)["Content"]


def test_wechat_refuses_a_body_that_is_not_in_its_charset(wechat):
    body, query = wechat.body_and_query(fixture_xml("wechat/text.xml", Content="积分"))
    response = post_wechat(wechat, body.encode("utf-16"), query)  # UTF-16 with a BOM, declared as nothing: UTF-8
    assert response.status_code == 400 and not Member.objects.exists()


# --- /alipay/gateway/ ---------------------------------------------------------------------


def alipay_raw(alipay, params: dict[str, str], *, charset: str = "utf-8", content_type: str | None = None):
    body = "&".join(
        f"{quote_from_bytes(k.encode(charset))}={quote_from_bytes(v.encode(charset))}" for k, v in params.items()
    ).encode("ascii")
    content_type = content_type or "application/x-www-form-urlencoded"
    with alipay.on_commit(execute=True):
        return alipay.client.generic("POST", "/alipay/gateway/", body, content_type=content_type)


def signed_form(alipay, biz_content: str, *, charset: str) -> dict[str, str]:
    params = {"service": "alipay.mobile.public.message.notify", "biz_content": biz_content, "charset": charset,
              "sign_type": "RSA2"}
    content = "&".join(f"{k}={params[k]}" for k in sorted(params) if k not in ("sign", "sign_type"))
    return {**params, "sign": rsa2_sign(content, alipay.alipay_keys.private_pem)}


@pytest.mark.parametrize("charset", NOT_TEXT)
def test_alipay_refuses_a_charset_parameter_that_is_not_text(alipay, plaza, charset):
    before = effects()
    # Signed or not, it is refused before the signature is looked at: decoding comes first.
    params = signed_form(alipay, fixture_xml("alipay/follow_scene.xml"), charset=charset)
    response = alipay_raw(alipay, params)
    assert response.status_code == 400
    assert effects() == before and not Member.objects.exists() and alipay.sent() == []


@pytest.mark.parametrize("charset", CONTENT_TYPE_NOT_TEXT)
def test_alipay_refuses_a_content_type_charset_that_is_not_text(alipay, plaza, charset):
    before = effects()
    params = alipay_form(fixture_xml("alipay/follow_scene.xml"), alipay_private_pem=alipay.alipay_keys.private_pem)
    response = alipay_raw(alipay, params, content_type=f"application/x-www-form-urlencoded; charset={charset}")
    assert response.status_code == 400
    assert effects() == before and not Member.objects.exists() and alipay.sent() == []


@pytest.mark.parametrize("encoding", ["rot13", "base64", "utf-16", "no-such-charset"])
def test_alipay_refuses_biz_content_declaring_a_charset_that_is_not_text(alipay, plaza, encoding):
    biz = f'<?xml version="1.0" encoding="{encoding}"?>' + fixture_xml("alipay/follow_scene.xml")
    response = alipay_raw(alipay, signed_form(alipay, biz, charset="UTF-8"))
    assert response.status_code == 400
    assert not Member.objects.exists() and alipay.sent() == []


def test_alipay_reads_a_gbk_form(alipay):
    biz = '<?xml version="1.0" encoding="GBK"?>' + fixture_xml("alipay/text.xml", Content="积分")
    response = alipay_raw(alipay, signed_form(alipay, biz, charset="GBK"), charset="gbk")
    assert response.status_code == 200
    assert xml_dict(alipay_answer(response.content, app_public_pem=alipay.app_keys.public_pem))["MsgType"] == "ack"
    [sent] = alipay.sent()
    assert sent["to_user_id"] == USER_ID and "您的积分：0 分" in sent["text"]["content"]


def test_alipay_the_content_types_charset_wins_over_the_parameter(alipay):
    biz = fixture_xml("alipay/text.xml", Content="积分")
    params = signed_form(alipay, biz, charset="GBK")
    response = alipay_raw(alipay, params, charset="utf-8",
                          content_type="application/x-www-form-urlencoded; charset=UTF-8")
    assert response.status_code == 200 and "您的积分" in alipay.sent()[0]["text"]["content"]


def test_without_keys_a_bad_charset_is_still_a_404(client):
    with override_settings(ALIPAY_APP_ID="", ALIPAY_APP_PRIVATE_KEY="", ALIPAY_PUBLIC_KEY=""):
        response = client.generic("POST", "/alipay/gateway/", b"charset=rot13",
                                  content_type="application/x-www-form-urlencoded; charset=rot13")
    assert response.status_code == 404


# --- before the view ---------------------------------------------------------------------


def wsgi_status(path: str, query: str, content_type: str, body: bytes = b"") -> str:
    """The status line the site's WSGI application (what gunicorn runs) answers."""
    from django.core.signals import request_finished
    from django.db import close_old_connections

    from o2o_site.wsgi import application

    environ = {
        "REQUEST_METHOD": "POST", "PATH_INFO": path, "QUERY_STRING": query, "SCRIPT_NAME": "",
        "CONTENT_TYPE": content_type, "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body),
        "SERVER_NAME": "testserver", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http",
        "wsgi.errors": io.StringIO(), "wsgi.multithread": True, "wsgi.multiprocess": True, "wsgi.run_once": False,
    }
    statuses = []
    request_finished.disconnect(close_old_connections)  # as Django's test client does: the test's connection
    try:
        response = application(environ, lambda status, headers, exc_info=None: statuses.append(status))
        getattr(response, "close", lambda: None)()  # WSGI: close() only if the iterable has one
    finally:
        request_finished.connect(close_old_connections)
    return statuses[0]


@pytest.mark.parametrize("path", ["/wechat/", "/alipay/gateway/"])
@pytest.mark.parametrize("charset", CONTENT_TYPE_TRANSFORMS)
def test_a_byte_transform_in_the_content_type_is_a_400_before_any_view(client, settings, alipay, path, charset):
    configure_wechat(settings, aes_key="")
    query = urlencode(WeChat(client, safe=False).query()) if path == "/wechat/" else "any=thing"  # "" is not decoded
    assert wsgi_status(path, query, f"text/xml; charset={charset}", b"<xml/>").startswith("400 ")
    assert not Member.objects.exists()


@pytest.mark.parametrize(("path", "charset"), [("/wechat/", "utf-16"), ("/alipay/gateway/", "no-such-charset")])
def test_the_site_answers_a_text_charset_it_does_not_read_with_a_400(client, settings, alipay, path, charset):
    configure_wechat(settings, aes_key="")
    query = urlencode(WeChat(client, safe=False).query()) if path == "/wechat/" else "any=thing"
    assert wsgi_status(path, query, f"text/xml; charset={charset}", b"<xml/>").startswith("400 ")
