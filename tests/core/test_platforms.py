import socket

import pytest
import requests
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from core import platforms
from core.platforms import (
    FALLBACK_CLIENT_IP,
    PlatformBadNotification,
    PlatformBadResponse,
    PlatformRejected,
    PlatformUnavailable,
    WeChatApiClient,
)
from tests.fakes.platform_server import (  # noqa: F401 (platform_server is a fixture)
    Reply,
    alipay_request_signature_valid,
    alipay_signed_response,
    json_reply,
    parse_wechat_pay_xml,
    platform_server,
    rsa2_sign,
    rsa_key_pair,
    text_reply,
    wechat_pay_sign,
    wechat_pay_refund_notification,
    wechat_pay_signature_valid,
    wechat_pay_xml,
    xml_reply,
)

# The Django cache is the DatabaseCache in the embedded default, and conftest clears
# it around every test.
pytestmark = pytest.mark.django_db

PAY_KEY = "0123456789abcdef0123456789abcdef"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@pytest.fixture(autouse=True)
def no_name_lookups(monkeypatch):
    """Fail the test on any DNS lookup: everything here talks to 127.0.0.1."""
    looked_up: list[str] = []
    real_getaddrinfo, real_gethostbyname = socket.getaddrinfo, socket.gethostbyname

    def getaddrinfo(host, *args, **kwargs):
        if host not in LOOPBACK:
            looked_up.append(host)
            raise AssertionError(f"DNS lookup of {host}")
        return real_getaddrinfo(host, *args, **kwargs)

    def gethostbyname(host):
        if host not in LOOPBACK:
            looked_up.append(host)
            raise AssertionError(f"DNS lookup of {host}")
        return real_gethostbyname(host)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket, "gethostbyname", gethostbyname)
    yield looked_up
    assert looked_up == []




@pytest.fixture
def fake(platform_server, app_keys, alipay_keys):
    """Every platform configured, every base pointed at the fake server."""
    with override_settings(
        **platform_server.settings(),
        WECHAT_APP_ID="wx-oa",
        WECHAT_APP_SECRET="oa-secret",
        WECHAT_MINIAPP_ID="wx-mini",
        WECHAT_MINIAPP_SECRET="mini-secret",
        WECHAT_PAY_MCH_ID="1900000109",
        WECHAT_PAY_API_KEY=PAY_KEY,
        WECHAT_PAY_CERT_PATH="",
        WECHAT_PAY_KEY_PATH="",
        ALIPAY_APP_ID="2021000000000001",
        ALIPAY_APP_PRIVATE_KEY=app_keys.private_pem,
        ALIPAY_PUBLIC_KEY=alipay_keys.public_pem,
        PLATFORM_TIMEOUT_SECONDS=2,
    ):
        yield platform_server


def token_reply(token: str = "TOKEN-1") -> Reply:
    return json_reply({"access_token": token, "expires_in": 7200})


# --- WeChat ---------------------------------------------------------------------------


def test_access_token_is_fetched_from_configured_base_and_shared_through_cache(fake):
    fake.script("/cgi-bin/token", token_reply("TOKEN-1"))
    fake.script("/cgi-bin/user/info", json_reply({"openid": "o-1", "unionid": "u-1", "subscribe": 1}))

    user = platforms.wechat_client().user.get("o-1")

    assert user["unionid"] == "u-1"
    [token_request] = fake.requests_to("/cgi-bin/token")
    assert token_request.method == "GET"
    assert token_request.param("appid") == "wx-oa"
    assert token_request.param("secret") == "oa-secret"
    assert token_request.param("grant_type") == "client_credential"
    [info_request] = fake.requests_to("/cgi-bin/user/info")
    assert info_request.param("access_token") == "TOKEN-1"
    assert info_request.param("openid") == "o-1"
    assert cache.get("wechatpy:wx-oa_access_token") == "TOKEN-1"

    # Another worker builds its own client and finds the token in the shared cache.
    other_worker = WeChatApiClient(appid="wx-oa", secret="oa-secret", api_root=fake.url, timeout=2)
    other_worker.user.get("o-1")
    assert len(fake.requests_to("/cgi-bin/token")) == 1
    assert [r.param("access_token") for r in fake.requests_to("/cgi-bin/user/info")] == ["TOKEN-1", "TOKEN-1"]


