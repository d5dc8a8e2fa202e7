"""Mall staff in the admin, behind the proxy with DEBUG off: the login passes CSRF over
HTTPS (secure cookies, Origin and Referer checked against the proxied host), and every
page the admin links to renders, with the plaza's and a member's own pages."""

import re
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest

from tests.e2e.clients import Browser

pytestmark = pytest.mark.e2e


class _Anchors(HTMLParser):
    def __init__(self):
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag, attrs):
        href = dict(attrs).get("href")
        if tag == "a" and href:
            self.hrefs.append(href)


def hrefs_of(html: str) -> list[str]:
    parser = _Anchors()
    parser.feed(html)
    return parser.hrefs


@pytest.fixture(scope="module")
def staff_browser(deployment):
    browser = Browser(deployment.site)
    page = browser.get("/admin/login/?next=/admin/")
    assert page.status_code == 200, page.status_code
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)

    response = browser.post_form("/admin/login/?next=/admin/", {
        "csrfmiddlewaretoken": token, "username": deployment.staff.username, "password": deployment.staff.password,
        "next": "/admin/",
    }, referer="/admin/login/?next=/admin/")

    assert response.status_code == 302, (response.status_code, response.text[:500])
    assert urlsplit(response.headers["Location"]).path == "/admin/"
    assert "sessionid" in browser.cookies
    return browser


def test_staff_log_in_over_https_behind_the_proxy_and_every_admin_page_renders(deployment, staff_browser):
    index = staff_browser.get("/admin/")
    assert index.status_code == 200, index.status_code
    pages = sorted({href for href in hrefs_of(index.text) if re.fullmatch(r"/admin/\w+/\w+/(add/)?", href)})
    assert "/admin/members/plaza/" in pages and "/admin/members/member/" in pages, pages

    broken = {page: status for page in pages if (status := staff_browser.get(page).status_code) != 200}

    assert broken == {}


def test_a_plazas_pages_render(deployment, staff_browser):
    plaza_id = deployment.db.value("SELECT id FROM members_plaza WHERE code = %s", deployment.plaza_code)
    base = f"/admin/members/plaza/{plaza_id}"

    pages = {path: staff_browser.get(path) for path in (
        f"{base}/change/", f"{base}/checkin-screen/", f"{base}/checkin-screen/code.json", f"{base}/print-qr/",
    )}

    assert {path: response.status_code for path, response in pages.items()} == dict.fromkeys(pages, 200)
    assert deployment.plaza_name in pages[f"{base}/change/"].text


def test_a_members_pages_render(deployment, staff_browser):
    rows = deployment.db.rows("SELECT id FROM members_member ORDER BY id LIMIT 1")
    if not rows:
        pytest.skip("no member yet")
    [(member_id,)] = rows
    base = f"/admin/members/member/{member_id}"

    statuses = {path: staff_browser.get(path).status_code for path in (f"{base}/change/", f"{base}/adjust-points/")}

    assert statuses == dict.fromkeys(statuses, 200)
