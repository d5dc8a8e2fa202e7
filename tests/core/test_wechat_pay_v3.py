"""The APIv3 client against the local fake of WeChat Pay (tests/fakes/wechat_pay_v3.py)."""

import base64
import json
import time
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from core.platforms import wechat_pay_v3 as v3
from tests.fakes.platform_server import Reply, json_reply, rsa_key_pair
from tests.fakes.wechat_pay_v3 import (
    FakeWeChatPayV3,
    authorization_params,
    encrypt_resource,
    notification,
    notification_body,
    rsa_sha256_valid,
    signed_headers,
    wechat_pay_v3_keys,
)

TRANSACTION = {
    "mchid": "1900000109",
    "appid": "wxd678efh567hg6787",
    "out_trade_no": "O2O20250608000001",
    "transaction_id": "4200000000202506080000000001",
    "trade_state": "SUCCESS",
    "amount": {"total": 1234, "payer_total": 1234, "currency": "CNY", "payer_currency": "CNY"},
    "payer": {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
}


@pytest.fixture(scope="module")
def keys():
    return wechat_pay_v3_keys()


@pytest.fixture
def wechat_pay(platform_server, keys, settings):
    fake = FakeWeChatPayV3(platform_server, keys)
    for name, value in fake.settings().items():
        setattr(settings, name, value)
    settings.PLATFORM_TIMEOUT_SECONDS = 2
    return fake


def _refusal(headers, body) -> str:
    with pytest.raises(v3.WeChatPayV3BadNotification) as caught:
        v3.notification_verify_and_decrypt(headers, body)
    return caught.value.reason


# --- Configuration --------------------------------------------------------------------------


def test_configured_needs_merchant_keys_and_a_wechat_pay_key(settings, keys):
    for name, value in keys.settings().items():
        setattr(settings, name, value)
    assert v3.configured()
    settings.WECHAT_PAY_PUBLIC_KEY_ID = ""
    assert not v3.configured()
    settings.WECHAT_PAY_PLATFORM_CERTIFICATES = {"5157F09EFDC096DE15EBE81A47057A72": keys.wechat_pay.public_pem}
    assert v3.configured()
    settings.WECHAT_PAY_API_V3_KEY = ""
    assert not v3.configured()


def test_keys_may_be_file_paths(wechat_pay, keys, settings, tmp_path):
    (tmp_path / "apiclient_key.pem").write_text(keys.merchant.private_pem)
    (tmp_path / "pub_key.pem").write_text(keys.wechat_pay.public_pem)
    settings.WECHAT_PAY_PRIVATE_KEY = str(tmp_path / "apiclient_key.pem")
    settings.WECHAT_PAY_PUBLIC_KEY = str(tmp_path / "pub_key.pem")
    wechat_pay.answer("/v3/pay/transactions/jsapi", lambda request: wechat_pay.reply({"prepay_id": "wx1"}))
    assert (
        v3.jsapi_prepay(
            description="d",
            out_trade_no="O1",
            amount_fen=1,
            payer_openid="o",
            notify_url="https://n/",
            time_expire=None,
            appid="wxa",
        )
        == "wx1"
    )


# --- Requests and verified answers ------------------------------------------------------------


def test_jsapi_prepay_sends_a_signed_request_with_the_documented_body(wechat_pay, keys):
    wechat_pay.answer("/v3/pay/transactions/jsapi", lambda request: wechat_pay.reply({"prepay_id": "wx2014"}))
    expire = datetime(2025, 6, 8, 2, 34, 56, tzinfo=UTC)

    prepay_id = v3.jsapi_prepay(
        description="万象城 积分商城",
        out_trade_no="O2O1",
        amount_fen=1234,
        payer_openid="oPayer",
        notify_url="https://mall.example.com/payments/notify/wechat/v3/",
        time_expire=expire,
        appid="wxapp",
    )

    assert prepay_id == "wx2014"
    [request] = wechat_pay.requests_to("/v3/pay/transactions/jsapi")
    assert request.method == "POST"
    assert request.headers["accept"] == "application/json"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"]
    assert "wechatpay-serial" not in request.headers  # only with encrypted fields
    params = authorization_params(request)
    assert params["mchid"] == keys.mch_id and params["serial_no"] == keys.merchant_serial
    assert abs(int(params["timestamp"]) - time.time()) < 60 and len(params["nonce_str"]) == 32
    assert request.json() == {
        "appid": "wxapp",
        "mchid": keys.mch_id,
        "description": "万象城 积分商城",
        "out_trade_no": "O2O1",
        "notify_url": "https://mall.example.com/payments/notify/wechat/v3/",
        "amount": {"total": 1234, "currency": "CNY"},
        "payer": {"openid": "oPayer"},
        "time_expire": "2025-06-08T02:34:56+00:00",
    }


def test_jsapi_prepay_for_a_sub_merchant_uses_the_partner_api(wechat_pay, keys):
    wechat_pay.answer("/v3/pay/partner/transactions/jsapi", lambda request: wechat_pay.reply({"prepay_id": "wxP"}))
    assert (
        v3.jsapi_prepay(
            description="d",
            out_trade_no="O2",
            amount_fen=5,
            payer_openid="oSp",
            notify_url="https://n/",
            time_expire=None,
            appid="wxsp",
            sub_mchid="1900000200",
        )
        == "wxP"
    )
    [request] = wechat_pay.requests_to("/v3/pay/partner/transactions/jsapi")
    body = request.json()
    assert (body["sp_appid"], body["sp_mchid"], body["sub_mchid"]) == ("wxsp", keys.mch_id, "1900000200")
    assert body["payer"] == {"sp_openid": "oSp"} and "mchid" not in body


def test_native_prepay_returns_the_code_url(wechat_pay):
    wechat_pay.answer(
        "/v3/pay/transactions/native",
        lambda request: wechat_pay.reply({"code_url": "weixin://wxpay/bizpayurl?pr=p4lpSuKzz"}),
    )
    assert (
        v3.native_prepay(
            description="d", out_trade_no="O3", amount_fen=100, notify_url="https://n/", time_expire=None, appid="wxa"
        )
        == "weixin://wxpay/bizpayurl?pr=p4lpSuKzz"
    )


@pytest.mark.parametrize("amount", [0, -1, 1.5, "100", True])
def test_prepay_refuses_amounts_that_are_not_positive_integer_fen(wechat_pay, amount):
    with pytest.raises(ValueError):
        v3.native_prepay(
            description="d", out_trade_no="O", amount_fen=amount, notify_url="https://n/", time_expire=None, appid="wxa"
        )
    assert wechat_pay.server.requests == []


def test_transaction_query_signs_the_path_with_its_query(wechat_pay, keys):
    path = "/v3/pay/transactions/out-trade-no/O2O4"
    wechat_pay.answer(path, lambda request: wechat_pay.reply(TRANSACTION))
    assert v3.transaction_by_out_trade_no("O2O4") == TRANSACTION
    [request] = wechat_pay.requests_to(path)
    assert request.method == "GET" and request.param("mchid") == keys.mch_id and request.body == b""


def test_close_accepts_a_signed_204(wechat_pay, keys):
    path = "/v3/pay/transactions/out-trade-no/O2O5/close"
    wechat_pay.answer(path, lambda request: wechat_pay.reply(None, status=204))
    assert v3.close("O2O5") is None
    [request] = wechat_pay.requests_to(path)
    assert request.json() == {"mchid": keys.mch_id}


def test_refund_sends_amounts_in_fen(wechat_pay):
    answer = {"refund_id": "50000000382019052709732678859", "out_refund_no": "R1", "status": "PROCESSING"}
    wechat_pay.answer("/v3/refund/domestic/refunds", lambda request: wechat_pay.reply(answer))
    assert (
        v3.refund(
            out_trade_no="O6",
            out_refund_no="R1",
            refund_fen=300,
            total_fen=1234,
            notify_url="https://n/",
            reason="退货",
        )
        == answer
    )
    [request] = wechat_pay.requests_to("/v3/refund/domestic/refunds")
    assert request.json() == {
        "out_trade_no": "O6",
        "out_refund_no": "R1",
        "notify_url": "https://n/",
        "amount": {"refund": 300, "total": 1234, "currency": "CNY"},
        "reason": "退货",
    }


def test_a_request_signed_with_the_wrong_key_is_rejected_with_sign_error(wechat_pay, settings):
    settings.WECHAT_PAY_PRIVATE_KEY = rsa_key_pair().private_pem
    wechat_pay.answer("/v3/pay/transactions/native", lambda request: wechat_pay.reply({"code_url": "x"}))
    with pytest.raises(v3.WeChatPayV3Rejected) as caught:
        v3.native_prepay(
            description="d", out_trade_no="O", amount_fen=1, notify_url="https://n/", time_expire=None, appid="wxa"
        )
    assert (caught.value.code, caught.value.status) == ("SIGN_ERROR", 401)


def test_an_error_body_is_rejected_with_its_code(wechat_pay):
    error = {"code": "ORDER_CLOSED", "message": "订单已关闭"}
    wechat_pay.answer("/v3/pay/transactions/out-trade-no/O7/close", lambda request: wechat_pay.reply(error, status=400))
    with pytest.raises(v3.WeChatPayV3Rejected) as caught:
        v3.close("O7")
    assert (caught.value.code, caught.value.message, caught.value.status) == ("ORDER_CLOSED", "订单已关闭", 400)


def test_a_server_error_is_unavailable(wechat_pay):
    wechat_pay.answer(
        "/v3/pay/transactions/out-trade-no/O8",
        lambda request: wechat_pay.reply({"code": "SYSTEM_ERROR", "message": "系统异常"}, status=500),
    )
    with pytest.raises(v3.WeChatPayV3Unavailable) as caught:
        v3.transaction_by_out_trade_no("O8")
    assert (caught.value.status, caught.value.code) == (500, "SYSTEM_ERROR")


def test_a_slow_answer_is_unavailable(wechat_pay, settings):
    settings.PLATFORM_TIMEOUT_SECONDS = 0.3
    wechat_pay.server.script("/v3/pay/transactions/out-trade-no/O9", Reply(status=200, body="{}", delay=2))
    with pytest.raises(v3.WeChatPayV3Unavailable):
        v3.transaction_by_out_trade_no("O9")


def test_no_server_is_unavailable(wechat_pay, settings):
    settings.WECHAT_PAY_API_BASE_URL = "http://127.0.0.1:9/"  # discard port: connection refused
    with pytest.raises(v3.WeChatPayV3Unavailable):
        v3.transaction_by_out_trade_no("O10")


@pytest.mark.parametrize(
    "misbehaviour",
    [
        pytest.param(
            lambda fake: fake.reply(
                TRANSACTION,
                sent_body=json.dumps(
                    {
                        **TRANSACTION,
                        "trade_state": "SUCCESS ",
                    }
                ).encode(),
            ),
            id="tampered-body",
        ),
        pytest.param(
            lambda fake: fake.reply(TRANSACTION, serial="PUB_KEY_ID_0000000000000000000000000000"), id="wrong-serial"
        ),
        pytest.param(lambda fake: fake.reply(TRANSACTION, timestamp=int(time.time()) - 301), id="stale-timestamp"),
        pytest.param(lambda fake: fake.reply(TRANSACTION, timestamp=int(time.time()) + 400), id="future-timestamp"),
        pytest.param(
            lambda fake: fake.reply(TRANSACTION, private_pem=rsa_key_pair().private_pem), id="forged-signature"
        ),
        pytest.param(lambda fake: json_reply(TRANSACTION), id="unsigned-2xx"),
        pytest.param(
            lambda fake: Reply(status=200, body="not json", headers=signed_headers(b"not json", fake.keys)),
            id="signed-non-json",
        ),
        pytest.param(
            lambda fake: Reply(status=200, body="[1]", headers=signed_headers(b"[1]", fake.keys)),
            id="signed-non-object",
        ),
        pytest.param(lambda fake: json_reply({"fake": "nginx"}, status=404), id="error-without-code"),
        pytest.param(
            lambda fake: fake.reply(
                {"code": "PARAM_ERROR", "message": "m"},
                status=400,
                sent_body=b'{"code":"ORDER_NOT_EXIST","message":"m"}',
            ),
            id="tampered-error",
        ),
    ],
)
def test_an_answer_that_does_not_verify_is_a_bad_response(wechat_pay, misbehaviour):
    path = "/v3/pay/transactions/out-trade-no/O11"
    wechat_pay.answer(path, lambda request: misbehaviour(wechat_pay))
    with pytest.raises(v3.WeChatPayV3BadResponse):
        v3.transaction_by_out_trade_no("O11")


def test_answers_signed_with_a_configured_platform_certificate_are_accepted(wechat_pay, keys, settings):
    platform = rsa_key_pair()
    settings.WECHAT_PAY_PLATFORM_CERTIFICATES = {"5157F09EFDC096DE15EBE81A47057A72": platform.public_pem}
    path = "/v3/pay/transactions/out-trade-no/O12"
    wechat_pay.answer(
        path,
        lambda request: wechat_pay.reply(
            TRANSACTION, serial="5157f09efdc096de15ebe81a47057a72", private_pem=platform.private_pem
        ),
    )
    assert v3.transaction_by_out_trade_no("O12") == TRANSACTION


# --- Pay parameters ---------------------------------------------------------------------------


def test_jsapi_pay_params_are_signed_with_the_merchant_key(wechat_pay, keys):
    params = v3.jsapi_pay_params(appid="wxapp", prepay_id="wx201410272009395522657a690389285100")
    assert params["package"] == "prepay_id=wx201410272009395522657a690389285100"
    assert params["signType"] == "RSA" and params["appId"] == "wxapp"
    assert abs(int(params["timeStamp"]) - time.time()) < 60
    message = f"wxapp\n{params['timeStamp']}\n{params['nonceStr']}\n{params['package']}\n".encode()
    assert rsa_sha256_valid(message, params["paySign"], keys.merchant.public_pem)
    assert not rsa_sha256_valid(message, params["paySign"], keys.wechat_pay.public_pem)


# --- Notifications ----------------------------------------------------------------------------


def test_a_genuine_notification_decrypts(wechat_pay, keys):
    headers, body = notification(keys, TRANSACTION)
    result = v3.notification_verify_and_decrypt(headers, body)
    assert result["resource"] == TRANSACTION
    assert result["event_type"] == "TRANSACTION.SUCCESS" and result["id"].startswith("EV-")
    assert result["original_type"] == "transaction" and result["resource_type"] == "encrypt-resource"


def test_a_notification_read_from_django_meta_style_headers_decrypts(wechat_pay, keys):
    headers, body = notification(keys, TRANSACTION)
    meta = {"HTTP_" + name.upper().replace("-", "_"): value for name, value in headers.items()}
    assert v3.notification_verify_and_decrypt(meta, body)["resource"] == TRANSACTION


def _signed_envelope(keys, resource) -> tuple[dict, bytes]:
    """A notification WeChat Pay signed (so only the resource check can refuse it)."""
    body = notification_body(resource)
    return signed_headers(body, keys), body


def test_a_tampered_ciphertext_is_refused(wechat_pay, keys):
    resource = encrypt_resource(json.dumps(TRANSACTION).encode(), keys.api_v3_key)
    sealed = bytearray(base64.b64decode(resource["ciphertext"]))
    sealed[10] ^= 1
    resource["ciphertext"] = base64.b64encode(bytes(sealed)).decode()
    assert "does not decrypt" in _refusal(*_signed_envelope(keys, resource))


def test_a_resource_under_another_api_v3_key_is_refused(wechat_pay, keys):
    resource = encrypt_resource(json.dumps(TRANSACTION).encode(), "0" * 32)
    assert "does not decrypt" in _refusal(*_signed_envelope(keys, resource))


def test_a_resource_with_other_associated_data_is_refused(wechat_pay, keys):
    resource = encrypt_resource(json.dumps(TRANSACTION).encode(), keys.api_v3_key, associated_data="transaction")
    resource["associated_data"] = "refund"
    assert "does not decrypt" in _refusal(*_signed_envelope(keys, resource))


def test_a_stale_notification_is_refused(wechat_pay, keys):
    headers, body = notification(keys, TRANSACTION, timestamp=int(time.time()) - 301)
    assert "5 minutes" in _refusal(headers, body)


def test_a_forged_notification_is_refused(wechat_pay, keys):
    headers, body = notification(keys, TRANSACTION, private_pem=rsa_key_pair().private_pem)
    assert _refusal(headers, body) == "Wechatpay-Signature does not verify"


def test_a_signature_probe_is_refused(wechat_pay, keys):
    # WeChat Pay probes notify URLs with signatures starting "WECHATPAY/SIGNTEST/".
    headers, body = notification(keys, TRANSACTION)
    headers["Wechatpay-Signature"] = "WECHATPAY/SIGNTEST/" + headers["Wechatpay-Signature"]
    assert "Wechatpay-Signature" in _refusal(headers, body)


def test_a_notification_with_a_body_other_than_the_signed_one_is_refused(wechat_pay, keys):
    headers, _ = notification(keys, TRANSACTION)
    _, other_body = notification(keys, {**TRANSACTION, "amount": {"total": 1}})
    assert _refusal(headers, other_body) == "Wechatpay-Signature does not verify"


@pytest.mark.parametrize(
    "missing", ["Wechatpay-Timestamp", "Wechatpay-Nonce", "Wechatpay-Signature", "Wechatpay-Serial"]
)
def test_a_notification_missing_a_signature_header_is_refused(wechat_pay, keys, missing):
    headers, body = notification(keys, TRANSACTION)
    del headers[missing]
    assert "missing" in _refusal(headers, body)


def test_a_notification_under_an_unknown_serial_is_refused(wechat_pay, keys):
    headers, body = notification(keys, TRANSACTION, serial="PUB_KEY_ID_9999")
    assert "unknown Wechatpay-Serial" in _refusal(headers, body)


@pytest.mark.parametrize(
    "resource",
    [
        pytest.param("not an object", id="resource-not-object"),
        pytest.param({"algorithm": "AEAD_AES_128_GCM", "ciphertext": "AAAA", "nonce": "n" * 12}, id="other-algorithm"),
        pytest.param({"algorithm": "AEAD_AES_256_GCM", "ciphertext": 12, "nonce": "n" * 12}, id="ciphertext-not-text"),
        pytest.param({"algorithm": "AEAD_AES_256_GCM", "ciphertext": "AAAA", "nonce": None}, id="no-nonce"),
        pytest.param(
            {"algorithm": "AEAD_AES_256_GCM", "ciphertext": "%%%not base64", "nonce": "n" * 12}, id="bad-base64"
        ),
        pytest.param({"algorithm": "AEAD_AES_256_GCM", "ciphertext": "AAAA", "nonce": "n" * 12}, id="shorter-than-tag"),
        pytest.param({"algorithm": "AEAD_AES_256_GCM", "ciphertext": "A" * 64, "nonce": ""}, id="empty-nonce"),
        pytest.param(
            {"algorithm": "AEAD_AES_256_GCM", "ciphertext": "A" * 64, "nonce": "n" * 12, "associated_data": ["x"]},
            id="aad-not-text",
        ),
    ],
)
def test_a_signed_notification_with_a_malformed_resource_is_refused(wechat_pay, keys, resource):
    _refusal(*_signed_envelope(keys, resource))


def test_a_resource_that_decrypts_to_something_other_than_an_object_is_refused(wechat_pay, keys):
    resource = encrypt_resource(b"[1, 2]", keys.api_v3_key)
    assert "not a JSON object" in _refusal(*_signed_envelope(keys, resource))


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"[]", b"{}", b'{"resource": null}', "a str body", None, 12, b"[" * 50_000, b" " * 70_000],
    ids=["empty", "text", "array", "empty-object", "null-resource", "str", "none", "int", "deep", "huge"],
)
def test_a_garbage_notification_is_refused(wechat_pay, keys, body):
    signable = body if isinstance(body, bytes) else b""
    _refusal(signed_headers(signable, keys), body)


