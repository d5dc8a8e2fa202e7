"""The orders admin: lists, filters and pages that only show, and the refund and close
steps staff take there, each through its service (sandbox gateway end to end)."""

import uuid
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from members import ledger
from payments import orders, refunds
from payments.gateways import sandbox
from payments.models import Order, OrderEvent, OrderRefund, PaymentNotification, SandboxTrade
from tests.factories import assert_ledger_invariants, make_member
from tests.payments.conftest import build_shop

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("sandbox_on")]



@pytest.fixture(autouse=True)
def _admin_in_english(settings):
    """The messages are asserted in English; the mall's staff read them in Chinese."""
    settings.LANGUAGE_CODE = "en"

@pytest.fixture
def sandbox_on(settings):
    settings.O2O_SANDBOX = True


def new_order(shop, member=None, *, amount_fen, points=0, order_ref="") -> Order:
    return orders.order_create(
        store=shop.store, member=member, amount_fen=amount_fen, points_to_use=points, channel="sandbox",
        client=Order.Client.CASHIER, site_url="http://testserver", order_ref=order_ref,
    )


def notify(headers, body):
    return Client().post("/payments/notify/sandbox/", data=body, content_type="application/json", headers=headers)


def pay(order: Order) -> Order:
    assert notify(*sandbox.trade_pay(out_trade_no=order.out_trade_no)).status_code == 200
    order.refresh_from_db()
    return order


def refund(order: Order, amount_fen: int) -> OrderRefund:
    return refunds.refund_submit(refund=refunds.order_refund_request(order=order, amount_fen=amount_fen, reason="test"))


def balance(member) -> int:
    return ledger.member_points_balance(member=member)


def admin_url(model, view, *args) -> str:
    return reverse(f"admin:payments_{model._meta.model_name}_{view}", args=args)


def refund_url(order: Order) -> str:
    return reverse("admin:payments_order_refund", args=[order.pk])


def listed(client, model, **params) -> set[str]:
    response = client.get(admin_url(model, "changelist"), params)
    assert response.status_code == 200, response.content[:300]
    return {str(obj) for obj in response.context["cl"].result_list}


def message_texts(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def action_names(client) -> set[str]:
    form = client.get(admin_url(Order, "changelist")).context["action_form"]
    return set() if form is None else {name for name, _ in form.fields["action"].choices if name}


def staff(client, username, *codenames) -> Client:
    user = User.objects.create_user(username, password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="payments", codename__in=codenames))
    client.force_login(user)
    return client


@pytest.fixture
def book():
    """Orders in every status at two shops, a refund of each kind of outcome, and a forged notification."""
    tea, noodles = build_shop(name="Tea House"), build_shop(name="Noodle Bar")
    member = make_member()
    ledger.points_grant(member=member, points=2_000, reason="gift", idempotency_key="grant-book")
    created = new_order(tea, member, amount_fen=5_000)
    paid = pay(new_order(tea, member, amount_fen=10_000, points=1_000, order_ref="POS-1"))
    partial = pay(new_order(tea, member, amount_fen=4_000))
    refund(partial, 1_000)
    refunded = pay(new_order(noodles, member, amount_fen=3_000))
    refund(refunded, 3_000)
    closed = orders.order_close(order=new_order(noodles, member, amount_fen=2_000))
    points_only = new_order(noodles, member, amount_fen=500, points=500)
    forged = notify({}, b"<script>alert(1)</script>")
    assert forged.status_code == 400
    named = {"created": created, "paid": paid, "partial": partial, "refunded": refunded, "closed": closed,
             "points_only": points_only}
    named = {name: Order.objects.get(pk=order.pk) for name, order in named.items()}
    return {"tea": tea, "noodles": noodles, "member": member, **named}


def numbers(book, *names) -> set[str]:
    return {book[name].out_trade_no for name in names}


ALL = ("created", "paid", "partial", "refunded", "closed", "points_only")


# --- the lists and pages ------------------------------------------------------------


def test_order_list_shows_every_status_with_amounts_in_yuan(admin_client, book):
    assert {book[name].status for name in ALL} == set(Order.Status.values)
    assert listed(admin_client, Order) == numbers(book, *ALL)
    page = admin_client.get(admin_url(Order, "changelist")).content.decode()
    assert "100.00" in page and "90.00" in page and "30.00" in page


