"""Paying a shop through Alipay, over HTTP against the real processes (DEBUG off: no
sandbox cashier). A shopper who logged in to the Alipay mini-program pays part of a bill
with points (alipay.trade.create), Alipay's signed notification books it once, a forged
or tampered one changes nothing, and the shop refunds it through the merchant API
(alipay.trade.refund). An order nobody pays is closed by the task cluster's schedule
after asking Alipay. A POS's QR (alipay.trade.precreate) paid by someone new makes
them a member with the points. Alipay is tests/e2e/clients.py's FakeAlipay."""

import json
import subprocess
from dataclasses import dataclass
from urllib.parse import urlencode

import pytest

from tests.e2e.clients import FakeAlipay, new_key
from tests.e2e.conftest import BIN, ROOT, STEP_TIMEOUT, Shop
from tests.e2e.test_closed_loop import me, member_code, poll, pos
from tests.fakes.platform_server import rsa_key_pair

pytestmark = pytest.mark.e2e

NOTIFY_PATH = "/payments/notify/alipay/"
# The schedule "payments.tasks.orders_close_stale" comes round every minute and django-q2's
# scheduler looks every 30 s; the machine may be busy.
SCHEDULE_TIMEOUT = 150


@dataclass(frozen=True)
class AlipayShopper:
    user_id: str
    token: str
    member_no: str


@pytest.fixture(scope="module")
def alipay(deployment) -> FakeAlipay:
    keys = deployment.keys
    return FakeAlipay(
        deployment.platforms, app_id=keys.alipay_app_id, app_public_pem=keys.alipay_app_keys.public_pem,
        alipay_private_pem=keys.alipay_keys.private_pem,
        seller_id=deployment.env.get("ALIPAY_SELLER_ID") or "2088000000000001",
    )


@pytest.fixture(scope="module")
def shop(deployment) -> Shop:
    """A shop of its own, made as an operator makes one (its daily report is nobody else's)."""
    result = subprocess.run(
        [str(BIN / "python"), "manage.py", "createmerchant", "E2E Tea", "--plaza", deployment.plaza_code],
        cwd=ROOT, env=deployment.env, capture_output=True, text=True, timeout=STEP_TIMEOUT, stdin=subprocess.DEVNULL,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    [line] = [line for line in result.stdout.splitlines() if line.startswith("{")]
    return Shop(**json.loads(line))


def alipay_login(site, alipay: FakeAlipay, user_id: str) -> dict:
    response = site.post_json("/api/mp/v1/auth/alipay/", {"auth_code": alipay.login(user_id)})
    assert response.status_code == 200, (response.status_code, response.text[:500])
    return response.json()


def alipay_shopper(deployment, alipay: FakeAlipay, shop: Shop, *, points: int) -> AlipayShopper:
    """A new shopper in the Alipay mini-program who earned ``points`` at ``shop``'s till."""
    site, user_id = deployment.site, alipay.new_user_id()
    login = alipay_login(site, alipay, user_id)
    sale = {"member_code": member_code(site, login["token"]), "store_code": shop.store_code, "amount_fen": points * 100}
    purchase = pos(site, shop, "/api/v1/purchases/", sale)
    assert purchase.status_code == 201, (purchase.status_code, purchase.text[:500])
    assert purchase.json()["points_balance"] == points, purchase.json()
    return AlipayShopper(user_id=user_id, token=login["token"], member_no=login["member_no"])


def shopper_order(site, shopper: AlipayShopper, shop: Shop, *, amount_fen: int, points: int) -> dict:
    body = {"store_code": shop.store_code, "amount_fen": amount_fen, "channel": "alipay", "points_to_use": points}
    response = site.post_json("/api/mp/v1/orders/", body, token=shopper.token)
    assert response.status_code == 201, (response.status_code, response.text[:500])
    return response.json()


def shopper_order_now(site, shopper: AlipayShopper, out_trade_no: str) -> dict:
    response = site.get_json(f"/api/mp/v1/orders/{out_trade_no}/", token=shopper.token)
    assert response.status_code == 200, (response.status_code, response.text[:500])
    return response.json()


def merchant_order_now(site, shop: Shop, out_trade_no: str) -> dict:
    response = site.get_json(f"/api/v1/orders/{out_trade_no}/", token=shop.api_key)
    assert response.status_code == 200, (response.status_code, response.text[:500])
    return response.json()


def notify(site, fields: dict[str, str]):
    """Alipay POSTs the notification form to the notify URL (through nginx, as it would)."""
    return site.post(NOTIFY_PATH, data=urlencode(fields),
                     headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})


