"""The consoles over the real processes: the task cluster refreshes the dashboards on its
own schedule (a step no unit test can miss-configure for us) and the admin index shows
them; a staff change is in the audit trail; mall staff make a tenant's login, and the
tenant signs in to /merchant/, sees its own sales and none of another tenant's."""

import re
import secrets

import pytest

from tests.e2e.clients import admin_login, admin_submit, new_key
from tests.e2e.test_closed_loop import follower_member_no, poll
from tests.e2e.test_tiers import new_shopper
from tests.e2e.test_wakeup import _form_errors

pytestmark = pytest.mark.e2e

REFRESH_TIMEOUT = 90  # seconds: the hourly schedule's first run comes when the cluster starts


@pytest.fixture(scope="module")
def staff(deployment):
    return admin_login(deployment.site, username=deployment.staff.username, password=deployment.staff.password)


def test_the_cluster_refreshes_the_dashboards_and_the_index_shows_them(deployment, staff):
    refreshed = poll(lambda: deployment.db.value("SELECT COUNT(*) FROM backoffice_dashboardrefresh"), lambda n: n > 0,
                     timeout=REFRESH_TIMEOUT, every=1)
    assert refreshed > 0, "the task cluster never ran the dashboards' scheduled refresh"

    index = staff.get("/admin/")
    assert index.status_code == 200, index.status_code
    assert 'id="dashboard"' in index.text and "backoffice/vendor/chart.umd" in index.text
    assert "cdn" not in index.text.lower()
    csv = staff.get("/admin/dashboard.csv")
    assert csv.status_code == 200 and csv.headers["Content-Type"].startswith("text/csv"), csv.status_code


def test_a_staff_change_is_in_the_audit_trail_with_its_reason(deployment, staff):
    plaza_id = deployment.db.value("SELECT id FROM members_plaza WHERE code = %s", deployment.plaza_code)
    notice = f"e2e notice {secrets.token_hex(3)}"
    saved = admin_submit(staff, f"/admin/members/plaza/{plaza_id}/change/", {
        "notice": notice, "audit_reason": "e2e: the notice board changed",
    }, form_id="plaza_form")
    assert saved.status_code == 302, _form_errors(saved)

    rows = deployment.db.rows(
        "SELECT actor_username, action, reason, changes FROM core_auditentry WHERE object_id = %s "
        "AND content_type_id = (SELECT id FROM django_content_type WHERE app_label = 'members' AND model = 'plaza') "
        "ORDER BY id DESC", str(plaza_id),
    )
    assert rows, "no audit row for the change"
    actor, action, reason, changes = rows[0]
    assert (actor, action, reason) == (deployment.staff.username, "change", "e2e: the notice board changed"), rows[0]
    assert notice in str(changes), changes


def test_a_tenant_signs_in_to_its_own_back_office_and_sees_only_its_own(deployment, staff):
    # The tenant is the concurrency tests' shop: its sale must not move the closed loop's
    # daily report, which counts the other shop's sales of today.
    site, shop, other = deployment.site, deployment.other_shop, deployment.shop
    username, password = f"tenant-{secrets.token_hex(3)}", secrets.token_urlsafe(16)
    made = admin_submit(staff, "/admin/backoffice/merchantstaff/add/", {
        "merchant": str(shop.merchant_id), "username": username, "password1": password, "password2": password,
    }, form_id="merchantstaff_form")
    assert made.status_code == 302, _form_errors(made)

    # A sale of this tenant's, through its POS.
    openid, _token = new_shopper(deployment)
    sale = site.post_json("/api/v1/purchases/", {
        "member_no": follower_member_no(deployment.official_account, openid),
        "store_code": shop.store_code, "amount_fen": 4_321,
    }, token=shop.api_key, idempotency_key=new_key("tenant"))
    assert sale.status_code == 201, sale.text[:500]

    tenant = admin_login_at(site, "/merchant/", username=username, password=password)
    home = tenant.get("/merchant/")
    assert home.status_code == 200, home.status_code
    sales = tenant.get("/merchant/payments/purchase/")
    assert sales.status_code == 200 and "43.21" in sales.text, sales.status_code

    # Another tenant's store, by its id: not found; mall staff pages: not for tenants.
    other_store = deployment.db.value("SELECT id FROM members_store WHERE code = %s", other.store_code)
    assert tenant.get(f"/merchant/members/store/{other_store}/change/").status_code in (302, 404)
    assert tenant.get("/admin/").status_code == 302  # to the staff login: a tenant is never staff


def admin_login_at(site, prefix: str, *, username: str, password: str):
    """A browser logged in through ``prefix``'s login form (Django's admin login)."""
    from tests.e2e.clients import Browser, form_fields

    browser = Browser(site)
    login = f"{prefix}login/?next={prefix}"
    page = browser.get(login)
    assert page.status_code == 200, page.status_code
    fields = form_fields(page.text, form_id="login-form")
    fields.update(username=[username], password=[password], next=[prefix])
    response = browser.post_form(login, fields, referer=login)
    assert response.status_code == 302 and not re.search(r"login", response.headers.get("Location", "")), (
        response.status_code, response.text[:500])
    return browser