def test_clients_are_built_once_per_process_and_follow_settings(fake):
    assert platforms.wechat_client() is platforms.wechat_client()
    assert platforms.wechat_client() is not platforms.miniapp_client()
    with override_settings(WECHAT_API_BASE_URL="http://127.0.0.1:9/elsewhere"):
        moved = platforms.wechat_client()
    assert moved.api_root == "http://127.0.0.1:9/elsewhere/"
    assert platforms.wechat_client().api_root == fake.url


def test_expired_token_is_fetched_again_and_the_call_retried_on_the_configured_base(fake):
    tokens = iter(["OLD", "NEW"])
    fake.script("/cgi-bin/token", lambda request: token_reply(next(tokens)))
    expired = {"errcode": 42001, "errmsg": "access_token expired"}
    fake.script(
        "/cgi-bin/user/info",
        lambda request: json_reply({"openid": "o-1"} if request.param("access_token") == "NEW" else expired),
    )

    assert platforms.wechat_client().user.get("o-1") == {"openid": "o-1"}
    assert [r.param("access_token") for r in fake.requests_to("/cgi-bin/user/info")] == ["OLD", "NEW"]
    assert cache.get("wechatpy:wx-oa_access_token") == "NEW"


def test_sub_apis_with_their_own_base_go_to_the_configured_base(fake):
    fake.script("/cgi-bin/token", token_reply())
    fake.script("/wxa/msg_sec_check", json_reply({"errcode": 0, "errmsg": "ok"}))
    fake.script("/wxa/getwxacodeunlimit", Reply(body=b"\x89PNG fake", content_type="image/png"))
    fake.script("/customservice/kfsession/getsessionlist", json_reply({"sessionlist": []}))
    client = platforms.miniapp_client()

    assert client.wxa.check_text_security("hello")["errcode"] == 0
    code_image = client.wxa.get_wxa_code_unlimited("checkin:P001")
    # wechatpy hard-codes https://api.weixin.qq.com/customservice/… as an absolute URL.
    assert client.customservice.get_session_list("kf@mall") == []

    assert isinstance(code_image, requests.Response)
    assert code_image.content == b"\x89PNG fake"
    assert fake.requests_to("/wxa/msg_sec_check")[0].json() == {"content": "hello"}
    assert {r.param("access_token") for r in fake.requests if r.path != "/cgi-bin/token"} == {"TOKEN-1"}
    assert [r.param("appid") for r in fake.requests_to("/cgi-bin/token")] == ["wx-mini"]


def test_jscode2session_uses_appid_and_secret_without_an_access_token(fake):
    fake.script("/sns/jscode2session", json_reply({"openid": "mini-o-1", "session_key": "SK", "unionid": "u-1"}))

    result = platforms.miniapp_client().wxa.code_to_session("JS-CODE")

    assert result == {"openid": "mini-o-1", "session_key": "SK", "unionid": "u-1"}
    [request] = fake.requests_to("/sns/jscode2session")
    assert request.query == {
        "appid": ["wx-mini"],
        "secret": ["mini-secret"],
        "js_code": ["JS-CODE"],
        "grant_type": ["authorization_code"],
    }
    assert fake.requests_to("/cgi-bin/token") == []


def test_jscode2session_invalid_code_raises_rejected_with_the_platform_code(fake):
    fake.script("/sns/jscode2session", json_reply({"errcode": 40029, "errmsg": "invalid code"}))

    with pytest.raises(PlatformRejected) as caught:
        platforms.miniapp_client().wxa.code_to_session("BAD")

    assert caught.value.code == "platform_rejected"
    assert caught.value.platform == "wechat"
    assert caught.value.platform_code == "40029"


def test_wechat_call_past_the_timeout_raises_unavailable(fake):
    fake.script("/sns/jscode2session", text_reply("{}", delay=3))

    with override_settings(PLATFORM_TIMEOUT_SECONDS=0.3), pytest.raises(PlatformUnavailable) as caught:
        platforms.miniapp_client().wxa.code_to_session("JS-CODE")

    assert (caught.value.code, caught.value.status) == ("platform_unavailable", 503)
    assert "mini-secret" not in caught.value.message