@pytest.mark.parametrize("headers", [None, {}, [], "headers", {1: 2, "Wechatpay-Nonce": None}])
def test_notification_headers_of_the_wrong_kind_are_refused(wechat_pay, keys, headers):
    _, body = notification(keys, TRANSACTION)
    assert "missing" in _refusal(headers, body)


@pytest.mark.parametrize(
    "field,value",
    [
        ("Wechatpay-Timestamp", "１２３"),
        ("Wechatpay-Timestamp", "-5"),
        ("Wechatpay-Timestamp", "9" * 40),
        ("Wechatpay-Signature", "不是base64"),
        ("Wechatpay-Signature", "A" * 5000),
        ("Wechatpay-Nonce", "a\nb"),
    ],
)
def test_malformed_signature_headers_are_refused(wechat_pay, keys, field, value):
    headers, body = notification(keys, TRANSACTION)
    headers[field] = value
    _refusal(headers, body)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)


@hypothesis_settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=300) | _json_values.map(lambda value: json.dumps(value).encode()))
def test_any_signed_body_is_decrypted_or_refused_never_crashes(wechat_pay, keys, body):
    try:
        v3.notification_verify_and_decrypt(signed_headers(body, keys), body)
    except v3.WeChatPayV3BadNotification:
        pass


@hypothesis_settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    resource=st.dictionaries(
        st.sampled_from(["algorithm", "ciphertext", "nonce", "associated_data", "original_type"]), _json_values
    ).map(lambda resource: {**resource, "algorithm": "AEAD_AES_256_GCM"})
)
def test_any_signed_resource_is_decrypted_or_refused_never_crashes(wechat_pay, keys, resource):
    with pytest.raises(v3.WeChatPayV3BadNotification):
        v3.notification_verify_and_decrypt(*_signed_envelope(keys, resource))