def test_order_list_filters_by_status_channel_gateway_merchant_store_and_day(admin_client, book):
    tea, noodles = book["tea"], book["noodles"]
    assert listed(admin_client, Order, status="paid") == numbers(book, "paid", "points_only")
    assert listed(admin_client, Order, status="partially_refunded") == numbers(book, "partial")
    assert listed(admin_client, Order, status="closed") == numbers(book, "closed")
    assert listed(admin_client, Order, channel="points") == numbers(book, "points_only")
    assert listed(admin_client, Order, gateway="sandbox") == numbers(book, *ALL[:-1])
    assert listed(admin_client, Order, merchant=str(tea.merchant.pk)) == numbers(book, "created", "paid", "partial")
    assert listed(admin_client, Order, merchant="Noodle") == numbers(book, "refunded", "closed", "points_only")
    assert listed(admin_client, Order, store=noodles.store.code) == numbers(book, "refunded", "closed", "points_only")
    assert listed(admin_client, Order, store=str(tea.store.pk)) == numbers(book, "created", "paid", "partial")
    assert listed(admin_client, Order, store="no-such-store") == set()
    day = timezone.localdate(book["paid"].created_at)
    assert listed(admin_client, Order, created_at__year=day.year, created_at__month=day.month,
                  created_at__day=day.day) == numbers(book, *ALL)
    before = day - timedelta(days=1)
    assert listed(admin_client, Order, created_at__year=before.year, created_at__month=before.month,
                  created_at__day=before.day) == set()


def test_order_search_finds_whole_order_transaction_member_and_pos_numbers(admin_client, book):
    paid = book["paid"]
    assert listed(admin_client, Order, q=paid.out_trade_no) == {paid.out_trade_no}
    assert listed(admin_client, Order, q=paid.transaction_id) == {paid.out_trade_no}
    assert listed(admin_client, Order, q="POS-1") == {paid.out_trade_no}
    assert listed(admin_client, Order, q=book["member"].member_no) == numbers(book, *ALL)
    assert listed(admin_client, Order, q=paid.out_trade_no[:-1]) == set()


def test_order_pages_are_read_only_and_show_events_refunds_and_notifications(admin_client, book):
    for name in ALL:
        assert admin_client.get(admin_url(Order, "change", book[name].pk)).status_code == 200, name
    page = admin_client.get(admin_url(Order, "change", book["partial"].pk)).content.decode()
    (partial_refund,) = book["partial"].refunds.all()
    assert partial_refund.out_refund_no in page and "refund_requested" in page
    assert "40.00" in page and "30.00" in page  # amount, and left to refund
    assert str(PaymentNotification.Outcome.PROCESSED.label) in page
    assert reverse("admin:members_store_print_qr", args=[book["tea"].store.pk]) in page

    paid = book["paid"]
    assert admin_client.get(admin_url(Order, "add")).status_code == 403
    assert admin_client.get(admin_url(Order, "delete", paid.pk)).status_code == 403
    assert admin_client.post(admin_url(Order, "change", paid.pk), {"status": "refunded"}).status_code == 403
    assert Order.objects.get(pk=paid.pk).status == "paid"
    assert "delete_selected" not in action_names(admin_client)


def test_order_page_shows_only_the_newest_notifications(admin_client, book):
    paid = book["paid"]
    start = timezone.now()
    for n in range(25):
        PaymentNotification.objects.create(
            gateway="sandbox", kind="payment", outcome="duplicate", order=paid, out_trade_no=paid.out_trade_no,
            body=f"retry {n}", received_at=start + timedelta(seconds=n),
        )
    response = admin_client.get(admin_url(Order, "change", paid.pk))
    (shown,) = [f for f in response.context["inline_admin_formsets"] if f.opts.model is PaymentNotification]
    instances = [form.instance for form in shown.formset.forms]
    assert len(instances) == 20
    assert [i.body for i in instances[:2]] == ["retry 24", "retry 23"]