def test_access_token_fetch_past_the_timeout_raises_unavailable(fake):
    fake.script("/cgi-bin/token", text_reply("{}", delay=3))

    with override_settings(PLATFORM_TIMEOUT_SECONDS=0.3), pytest.raises(PlatformUnavailable):
        platforms.wechat_client().user.get("o-1")

    assert fake.requests_to("/cgi-bin/user/info") == []


@pytest.mark.parametrize(
    "reply",
    [
        text_reply("<html>502 Bad Gateway</html>", content_type="text/html"),
        text_reply("not json at all"),
        json_reply(["a", "list"]),
    ],
)
def test_wechat_answer_that_is_not_a_json_object_raises_bad_response(fake, reply):
    fake.script("/sns/jscode2session", reply)
    fake.script("/cgi-bin/token", token_reply())
    fake.script("/cgi-bin/user/info", reply)

    with pytest.raises(PlatformBadResponse) as caught:
        platforms.miniapp_client().wxa.code_to_session("JS-CODE")
    assert (caught.value.code, caught.value.status) == ("platform_bad_response", 502)
    with pytest.raises(PlatformBadResponse):
        platforms.wechat_client().user.get("o-1")


def test_wechat_server_error_or_refused_connection_raises_unavailable(fake):
    fake.script("/cgi-bin/token", token_reply())
    fake.script("/cgi-bin/user/info", json_reply({"error": "busy"}, status=503))
    with pytest.raises(PlatformUnavailable):
        platforms.wechat_client().user.get("o-1")

    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    with override_settings(WECHAT_API_BASE_URL=f"http://127.0.0.1:{closed_port}/"), pytest.raises(PlatformUnavailable):
        platforms.wechat_client().user.get("o-1")


def test_wechat_access_token_error_raises_rejected(fake):
    fake.script("/cgi-bin/token", json_reply({"errcode": 40125, "errmsg": "invalid appsecret"}))

    with pytest.raises(PlatformRejected) as caught:
        platforms.wechat_client().user.get("o-1")

    assert caught.value.platform_code == "40125"
    assert cache.get("wechatpy:wx-oa_access_token") is None


# --- WeChat Pay -----------------------------------------------------------------------


def pay_answer(**fields) -> str:
    """An answer of WeChat Pay, signed with PAY_KEY."""
    common = {"return_code": "SUCCESS", "return_msg": "OK", "appid": "wx-oa", "mch_id": "1900000109", "nonce_str": "n1"}
    return wechat_pay_xml({**common, **fields}, api_key=PAY_KEY)


def verified_pay_script(answer: str):
    """A WeChat Pay endpoint that answers only requests signed with PAY_KEY."""

    def script(request):
        params = parse_wechat_pay_xml(request.body)
        if not wechat_pay_signature_valid(params, PAY_KEY):
            return xml_reply(wechat_pay_xml({"return_code": "FAIL", "return_msg": "签名错误"}))
        return xml_reply(answer)

    return script


def test_order_query_is_signed_and_sent_to_the_configured_pay_base(fake):
    answer = pay_answer(result_code="SUCCESS", out_trade_no="T1", trade_state="SUCCESS", total_fee="100")
    fake.script("/pay/orderquery", verified_pay_script(answer))

    result = platforms.wechat_pay_client().order.query(out_trade_no="T1")

    assert result["trade_state"] == "SUCCESS"
    [request] = fake.requests_to("/pay/orderquery")
    assert request.method == "POST"
    sent = parse_wechat_pay_xml(request.body)
    assert (sent["appid"], sent["mch_id"], sent["out_trade_no"]) == ("wx-oa", "1900000109", "T1")
    assert wechat_pay_signature_valid(sent, PAY_KEY)