def notifications(deployment, out_trade_no: str) -> list[tuple[str, str]]:
    return deployment.db.rows(
        "SELECT outcome, reason FROM payments_paymentnotification WHERE out_trade_no = %s ORDER BY id", out_trade_no
    )


def pushes(deployment, member_no: str, event: str) -> int:
    return deployment.db.value(
        "SELECT COUNT(*) FROM members_push p JOIN members_member m ON m.id = p.member_id WHERE m.member_no = %s "
        "AND p.event = %s", member_no, event,
    )


def test_a_mini_program_payment_with_points_is_booked_once_from_alipays_notification_and_refunded(deployment, alipay, shop):
    site = deployment.site
    shopper = alipay_shopper(deployment, alipay, shop, points=500)

    order = shopper_order(site, shopper, shop, amount_fen=6_800, points=500)

    number = order["out_trade_no"]
    assert (order["status"], order["payable_fen"], order["points_used"]) == ("created", 6_300, 500), order
    [create] = alipay.calls("alipay.trade.create", number)
    assert (create["biz"]["buyer_id"], create["biz"]["total_amount"]) == (shopper.user_id, "63.00"), create
    assert create["notify_url"] == deployment.env["O2O_PUBLIC_BASE_URL"] + NOTIFY_PATH
    assert order["pay_params"] == {"trade_no": alipay.trades[number]["trade_no"]}
    assert me(site, shopper.token)["points_balance"] == 0  # held while the shopper pays

    # The shopper pays in Alipay; Alipay tells us.
    notification = alipay.paid_notification(number)
    answer = notify(site, notification)

    assert (answer.status_code, answer.text) == (200, "success")
    paid = shopper_order_now(site, shopper, number)
    assert (paid["status"], paid["points_earned"], paid["refunded_fen"]) == ("paid", 63, 0), paid
    assert paid["paid_at"] is not None
    assert me(site, shopper.token)["points_balance"] == 63  # 500 spent, 63 earned on ¥63.00
    seen_by_shop = merchant_order_now(site, shop, number)
    assert (seen_by_shop["status"], seen_by_shop["member_no"], seen_by_shop["points_earned"]) == (
        "paid", shopper.member_no, 63), seen_by_shop

    # Alipay did not hear "success" in time and says it again: acknowledged, nothing moves.
    again = notify(site, notification)

    assert (again.status_code, again.text) == (200, "success")
    assert me(site, shopper.token)["points_balance"] == 63
    assert shopper_order_now(site, shopper, number)["points_earned"] == 63
    assert notifications(deployment, number) == [("processed", ""), ("duplicate", "")]
    assert pushes(deployment, shopper.member_no, "order_paid") == 1

    # Not Alipay's word: the amount changed under its signature; a notification signed with another key.
    tampered = notify(site, {**notification, "total_amount": "0.01"})
    forged = notify(site, FakeAlipay.signed({**notification, "trade_no": notification["trade_no"][:-1] + "9"},
                                            rsa_key_pair().private_pem))

    assert (tampered.status_code, tampered.text) == (200, "failure")
    assert (forged.status_code, forged.text) == (200, "failure")
    assert deployment.db.rows(
        "SELECT outcome, reason FROM payments_paymentnotification WHERE gateway = 'alipay' AND body LIKE %s ORDER BY id DESC LIMIT 2",
        f"%{number}%",
    ) == [("rejected", "signature_invalid")] * 2
    assert me(site, shopper.token)["points_balance"] == 63

    # The shop refunds the whole bill: the cash through Alipay, the 500 points back, the 63 earned taken back.
    key = new_key("refund")
    refund = pos(site, shop, f"/api/v1/orders/{number}/refunds/", {"amount_fen": 6_800, "reason": "顾客退货"}, key=key)

    assert refund.status_code == 201, (refund.status_code, refund.text[:500])
    body = refund.json()
    assert (body["status"], body["amount_fen"], body["cash_fen"], body["points"]) == ("succeeded", 6_800, 6_300, 500), body
    [sent] = alipay.calls("alipay.trade.refund", number)
    assert (sent["biz"]["refund_amount"], sent["biz"]["out_request_no"]) == ("63.00", body["out_refund_no"]), sent
    assert me(site, shopper.token)["points_balance"] == 500
    refunded = merchant_order_now(site, shop, number)
    assert (refunded["status"], refunded["refunded_fen"]) == ("refunded", 6_800), refunded
    replay = pos(site, shop, f"/api/v1/orders/{number}/refunds/", {"amount_fen": 6_800, "reason": "顾客退货"}, key=key)
    assert (replay.status_code, replay.json()) == (201, body)
    assert len(alipay.calls("alipay.trade.refund", number)) == 1
    assert me(site, shopper.token)["points_balance"] == 500