def test_refund_and_notification_lists_filter_and_pages_load(admin_client, book):
    partial, refunded = book["partial"].refunds.get(), book["refunded"].refunds.get()
    assert listed(admin_client, OrderRefund) == {partial.out_refund_no, refunded.out_refund_no}
    assert listed(admin_client, OrderRefund, status="succeeded", kind="requested") == {partial.out_refund_no, refunded.out_refund_no}
    assert listed(admin_client, OrderRefund, status="pending") == set()
    assert listed(admin_client, OrderRefund, q=book["partial"].out_trade_no) == {partial.out_refund_no}
    assert admin_client.get(admin_url(OrderRefund, "change", partial.pk)).status_code == 200
    assert admin_client.get(admin_url(OrderRefund, "add")).status_code == 403

    rejected = PaymentNotification.objects.get(outcome="rejected")
    assert {n.pk for n in admin_client.get(admin_url(PaymentNotification, "changelist"),
                                           {"gateway": "sandbox", "outcome": "rejected"}).context["cl"].result_list} == {rejected.pk}
    processed = admin_client.get(admin_url(PaymentNotification, "changelist"), {"q": book["paid"].transaction_id})
    assert [n.out_trade_no for n in processed.context["cl"].result_list] == [book["paid"].out_trade_no]
    assert admin_client.get(admin_url(PaymentNotification, "add")).status_code == 403


def test_notification_page_shows_the_raw_body_escaped(admin_client, book):
    rejected = PaymentNotification.objects.get(outcome="rejected")
    page = admin_client.get(admin_url(PaymentNotification, "change", rejected.pk)).content.decode()
    assert "<pre" in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>alert(1)" not in page


# --- refunds --------------------------------------------------------------------------


@pytest.fixture
def paid_with_points():
    """A ¥100 order, ¥90 paid through the sandbox and 1000 points used; it earned 90 points."""
    shop, member = build_shop(), make_member()
    ledger.points_grant(member=member, points=1_000, reason="gift", idempotency_key="g")
    order = pay(new_order(shop, member, amount_fen=10_000, points=1_000))
    assert (order.status, balance(member)) == ("paid", 90)
    return order


def post_refund(client, order, *, amount, reason="damaged goods", token=None, follow=False):
    form = {"apply": "1", "token": token or str(uuid.uuid4()), "amount": amount, "reason": reason}
    return client.post(refund_url(order), form, follow=follow)


def test_refund_from_the_order_page_moves_cash_and_points_then_completes_the_order(admin_client, paid_with_points):
    order, member = paid_with_points, paid_with_points.member
    assert refund_url(order) in admin_client.get(admin_url(Order, "change", order.pk)).content.decode()
    form = admin_client.get(refund_url(order)).context["form"]
    assert form["amount"].value() == "100.00"
    token = str(form["token"].value())

    response = post_refund(admin_client, order, amount="50.00", token=token, follow=True)

    assert response.redirect_chain == [(admin_url(Order, "change", order.pk), 302)]
    first = OrderRefund.objects.get()
    assert (first.status, first.amount_fen, first.cash_fen, first.points) == ("succeeded", 5_000, 4_500, 500)
    assert (first.reason, first.requested_by.username) == ("damaged goods", "admin")
    assert any("succeeded" in m and "45.00" in m for m in message_texts(response))
    order.refresh_from_db()
    assert (order.status, order.refunded_fen) == ("partially_refunded", 5_000)
    assert balance(member) == 90 - 45 + 500
    assert SandboxTrade.objects.get(out_trade_no=order.out_trade_no).refunded_fen == 4_500

    # The same form submitted again: the same refund, nothing moves twice.
    post_refund(admin_client, order, amount="50.00", token=token)
    assert OrderRefund.objects.count() == 1 and balance(member) == 545

    assert admin_client.get(refund_url(order)).context["form"]["amount"].value() == "50.00"
    post_refund(admin_client, order, amount="50.00")
    order.refresh_from_db()
    assert (order.status, order.refunded_fen) == ("refunded", 10_000)
    assert balance(member) == 1_000
    assert [e.kind for e in order.events.all()][-2:] == ["refunded", "status"]
    assert_ledger_invariants()

    assert refund_url(order) not in admin_client.get(admin_url(Order, "change", order.pk)).content.decode()
    closed_form = admin_client.get(refund_url(order), follow=True)
    assert any("cannot be refunded" in m for m in message_texts(closed_form))


def test_refund_action_opens_the_refund_page_of_one_selected_order(admin_client, paid_with_points, book):
    changelist = admin_url(Order, "changelist")
    response = admin_client.post(changelist, {"action": "refund", "_selected_action": [paid_with_points.pk]})
    assert response.status_code == 302 and response.url == refund_url(paid_with_points)
    two = admin_client.post(changelist, {"action": "refund", "_selected_action": [paid_with_points.pk, book["paid"].pk]},
                            follow=True)
    assert "Select one order to refund." in message_texts(two)
    assert not OrderRefund.objects.filter(order=paid_with_points).exists()