@pytest.mark.parametrize(("client_ip", "expected_ip"), [(None, FALLBACK_CLIENT_IP), ("10.1.2.3", "10.1.2.3")])
def test_unified_order_never_looks_up_an_external_ip(fake, no_name_lookups, client_ip, expected_ip):
    answer = pay_answer(result_code="SUCCESS", prepay_id="wx-prepay-1", trade_type="JSAPI")
    fake.script("/pay/unifiedorder", verified_pay_script(answer))
    extra = {"client_ip": client_ip} if client_ip else {}

    result = platforms.wechat_pay_client(for_miniapp=True).order.create(
        trade_type="JSAPI",
        body="Mall purchase",
        total_fee=1234,
        notify_url="https://mall.example/payments/notify/wechat/",
        user_id="mini-o-1",
        out_trade_no="T2",
        **extra,
    )

    assert result["prepay_id"] == "wx-prepay-1"
    sent = parse_wechat_pay_xml(fake.requests_to("/pay/unifiedorder")[0].body)
    assert sent["spbill_create_ip"] == expected_ip
    assert (sent["appid"], sent["openid"], sent["total_fee"]) == ("wx-mini", "mini-o-1", "1234")
    assert no_name_lookups == []


def test_pay_answer_with_a_bad_signature_raises_bad_response(fake):
    forged = pay_answer(result_code="SUCCESS", trade_state="SUCCESS").replace(
        "<sign><![CDATA[", "<sign><![CDATA[0"
    )
    fake.script("/pay/orderquery", xml_reply(forged))

    with pytest.raises(PlatformBadResponse):
        platforms.wechat_pay_client().order.query(out_trade_no="T1")


def test_pay_business_failure_raises_rejected_with_err_code(fake):
    answer = pay_answer(result_code="FAIL", err_code="ORDERNOTEXIST", err_code_des="order does not exist")
    fake.script("/pay/orderquery", xml_reply(answer))

    with pytest.raises(PlatformRejected) as caught:
        platforms.wechat_pay_client().order.query(out_trade_no="T404")

    assert (caught.value.platform, caught.value.platform_code) == ("wechat_pay", "ORDERNOTEXIST")


def test_pay_answer_with_a_dtd_raises_bad_response(fake):
    answer = '<!DOCTYPE xml [<!ENTITY e "SUCCESS">]><xml><return_code>&e;</return_code></xml>'
    fake.script("/pay/orderquery", xml_reply(answer))

    with pytest.raises(PlatformBadResponse):
        platforms.wechat_pay_client().order.query(out_trade_no="T1")


def test_pay_calls_outside_the_configured_base_are_refused(fake):
    # wechatpy sends this one to fraud.mch.weixin.qq.com, which no setting routes.
    with pytest.raises(ValueError, match="outside the configured platform base"):
        platforms.wechat_pay_client().transfer.get_rsa_public_key()
    assert fake.requests == []


NOTIFICATION = {
    "appid": "wx-oa",
    "mch_id": "1900000109",
    "nonce_str": "n2",
    "result_code": "SUCCESS",
    "return_code": "SUCCESS",
    "openid": "o-1",
    "out_trade_no": "T3",
    "transaction_id": "4200000001",
    "total_fee": "1234",
    "cash_fee": "1234",
    "trade_type": "JSAPI",
}


def test_signed_payment_notification_parses(fake):
    data = platforms.wechat_pay_client().parse_payment_result(wechat_pay_xml(NOTIFICATION, api_key=PAY_KEY))

    assert (data["out_trade_no"], data["transaction_id"], data["total_fee"]) == ("T3", "4200000001", 1234)


@pytest.mark.parametrize(
    "xml",
    [
        wechat_pay_xml(NOTIFICATION, api_key="another-merchant-key-0123456789ab"),
        wechat_pay_xml(NOTIFICATION),
        '<!DOCTYPE xml [<!ENTITY id "T3">]><xml><out_trade_no>&id;</out_trade_no></xml>',
        '<!DOCTYPE xml [<!ENTITY x SYSTEM "file:///etc/passwd">]><xml><a>&x;</a></xml>',
        "<!DOCTYPE xml>" + wechat_pay_xml(NOTIFICATION, api_key=PAY_KEY),
        "<xml><a>&undefined;</a></xml>",
        "not xml",
    ],
    ids=["wrong-key", "unsigned", "entity", "external-entity", "doctype", "undefined-entity", "garbage"],
)
def test_unusable_payment_notification_raises_bad_notification_not_value_error(fake, xml):
    with pytest.raises(PlatformBadNotification) as caught:
        platforms.wechat_pay_client().parse_payment_result(xml)

    assert (caught.value.code, caught.value.status) == ("platform_bad_notification", 400)