def test_an_unpaid_order_is_closed_by_the_task_cluster_after_asking_alipay_and_its_points_come_back(deployment, alipay, shop):
    site = deployment.site
    shopper = alipay_shopper(deployment, alipay, shop, points=500)
    order = shopper_order(site, shopper, shop, amount_fen=6_800, points=500)
    number = order["out_trade_no"]
    assert me(site, shopper.token)["points_balance"] == 0
    # Nobody but Alipay can say it was paid.
    trade = alipay.trades[number]
    forged = notify(site, FakeAlipay.signed({
        "notify_type": "trade_status_sync", "notify_id": new_key("forged"), "charset": "utf-8", "version": "1.0",
        "sign_type": "RSA2", "app_id": deployment.keys.alipay_app_id, "trade_no": trade["trade_no"], "out_trade_no": number,
        "buyer_id": shopper.user_id, "seller_id": trade["seller_id"], "trade_status": "TRADE_SUCCESS",
        "total_amount": trade["total_amount"],
    }, rsa_key_pair().private_pem))
    assert (forged.status_code, forged.text) == (200, "failure")
    assert notifications(deployment, number) == []  # refused before it was read as being about this order
    assert shopper_order_now(site, shopper, number)["status"] == "created"

    # Its time to pay runs out (the suite moves rows into the past rather than faking a clock).
    deployment.db.rows("UPDATE payments_order SET expires_at = created_at WHERE out_trade_no = %s", number)
    closed = poll(lambda: shopper_order_now(site, shopper, number), lambda now: now["status"] != "created",
                  timeout=SCHEDULE_TIMEOUT, every=1)

    assert closed["status"] == "closed", closed
    methods = [request.form["method"] for request in deployment.platforms.requests_to(FakeAlipay.PATH)
               if number in request.form.get("biz_content", "")]
    # Asked first (a payment may be on its way), then closed there. Both task hosts may take
    # the same minute's turn (tasks are safe to run twice), so each may have asked.
    assert methods[:2] == ["alipay.trade.create", "alipay.trade.query"], methods
    assert set(methods[1:]) == {"alipay.trade.query", "alipay.trade.close"}, methods
    assert alipay.trades[number]["trade_status"] == "TRADE_CLOSED"
    assert deployment.db.rows(
        "SELECT e.kind FROM payments_orderevent e JOIN payments_order o ON o.id = e.order_id WHERE o.out_trade_no = %s "
        "ORDER BY e.id", number,
    ) == [("created",), ("closed",)]
    assert me(site, shopper.token)["points_balance"] == 500
    assert pushes(deployment, shopper.member_no, "order_paid") == 0

    refund = pos(site, shop, f"/api/v1/orders/{number}/refunds/", {"amount_fen": 6_800})
    assert (refund.status_code, refund.json()["code"]) == (409, "order_not_refundable"), refund.text[:500]
    assert alipay.calls("alipay.trade.refund", number) == []


def test_a_pos_qr_paid_by_someone_new_makes_them_a_member_who_finds_the_points_in_the_mini_program(deployment, alipay, shop):
    site = deployment.site
    created = pos(site, shop, "/api/v1/orders/", {
        "store_code": shop.store_code, "amount_fen": 3_800, "channel": "alipay", "order_ref": new_key("pos-qr"),
    })
    assert created.status_code == 201, (created.status_code, created.text[:500])
    order = created.json()
    number = order["out_trade_no"]
    assert (order["status"], order["payable_fen"], order["member_no"]) == ("created", 3_800, None), order
    [precreate] = alipay.calls("alipay.trade.precreate", number)
    assert precreate["biz"]["total_amount"] == "38.00" and "buyer_id" not in precreate["biz"], precreate
    assert order["code_url"] == alipay.trades[number]["qr_code"]

    # Someone who never met the mall scans the QR on the POS screen and pays.
    user_id = alipay.new_user_id()
    answer = notify(site, alipay.paid_notification(number, buyer_id=user_id))

    assert (answer.status_code, answer.text) == (200, "success")
    paid = merchant_order_now(site, shop, number)
    assert (paid["status"], paid["points_earned"]) == ("paid", 38), paid
    assert paid["member_no"], paid
    # They open the mall's Alipay mini-program later: the same member, with the points.
    login = alipay_login(site, alipay, user_id)
    assert (login["created"], login["member_no"]) == (False, paid["member_no"]), login
    assert me(site, login["token"])["points_balance"] == 38
