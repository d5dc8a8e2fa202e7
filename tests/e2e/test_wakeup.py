"""Leave → come back, over HTTP against the real processes: shoppers who stopped coming
(their visits moved five months into the past) are tagged lapsed by the nightly job's
command, staff make a wake-up campaign in the admin and run it on the task cluster; the
treated get a coupon and a message (the holdout nothing), one of them comes back, shows
the coupon's rotating code at a POS, and the campaign's page shows the comeback.
A points-mall coupon is bought with points and used at the till the same way."""

import json
import re
import secrets
import subprocess
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from html import unescape

import pytest

from coupons.campaigns import holdout_drawn
from tests.e2e.clients import admin_login, admin_submit, new_key
from tests.e2e.conftest import BIN, ROOT, STEP_TIMEOUT, Shop
from tests.e2e.test_closed_loop import MALL_TIME_ZONE, follower_member_no, me, member_code, mini_program_login, poll, pos

pytestmark = pytest.mark.e2e

LAPSED_DAYS = 150  # past LAPSED_AFTER_DAYS (120, the example environment's default)
HOLDOUT_PCT = 20
MIN_TREATED, MIN_HOLDOUT, MAX_SHOPPERS = 2, 1, 60
RUN_TIMEOUT = 120  # seconds for the cluster to take the queued run and deliver (it polls; the machine may be busy)
SCHEDULE_TIMEOUT = 90  # the segments schedule's first run, at the cluster's start
SALE_FEN = 12_000
WAKE_UP_FACE_FEN, WAKE_UP_MIN_SPEND_FEN = 3_000, 10_000


@dataclass
class Shopper:
    openid: str
    unionid: str
    member_no: str
    member_id: int
    token: str


@pytest.fixture(scope="module")
def shop(deployment) -> Shop:
    """A shop of its own (the other modules' daily reports are theirs)."""
    return Shop(**_json_line(_manage(deployment, "createmerchant", "E2E Noodles", "--plaza", deployment.plaza_code)))


@pytest.fixture(scope="module")
def staff(deployment):
    return admin_login(deployment.site, username=deployment.staff.username, password=deployment.staff.password)


def _manage(deployment, *args: str) -> str:
    """A management command as the operator runs it, with the deployment's environment."""
    result = subprocess.run(
        [str(BIN / "python"), "manage.py", *args], cwd=ROOT, env=deployment.env, capture_output=True, text=True,
        timeout=STEP_TIMEOUT, stdin=subprocess.DEVNULL, check=False,
    )
    assert result.returncode == 0, (args, result.stdout[-2000:], result.stderr[-2000:])
    return result.stdout


def _json_line(out: str) -> dict:
    [line] = [line for line in out.splitlines() if line.startswith("{")]
    return json.loads(line)


def db_time(deployment, value: datetime | date):
    """``value`` as the deployment's database takes it in a query: Django keeps SQLite's
    times as UTC text."""
    if deployment.backend != "sqlite":
        return value
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return value.isoformat()


def shopper_new(deployment, shop: Shop) -> Shopper:
    """A WeChat follower who opens the mini-program and buys once at ``shop``'s till."""
    site, wechat, account = deployment.site, deployment.wechat, deployment.official_account
    unionid = "oUe2e" + secrets.token_hex(12)
    openid = wechat.follower(unionid=unionid)
    account.subscribe(openid)
    member_no = follower_member_no(account, openid)
    token = mini_program_login(site, wechat.miniapp_login(unionid=unionid))["token"]
    assert poll(lambda: me(site, token)["member_no"], lambda no: no == member_no, timeout=30) == member_no
    sale = pos(site, shop, "/api/v1/purchases/", {"member_code": member_code(site, token), "store_code": shop.store_code,
                                                 "amount_fen": SALE_FEN})
    assert sale.status_code == 201, (sale.status_code, sale.text[:500])
    member_id = deployment.db.value("SELECT id FROM members_member WHERE member_no = %s", member_no)
    return Shopper(openid=openid, unionid=unionid, member_no=member_no, member_id=member_id, token=token)


def lapse(deployment, shopper: Shopper) -> None:
    """The shopper joined and was last seen LAPSED_DAYS ago (rows moved into the past)."""
    then = db_time(deployment, datetime.now(UTC) - timedelta(days=LAPSED_DAYS))
    db = deployment.db
    db.rows("UPDATE members_visit SET occurred_at = %s WHERE member_id = %s", then, shopper.member_id)
    db.rows("UPDATE members_member SET created_at = %s, last_visit_at = %s WHERE id = %s", then, then, shopper.member_id)