REFUND = {
    "out_trade_no": "T3",
    "out_refund_no": "R1",
    "refund_id": "5000001",
    "refund_fee": "600",
    "total_fee": "1234",
    "refund_status": "SUCCESS",
}


def test_refund_notification_decrypts_with_our_api_key(fake):
    xml = wechat_pay_refund_notification(REFUND, appid="wx-oa", mch_id="1900000109", api_key=PAY_KEY)

    data = platforms.wechat_pay_client().parse_refund_notify_result(xml)

    assert (data["out_refund_no"], data["refund_status"], data["refund_fee"]) == ("R1", "SUCCESS", 600)


@pytest.mark.parametrize(
    "xml",
    [
        wechat_pay_refund_notification(REFUND, appid="wx-oa", mch_id="1900000109", api_key="another-merchant-key"),
        wechat_pay_refund_notification(REFUND, appid="wx-other", mch_id="1900000109", api_key=PAY_KEY),
        wechat_pay_xml({"return_code": "SUCCESS", "appid": "wx-oa", "mch_id": "1900000109", "req_info": "not base64!"}),
        '<!DOCTYPE xml [<!ENTITY e "x">]><xml><req_info>&e;</req_info></xml>',
    ],
    ids=["wrong-key", "other-app", "garbage-req-info", "entity"],
)
def test_unusable_refund_notification_raises_bad_notification(fake, xml):
    with pytest.raises(PlatformBadNotification):
        platforms.wechat_pay_client().parse_refund_notify_result(xml)


def test_pay_signature_helper_agrees_with_the_documented_example():
    # WeChat Pay's documented v2 signing example.
    params = {
        "appid": "wxd930ea5d5a258f4f",
        "mch_id": "10000100",
        "device_info": "1000",
        "body": "test",
        "nonce_str": "ibuaiVcKdpRxkhJA",
    }
    assert wechat_pay_sign(params, "192006250b4c09247ec02edce69f6a2d") == "9A0A8659F005D6984697E2CA0A9CF3B7"


# --- Alipay ---------------------------------------------------------------------------


def alipay_script(app_keys, alipay_keys, response_key: str, payload: dict, *, sign: str | None = None):
    """The gateway: answers only POSTs signed with the app key, signing its answer
    with the fake Alipay key."""

    def script(request):
        if request.method != "POST" or not alipay_request_signature_valid(request.form, app_keys.public_pem):
            refusal = {"code": "40002", "msg": "Invalid Arguments", "sub_code": "isv.invalid-signature"}
            return json_reply({"error_response": refusal})  # unsigned, as Alipay does here
        return Reply(body=alipay_signed_response(response_key, payload, alipay_keys.private_pem, sign=sign))

    return script


def bare_base64(pem: str) -> str:
    return "".join(line for line in pem.splitlines() if not line.startswith("-----"))


@pytest.fixture(params=["pem", "escaped-pem", "path", "bare-base64"])
def alipay_key_settings(request, app_keys, alipay_keys, tmp_path):
    if request.param == "pem":
        return {"ALIPAY_APP_PRIVATE_KEY": app_keys.private_pem, "ALIPAY_PUBLIC_KEY": alipay_keys.public_pem}
    if request.param == "escaped-pem":  # one line in a .env file
        return {
            "ALIPAY_APP_PRIVATE_KEY": app_keys.private_pem.replace("\n", "\\n"),
            "ALIPAY_PUBLIC_KEY": alipay_keys.public_pem.replace("\n", "\\n"),
        }
    if request.param == "bare-base64":  # as Alipay's console shows keys
        return {
            "ALIPAY_APP_PRIVATE_KEY": bare_base64(app_keys.private_pem),
            "ALIPAY_PUBLIC_KEY": bare_base64(alipay_keys.public_pem),
        }
    (tmp_path / "app_private.pem").write_text(app_keys.private_pem)
    (tmp_path / "alipay_public.pem").write_text(alipay_keys.public_pem)
    return {
        "ALIPAY_APP_PRIVATE_KEY": str(tmp_path / "app_private.pem"),
        "ALIPAY_PUBLIC_KEY": str(tmp_path / "alipay_public.pem"),
    }


