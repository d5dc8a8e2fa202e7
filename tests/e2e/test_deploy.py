"""What the documented deployment serves before any shopper comes: static files with
DEBUG off, the API docs, HTTPS behind the proxy, the probes, logs without secrets, the
platforms' handshakes with the configured keys."""

import base64
import re
import secrets
import time
from html.parser import HTMLParser
from urllib.parse import urlencode, urlsplit

import pytest
from cryptography.hazmat.primitives import serialization

from tests.bots.platforms import alipay_answer, alipay_form, fixture_xml, wechat_signature

pytestmark = pytest.mark.e2e


class _Links(HTMLParser):
    """Every stylesheet href and script src of a page."""

    def __init__(self):
        super().__init__()
        self.stylesheets: list[str] = []
        self.scripts: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "link" and "stylesheet" in (attrs.get("rel") or "").split() and attrs.get("href"):
            self.stylesheets.append(attrs["href"])
        elif tag == "script" and attrs.get("src"):
            self.scripts.append(attrs["src"])


def links_of(html: str) -> _Links:
    parser = _Links()
    parser.feed(html)
    return parser


def assert_hashed_static(site, url: str, *, content_type: str) -> None:
    """``url`` is a file collectstatic hashed (name.<12 hex>.ext under /static/), served
    with DEBUG off, cacheable for good."""
    path = urlsplit(url).path
    assert path.startswith("/static/"), url
    assert re.search(r"\.[0-9a-f]{12}\.[a-z0-9]+$", path), f"{path} is not a hashed name from the manifest"
    response = site.get(path)
    assert response.status_code == 200, (path, response.status_code)
    assert response.headers["Content-Type"].startswith(content_type), response.headers["Content-Type"]
    assert response.content
    assert "max-age=315360000" in response.headers.get("Cache-Control", ""), response.headers.get("Cache-Control")


def test_the_admin_stylesheets_are_served_from_static_with_hashed_names(deployment):
    page = deployment.site.get("/admin/login/")
    assert page.status_code == 200, page.status_code

    stylesheets = links_of(page.text).stylesheets
    assert any("/admin/css/base." in href for href in stylesheets), stylesheets
    for href in stylesheets:
        assert_hashed_static(deployment.site, href, content_type="text/css")


def test_the_h5_pages_stylesheet_is_served_from_static_with_a_hashed_name(deployment):
    page = deployment.site.get("/m/login/")
    assert page.status_code == 200, page.status_code

    [h5_css] = [href for href in links_of(page.text).stylesheets if "/members/h5." in href]
    assert_hashed_static(deployment.site, h5_css, content_type="text/css")


def test_the_api_docs_render_with_their_swagger_ui_assets(deployment):
    page = deployment.site.get("/api/docs/")
    assert page.status_code == 200, page.status_code
    links = links_of(page.text)
    assets = [url for url in [*links.stylesheets, *links.scripts] if "/static/" in url]
    assert any("swagger-ui" in url and url.endswith(".css") for url in assets), assets
    assert any("swagger-ui-bundle" in url for url in assets), assets

    for url in assets:
        content_type = "text/css" if urlsplit(url).path.endswith(".css") else "text/javascript"
        assert_hashed_static(deployment.site, url, content_type=content_type)
    schema = deployment.site.get("/api/schema/")
    assert schema.status_code == 200 and "/api/v1/purchases/" in schema.text


@pytest.mark.parametrize("path", ["/admin/login/", "/api/v1/purchases/", "/m/login/", "/wechat/"])
def test_a_request_without_the_proxys_https_header_is_redirected_to_https(deployment, path):
    response = deployment.site.get(path, proxied=False)

    assert response.status_code == 301, (path, response.status_code)
    assert response.headers["Location"] == f"https://{deployment.site.host}{path}"


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
@pytest.mark.parametrize("host", ["allowed", "the pod's address"])
def test_the_probes_answer_plain_http_without_the_proxys_headers(deployment, path, host):
    """Load balancers and orchestrators probe gunicorn directly, over plain HTTP, often
    with the address they dialled as Host."""
    if deployment.site.get(path).status_code == 404:
        pytest.skip(f"{path} is not built yet")
    headers = {} if host == "allowed" else {"Host": "10.0.3.7:8000"}

    response = deployment.site.get(path, proxied=False, headers=headers)

    assert response.status_code == 200, (path, response.status_code, response.headers.get("Location"), response.text[:300])