@pytest.mark.parametrize("amount", ["100.01", "0", "0.00", "-5", "abc", "1.234", ""])
def test_refund_of_more_than_is_left_or_not_an_amount_is_a_form_error(admin_client, paid_with_points, amount):
    response = post_refund(admin_client, paid_with_points, amount=amount)
    assert response.status_code == 200
    assert response.context["form"].errors["amount"]
    assert not OrderRefund.objects.exists()
    assert Order.objects.get(pk=paid_with_points.pk).refunded_fen == 0


def test_refund_without_a_reason_is_a_form_error(admin_client, paid_with_points):
    response = post_refund(admin_client, paid_with_points, amount="10.00", reason="")
    assert response.context["form"].errors["reason"]
    assert not OrderRefund.objects.exists()


def test_refund_the_platform_refuses_is_reported_and_changes_nothing(admin_client, paid_with_points):
    order, member = paid_with_points, paid_with_points.member
    SandboxTrade.objects.filter(out_trade_no=order.out_trade_no).update(status="CLOSED")

    response = post_refund(admin_client, order, amount="20.00", follow=True)

    assert OrderRefund.objects.get().status == "failed"
    assert any("failed: trade not paid" in m for m in message_texts(response))
    order.refresh_from_db()
    assert (order.status, order.refunded_fen) == ("paid", 0)
    assert balance(member) == 90


def test_staff_without_the_refund_permission_cannot_refund(client, paid_with_points):
    order, member = paid_with_points, paid_with_points.member
    viewer = staff(client, "viewer", "view_order")
    page = viewer.get(admin_url(Order, "change", order.pk))
    assert page.status_code == 200 and refund_url(order) not in page.content.decode()
    assert action_names(viewer) == set()

    assert viewer.get(refund_url(order)).status_code == 403
    assert post_refund(viewer, order, amount="100.00").status_code == 403
    forged_action = viewer.post(admin_url(Order, "changelist"), {"action": "refund", "_selected_action": [order.pk]})
    assert forged_action.status_code == 200  # the list again: no action is offered to run

    assert not OrderRefund.objects.exists()
    order.refresh_from_db()
    assert (order.status, order.refunded_fen) == ("paid", 0)
    assert balance(member) == 90


def test_refund_permission_alone_offers_refund_but_not_close(client, paid_with_points):
    refunder = staff(client, "refunder", "view_order", "refund_order")
    assert action_names(refunder) == {"refund"}
    post_refund(refunder, paid_with_points, amount="10.00")
    assert OrderRefund.objects.get().requested_by.username == "refunder"


# --- closing unpaid orders ------------------------------------------------------------


def test_close_action_closes_unpaid_orders_and_gives_back_held_points(admin_client, paid_with_points):
    shop, member = build_shop(), make_member()
    ledger.points_grant(member=member, points=300, reason="gift", idempotency_key="g2")
    unpaid = new_order(shop, member, amount_fen=1_000, points=300)
    assert balance(member) == 0

    response = admin_client.post(
        admin_url(Order, "changelist"),
        {"action": "close_unpaid", "_selected_action": [unpaid.pk, paid_with_points.pk]}, follow=True,
    )

    assert "1 order closed." in message_texts(response)
    unpaid.refresh_from_db()
    assert unpaid.status == "closed" and balance(member) == 300
    assert SandboxTrade.objects.get(out_trade_no=unpaid.out_trade_no).status == "CLOSED"
    assert OrderEvent.objects.get(order=unpaid, kind="closed").operator.username == "admin"
    assert Order.objects.get(pk=paid_with_points.pk).status == "paid"
    assert_ledger_invariants()


def test_close_action_books_an_order_the_platform_says_was_paid(admin_client):
    shop, member = build_shop(), make_member()
    order = new_order(shop, member, amount_fen=1_000)
    SandboxTrade.objects.filter(out_trade_no=order.out_trade_no).update(status="SUCCESS", paid_at=timezone.now())

    response = admin_client.post(admin_url(Order, "changelist"),
                                 {"action": "close_unpaid", "_selected_action": [order.pk]}, follow=True)

    assert any("paid after all" in m for m in message_texts(response))
    order.refresh_from_db()
    assert order.status == "paid" and balance(member) == 10