def test_alipay_oauth_token_is_posted_signed_and_its_answer_verified(fake, app_keys, alipay_keys, alipay_key_settings):
    # A successful oauth.token answer carries no "code", unlike most methods.
    payload = {"user_id": "2088000000000001", "access_token": "AT", "expires_in": 1296000, "refresh_token": "RT"}
    fake.script("/gateway.do", alipay_script(app_keys, alipay_keys, "alipay_system_oauth_token_response", payload))

    with override_settings(**alipay_key_settings):
        result = platforms.alipay_call("alipay.system.oauth.token", grant_type="authorization_code", code="AUTH-CODE")

    assert result == payload
    [request] = fake.requests_to("/gateway.do")
    assert request.method == "POST"
    assert request.query == {}
    form = request.form
    assert form["method"] == "alipay.system.oauth.token"
    assert (form["app_id"], form["sign_type"]) == ("2021000000000001", "RSA2")
    assert (form["grant_type"], form["code"]) == ("authorization_code", "AUTH-CODE")
    assert "biz_content" not in form
    assert alipay_request_signature_valid(form, app_keys.public_pem)


def test_alipay_call_sends_biz_content_for_service_window_messages(fake, app_keys, alipay_keys):
    response_key = "alipay_open_public_message_custom_send_response"
    fake.script("/gateway.do", alipay_script(app_keys, alipay_keys, response_key, {"code": "10000", "msg": "Success"}))

    result = platforms.alipay_call(
        "alipay.open.public.message.custom.send",
        {"to_user_id": "2088000000000001", "msg_type": "text", "text": {"content": "你好"}},
    )

    assert result == {"code": "10000", "msg": "Success"}

    form = fake.requests_to("/gateway.do")[0].form
    assert form["method"] == "alipay.open.public.message.custom.send"
    assert '"to_user_id":"2088000000000001"' in form["biz_content"]


def test_alipay_answer_with_a_bad_signature_raises_bad_response(fake, app_keys, alipay_keys):
    payload = {"code": "10000", "msg": "Success", "user_id": "2088000000000001", "access_token": "AT"}
    impostor = rsa_key_pair()
    fake.script("/gateway.do", alipay_script(app_keys, impostor, "alipay_system_oauth_token_response", payload))

    with pytest.raises(PlatformBadResponse):
        platforms.alipay_call("alipay.system.oauth.token", grant_type="authorization_code", code="AUTH-CODE")


@pytest.mark.parametrize("sign", ["", "not base64!", "bm90IGEgc2lnbmF0dXJl"])
def test_alipay_success_without_a_valid_signature_raises_bad_response(fake, app_keys, alipay_keys, sign):
    payload = {"user_id": "2088000000000001", "access_token": "AT"}
    response_key = "alipay_system_oauth_token_response"
    fake.script("/gateway.do", alipay_script(app_keys, alipay_keys, response_key, payload, sign=sign))

    with pytest.raises(PlatformBadResponse):
        platforms.alipay_call("alipay.system.oauth.token", grant_type="authorization_code", code="AUTH-CODE")


def test_alipay_request_signed_with_another_app_key_is_refused(fake, app_keys, alipay_keys):
    payload = {"user_id": "2088000000000001", "access_token": "AT"}
    fake.script("/gateway.do", alipay_script(app_keys, alipay_keys, "alipay_system_oauth_token_response", payload))

    impostor = rsa_key_pair()
    with override_settings(ALIPAY_APP_PRIVATE_KEY=impostor.private_pem), pytest.raises(PlatformRejected) as caught:
        platforms.alipay_call("alipay.system.oauth.token", grant_type="authorization_code", code="AUTH-CODE")

    assert caught.value.platform_code == "isv.invalid-signature"