def test_shopper_logins_are_throttled_per_client_address_as_nginx_forwards_it(deployment):
    """NUM_PROXIES=1: the address nginx appends to X-Forwarded-For is the client's,
    whatever the client put in front of it."""
    limit = int(deployment.env.get("SHOPPER_LOGIN_RATE", "120/min").split("/")[0])

    def login(address: str, *, spoofed: str = ""):
        forwarded = f"{spoofed}, {address}" if spoofed else address
        return deployment.site.post_json("/api/mp/v1/auth/wechat/", {"code": "no-such-code"},
                                         headers={"X-Forwarded-For": forwarded})

    statuses = []
    while len(statuses) <= 2 * limit + 1 and 429 not in statuses:  # two windows at most, should one end meanwhile
        statuses.append(login("203.0.113.50", spoofed=f"198.51.100.{len(statuses) % 250}").status_code)

    assert statuses[-1] == 429 and set(statuses[:-1]) == {400}, sorted(set(statuses))
    assert limit <= len(statuses) - 1 <= 2 * limit
    assert login("203.0.113.51").status_code == 400  # another shopper, another address: not throttled


def test_metrics_need_the_token(deployment):
    if "METRICS_TOKEN" not in deployment.env:
        pytest.skip("docs/deploy/example.env sets no METRICS_TOKEN")
    anonymous = deployment.site.get("/metrics")
    with_token = deployment.site.get("/metrics", headers={"Authorization": f"Bearer {deployment.keys.metrics_token}"})
    if anonymous.status_code == 404 and with_token.status_code == 404:
        pytest.skip("/metrics is not built yet")

    assert anonymous.status_code in (401, 403, 404), anonymous.status_code
    assert with_token.status_code == 200, with_token.status_code
    assert "# TYPE" in with_token.text


def test_the_access_log_keeps_wechats_signed_query_strings_out(deployment):
    """The signature covers the query string, not the body: a log that kept it would
    let its reader post any body under it within the freshness window."""
    token = deployment.keys.wechat_token
    timestamp, nonce, echostr = str(int(time.time())), secrets.token_hex(8), secrets.token_hex(8)
    query = {"signature": wechat_signature(token, timestamp, nonce), "timestamp": timestamp, "nonce": nonce,
             "echostr": echostr}

    response = deployment.site.get("/wechat/?" + urlencode(query))

    assert response.status_code == 200 and response.text == echostr
    deadline = time.monotonic() + 10
    while "GET /wechat/ " not in deployment.web.text() and time.monotonic() < deadline:
        time.sleep(0.1)
    log = deployment.web.text()
    assert "GET /wechat/ " in log
    for secret in (query["signature"], nonce, echostr, "signature="):
        assert secret not in log


def test_the_wechat_url_check_refuses_a_wrong_signature(deployment):
    timestamp, nonce = str(int(time.time())), secrets.token_hex(8)
    query = {"signature": wechat_signature("not-our-token", timestamp, nonce), "timestamp": timestamp,
             "nonce": nonce, "echostr": "x"}

    assert deployment.site.get("/wechat/?" + urlencode(query)).status_code == 403


def test_the_alipay_gateway_check_is_answered_with_our_public_key_signed_by_our_private_key(deployment):
    """The keys are files named by ALIPAY_APP_PRIVATE_KEY / ALIPAY_PUBLIC_KEY, as documented."""
    keys = deployment.keys
    form = alipay_form(fixture_xml("alipay/check.xml", AppId=keys.alipay_app_id),
                       alipay_private_pem=keys.alipay_keys.private_pem, service="alipay.service.check")

    response = deployment.site.post("/alipay/gateway/", data=urlencode(form),
                                    headers={"Content-Type": "application/x-www-form-urlencoded; charset=UTF-8"})

    assert response.status_code == 200, (response.status_code, response.text[:300])
    answer = alipay_answer(response.content, app_public_pem=keys.alipay_app_keys.public_pem)
    public_der = serialization.load_pem_public_key(keys.alipay_app_keys.public_pem.encode()).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert answer == f"<success>true</success><biz_content>{base64.b64encode(public_der).decode()}</biz_content>"


def test_migrate_alone_made_the_database_cache_table(deployment):
    """Without REDIS_URL the cache (platform access tokens, the cluster's heartbeat)
    is a table: `migrate` makes it, no `createcachetable` step."""
    if deployment.redis_url:
        pytest.skip("the cache is Redis")
    if deployment.backend == "sqlite":
        tables = deployment.db.rows("SELECT name FROM sqlite_master WHERE type = 'table' AND name = %s", "o2o_cache")
    else:
        tables = deployment.db.rows("SELECT tablename FROM pg_tables WHERE tablename = %s", "o2o_cache")
    assert tables == [("o2o_cache",)]


def test_the_sandbox_demo_login_does_not_exist(deployment):
    response = deployment.site.post_json("/api/mp/v1/auth/demo/", {})

    assert response.status_code == 404