def segments_tag(deployment) -> str:
    """The nightly segment tagging, by its command. The cluster ran today's at its start:
    that run is moved a year back (the day's run is done once), then the command runs today's."""
    db = deployment.db
    poll(lambda: db.rows("SELECT phase FROM members_segmentrun"), lambda rows: rows and all(p == "done" for (p,) in rows),
         timeout=SCHEDULE_TIMEOUT, every=1)
    for run_id, day in db.rows("SELECT id, day FROM members_segmentrun"):
        day = day if isinstance(day, date) else date.fromisoformat(day)
        db.rows("UPDATE members_segmentrun SET day = %s WHERE id = %s", db_time(deployment, day - timedelta(days=366)), run_id)
    return _manage(deployment, "segments_tag")


def local_now() -> datetime:
    return datetime.now(MALL_TIME_ZONE)


def template_add(deployment, staff, fields: dict[str, str]) -> int:
    """A coupon template made by staff in the admin; its id."""
    name = f"{fields['name']} {secrets.token_hex(3)}"
    response = admin_submit(staff, "/admin/coupons/coupontemplate/add/", {**fields, "name": name},
                            form_id="coupontemplate_form")
    assert response.status_code == 302, _form_errors(response)
    return deployment.db.value("SELECT id FROM coupons_coupontemplate WHERE name = %s", name)


def _form_errors(response) -> str:
    """What the admin said was wrong with a form: the fields in error and its messages."""
    fields = re.findall(r'class="form-row errors field-([\w-]+)', response.text)
    errors = re.findall(r'class="errorlist[^"]*"[^>]*>(.*?)</ul>', response.text, flags=re.S)
    return f"{response.status_code}: {fields} {unescape(' | '.join(errors))[:1000] or response.text[:500]}"


def results_rows(page: str) -> list[list[str]]:
    """The campaign page's results table: a row of cells per group, treated first."""
    rows = re.findall(r"<tr>((?:<td>.*?</td>)+)</tr>", page)
    return [[unescape(cell) for cell in re.findall(r"<td>(.*?)</td>", row)] for row in rows]


def coupon_redemption(site, shop: Shop, body: dict, key: str):
    return site.post_json("/api/v1/coupon-redemptions/", body, token=shop.api_key, idempotency_key=key)


def yuan(fen: int) -> str:
    """An amount as staff type it in the admin's forms: yuan, two decimals."""
    return f"{fen // 100}.{fen % 100:02d}"


def coupon_code(site, shopper: Shopper, coupon_id: int) -> str:
    response = site.post_json(f"/api/mp/v1/coupons/{coupon_id}/code/", {}, token=shopper.token)
    assert response.status_code == 200, (response.status_code, response.text[:500])
    return response.json()["code"]