def test_alipay_refusal_raises_rejected_with_the_sub_code(fake, app_keys, alipay_keys):
    refusal = {"code": "40002", "msg": "Invalid Arguments", "sub_code": "isv.code-invalid", "sub_msg": "授权码code无效"}
    fake.script("/gateway.do", alipay_script(app_keys, alipay_keys, "error_response", refusal))

    with pytest.raises(PlatformRejected) as caught:
        platforms.alipay_call("alipay.system.oauth.token", grant_type="authorization_code", code="USED-CODE")

    assert (caught.value.platform, caught.value.platform_code) == ("alipay", "isv.code-invalid")


def test_alipay_business_failure_raises_rejected_with_the_sub_code(fake, app_keys, alipay_keys):
    failure = {"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.TRADE_NOT_EXIST", "sub_msg": "交易不存在"}
    fake.script("/gateway.do", alipay_script(app_keys, alipay_keys, "alipay_trade_query_response", failure))

    with pytest.raises(PlatformRejected) as caught:
        platforms.alipay_call("alipay.trade.query", {"out_trade_no": "T404"})
    # python-alipay-sdk's own methods go through the same POST and the same checks.
    with pytest.raises(PlatformRejected):
        platforms.alipay_client().api_alipay_trade_query(out_trade_no="T404")

    assert caught.value.platform_code == "ACQ.TRADE_NOT_EXIST"
    assert [r.method for r in fake.requests_to("/gateway.do")] == ["POST", "POST"]


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (text_reply("<html>gateway error</html>", content_type="text/html"), PlatformBadResponse),
        (json_reply({"unexpected": True}), PlatformBadResponse),
        (text_reply("{}", delay=3), PlatformUnavailable),
        (json_reply({}, status=502), PlatformUnavailable),
    ],
    ids=["html", "no-response-object", "timeout", "http-502"],
)
def test_alipay_transport_and_garbage_failures_raise_platform_errors(fake, reply, error):
    fake.script("/gateway.do", reply)

    with override_settings(PLATFORM_TIMEOUT_SECONDS=0.3), pytest.raises(error):
        platforms.alipay_call("alipay.system.oauth.token", grant_type="authorization_code", code="AUTH-CODE")


def test_alipay_notification_verification_never_raises(fake, alipay_keys):
    client = platforms.alipay_client()
    params = {"out_trade_no": "T4", "total_amount": "12.34", "trade_status": "TRADE_SUCCESS", "sign_type": "RSA2"}
    signature = rsa2_sign("out_trade_no=T4&total_amount=12.34&trade_status=TRADE_SUCCESS", alipay_keys.private_pem)

    assert client.verify(params, signature) is True
    assert params["sign_type"] == "RSA2"  # the caller's dict is left alone
    assert client.verify({**params, "total_amount": "0.01"}, signature) is False
    assert client.verify(params, "garbage!") is False
    assert client.verify({**params, "sign_type": "RSA"}, signature) is False


# --- Configuration --------------------------------------------------------------------


@override_settings(
    WECHAT_APP_ID="", WECHAT_APP_SECRET="", WECHAT_MINIAPP_ID="", WECHAT_MINIAPP_SECRET="",
    WECHAT_PAY_MCH_ID="", WECHAT_PAY_API_KEY="", ALIPAY_APP_ID="", ALIPAY_APP_PRIVATE_KEY="", ALIPAY_PUBLIC_KEY="",
)
def test_unconfigured_platforms_report_it_and_refuse_to_build_clients():
    assert not platforms.wechat_configured()
    assert not platforms.miniapp_configured()
    assert not platforms.wechat_pay_configured()
    assert not platforms.alipay_configured()
    builders = (platforms.wechat_client, platforms.miniapp_client, platforms.wechat_pay_client, platforms.alipay_client)
    for build in builders:
        with pytest.raises(ImproperlyConfigured):
            build()


def test_configured_platforms_report_it(fake):
    assert platforms.wechat_configured() and platforms.miniapp_configured() and platforms.alipay_configured()
    assert platforms.wechat_pay_configured() and platforms.wechat_pay_configured(for_miniapp=True)


def test_alipay_key_that_is_not_a_key_is_improperly_configured(fake):
    with override_settings(ALIPAY_PUBLIC_KEY="/no/such/file.pem"):
        with pytest.raises(ImproperlyConfigured, match="ALIPAY_PUBLIC_KEY"):
            platforms.alipay_client()