def test_a_wake_up_campaign_run_on_the_cluster_brings_a_lapsed_shopper_back_to_the_till(deployment, shop, staff):
    site, db = deployment.site, deployment.db
    tag = secrets.token_hex(4)  # finds this campaign's message among the others
    template_id = template_add(deployment, staff, {
        "name": "E2E 新品尝鲜券", "kind": "cash_off", "funded_by": "mall", "status": "active",
        "face_value_fen": yuan(WAKE_UP_FACE_FEN), "min_spend_fen": yuan(WAKE_UP_MIN_SPEND_FEN), "valid_days": "30",
        "per_member_limit": "1",
    })
    # Staff write the campaign as a draft; it runs once they make it active.
    name = f"E2E 唤醒 {tag}"
    starts = local_now() - timedelta(hours=1)
    added = admin_submit(staff, "/admin/coupons/campaign/add/", {
        "name": name, "status": "draft", "template": str(template_id), "starts_at_0": starts.strftime("%Y-%m-%d"),
        "starts_at_1": starts.strftime("%H:%M:%S"), "segments": '["lapsed"]', "cooldown_days": "90",
        "holdout_pct": str(HOLDOUT_PCT), "message_title": "好久不见，送你一张新品尝鲜券",
        "message_body": f"商场上新了！满100减30，30天内有效。{tag}",
    }, form_id="campaign_form")
    assert added.status_code == 302, _form_errors(added)
    campaign_id = db.value("SELECT id FROM coupons_campaign WHERE name = %s", name)

    # Shoppers who bought once and stopped coming, until the draw has both groups.
    shoppers: list[Shopper] = []

    def drawn(group_holdout: bool) -> list[Shopper]:
        return [s for s in shoppers if holdout_drawn(campaign_id=campaign_id, holdout_pct=HOLDOUT_PCT,
                                                     member_id=s.member_id) == group_holdout]
    while len(drawn(False)) < MIN_TREATED or len(drawn(True)) < MIN_HOLDOUT:
        assert len(shoppers) < MAX_SHOPPERS, "the draw never held anyone out"
        shoppers.append(shopper_new(deployment, shop))
    for shopper in shoppers:
        lapse(deployment, shopper)
    treated, held_out = drawn(False), drawn(True)
    mine = [s.member_id for s in shoppers]

    # The nightly job's command tags them lapsed.
    segments_tag(deployment)
    segments = dict(db.rows(
        f"SELECT member_id, segment FROM members_membersegment WHERE member_id IN ({', '.join(['%s'] * len(mine))})", *mine
    ))
    assert segments == dict.fromkeys(mine, "lapsed"), segments

    # Staff make it active and run it: the admin queues the run on the cluster (or runs it).
    activated = admin_submit(staff, f"/admin/coupons/campaign/{campaign_id}/change/",
                             {"status": "active", "audit_reason": "e2e: the campaign starts"},
                             form_id="campaign_form")
    assert activated.status_code == 302, _form_errors(activated)
    listed = admin_submit(staff, "/admin/coupons/campaign/", {
        "action": "run_now", "_selected_action": [str(campaign_id)], "select_across": "0", "index": "0",
    }, form_id="changelist-form", button="")
    assert listed.status_code == 302, (listed.status_code, listed.text[:500])

    def delivered():
        return db.rows('SELECT member_id, "group", coupon_id, push_id, refused FROM coupons_campaigntarget '
                       "WHERE campaign_id = %s", campaign_id)
    targets = poll(delivered, lambda rows: {r[0] for r in rows} >= set(mine) and all(
        r[2] is not None or r[4] for r in rows if r[1] == "treated"), timeout=RUN_TIMEOUT, every=1)
    groups = {member_id: group for member_id, group, *_ in targets}
    assert {s.member_id: groups.get(s.member_id) for s in shoppers} == {
        s.member_id: "holdout" if s in held_out else "treated" for s in shoppers}
    # Every treated target has its coupon and its push; the holdout has neither, anywhere.
    assert [r for r in targets if r[1] == "treated" and (r[2] is None or r[3] is None or r[4])] == []
    assert [r for r in targets if r[1] == "holdout" and (r[2] is not None or r[3] is not None)] == []
    holdout_ids = [r[0] for r in targets if r[1] == "holdout"]
    marks = ", ".join(["%s"] * len(holdout_ids))
    assert db.value(f"SELECT COUNT(*) FROM coupons_coupon WHERE template_id = %s AND member_id IN ({marks})",
                    template_id, *holdout_ids) == 0
    assert db.value(f"SELECT COUNT(*) FROM members_push WHERE event = 'wake_up' AND member_id IN ({marks})", *holdout_ids) == 0

    # The outbox tells the treated in WeChat (they followed the account: a customer-service message).
    for shopper in treated:
        message = deployment.wechat.wait_for_customer_service_message(shopper.openid, tag, timeout=RUN_TIMEOUT)
        assert message is not None, deployment.wechat.customer_service_messages(shopper.openid)
    assert all(tag not in text for s in held_out for text in deployment.wechat.customer_service_messages(s.openid))

    # A treated shopper opens the mini-program again: the coupon and the message are there.
    back = treated[0]
    back.token = mini_program_login(site, deployment.wechat.miniapp_login(unionid=back.unionid))["token"]
    coupons = site.get_json("/api/mp/v1/coupons/", token=back.token).json()["results"]
    [coupon] = [c for c in coupons if c["name"].startswith("E2E 新品尝鲜券")]
    assert (coupon["status"], coupon["face_value_fen"], coupon["min_spend_fen"]) == ("issued", WAKE_UP_FACE_FEN,
                                                                                    WAKE_UP_MIN_SPEND_FEN), coupon
    inbox = site.get_json("/api/mp/v1/inbox/", token=back.token).json()["results"]
    [note] = [m for m in inbox if tag in m["body"]]
    read = site.post_json("/api/mp/v1/inbox/read/", {"ids": [note["id"]]}, token=back.token)
    assert read.status_code == 200 and read.json()["marked"] == 1, read.text[:500]
    for shopper in held_out:
        theirs = site.get_json("/api/mp/v1/coupons/", token=shopper.token).json()["results"]
        assert [c for c in theirs if c["name"].startswith("E2E 新品尝鲜券")] == []

    # At the till: the coupon's rotating code, once, however often the POS retries.
    sale = {"coupon_code": coupon_code(site, back, coupon["id"]), "store_code": shop.store_code, "amount_fen": SALE_FEN,
            "order_ref": new_key("wake")}
    key = new_key("coupon")
    redeemed = coupon_redemption(site, shop, sale, key)
    assert redeemed.status_code == 201, (redeemed.status_code, redeemed.text[:500])
    assert (redeemed.json()["coupon_id"], redeemed.json()["discount_fen"]) == (coupon["id"], WAKE_UP_FACE_FEN), redeemed.json()
    replay = coupon_redemption(site, shop, sale, key)
    assert (replay.status_code, replay.json()) == (201, redeemed.json())
    again = coupon_redemption(site, shop, {**sale, "order_ref": new_key("wake")}, new_key("coupon"))
    assert (again.status_code, again.json()["code"]) == (409, "coupon_used"), again.text[:500]
    # …and buys: the shopper came back.
    bought = pos(site, shop, "/api/v1/purchases/", {"member_code": member_code(site, back.token), "store_code": shop.store_code,
                                                   "amount_fen": SALE_FEN - WAKE_UP_FACE_FEN})
    assert bought.status_code == 201, (bought.status_code, bought.text[:500])

    # Staff see the coupons, the pushes and the result, treated beside holdout.
    n_treated = sum(1 for r in targets if r[1] == "treated")
    n_holdout = len(targets) - n_treated
    poll(lambda: db.value(
        "SELECT COUNT(*) FROM members_push p JOIN coupons_campaigntarget t ON t.push_id = p.id "
        "WHERE t.campaign_id = %s AND p.status NOT IN ('sent', 'skipped')", campaign_id),
        lambda pending: pending == 0, timeout=RUN_TIMEOUT, every=1)
    page = staff.get(f"/admin/coupons/campaign/{campaign_id}/change/")
    assert page.status_code == 200, page.status_code
    treated_row, holdout_row = results_rows(page.text)[:2]
    # targeted, pushed, opened, redeemed, came back
    assert treated_row[1:6] == [str(n_treated), str(n_treated), "1", "1", "1"], treated_row
    assert holdout_row[1:6] == [str(n_holdout), "0", "0", "0", "0"], holdout_row
    listing = staff.get(f"/admin/coupons/coupon/?q={back.member_no}")
    assert listing.status_code == 200 and coupon["code"] in listing.text, listing.status_code
    targets_page = staff.get(f"/admin/coupons/campaigntarget/?campaign__id__exact={campaign_id}")
    assert targets_page.status_code == 200 and back.member_no in targets_page.text, targets_page.status_code
    assert db.rows("SELECT func FROM django_q_task WHERE func LIKE 'coupons.%%' AND success = %s", False) == []


def test_a_shopper_exchanges_points_for_a_coupon_and_uses_it_at_the_till(deployment, shop, staff):
    site = deployment.site
    price, face = 100, 2_000
    template_id = template_add(deployment, staff, {
        "name": "E2E 积分兑换券", "kind": "voucher", "funded_by": "mall", "status": "active",
        "face_value_fen": yuan(face), "valid_days": "7", "per_member_limit": "2", "points_price": str(price),
        "total_quota": "100",
    })
    shopper = shopper_new(deployment, shop)
    balance = me(site, shopper.token)["points_balance"]
    assert balance >= price, balance

    catalogue = site.get_json("/api/mp/v1/coupons/catalogue/", token=shopper.token).json()["results"]
    assert [t["points_price"] for t in catalogue if t["id"] == template_id] == [price], catalogue
    key = new_key("exchange")
    bought = site.post_json("/api/mp/v1/coupons/exchange/", {"template_id": template_id}, token=shopper.token,
                            idempotency_key=key)
    assert bought.status_code == 201, (bought.status_code, bought.text[:500])
    replay = site.post_json("/api/mp/v1/coupons/exchange/", {"template_id": template_id}, token=shopper.token,
                            idempotency_key=key)
    assert (replay.status_code, replay.json()["id"]) == (201, bought.json()["id"])
    assert me(site, shopper.token)["points_balance"] == balance - price  # paid once

    sale = {"coupon_code": coupon_code(site, shopper, bought.json()["id"]), "store_code": shop.store_code,
            "amount_fen": 5_000}
    redeemed = coupon_redemption(site, shop, sale, new_key("coupon"))
    assert redeemed.status_code == 201, (redeemed.status_code, redeemed.text[:500])
    assert (redeemed.json()["discount_fen"], redeemed.json()["funded_by"]) == (face, "mall"), redeemed.json()
