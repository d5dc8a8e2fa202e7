"""The sales and orders pages of the mall's admin, as Chinese staff read them (zh-Hans, the
default) and as English staff do: names, columns, fields, actions and money in yuan."""

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from members import ledger
from payments import orders, refunds
from payments.gateways import sandbox
from payments.models import ApiRequest, Order, OrderRefund, PaymentNotification, Purchase, Redemption, RedemptionRefund
from tests.factories import make_member
from tests.payments.admin_language import (
    CJK,
    assert_labels_shown,
    form_labels,
    in_language,
    list_labels,
    page_text,
    speaking,
)
from tests.payments.conftest import build_shop

pytestmark = [pytest.mark.django_db]


@pytest.fixture(autouse=True)
def _sandbox(settings):
    settings.O2O_SANDBOX = True


@pytest.fixture
def book():
    """A POS purchase (refunded in part), a redemption (given back in part), and a
    ¥1,234.56 order paid with cash and points through the sandbox, refunded in part."""
    shop, member = build_shop(name="茶餐厅"), make_member()
    ledger.points_grant(member=member, points=5_000, reason="gift", idempotency_key="grant-zh")
    bought = shop.api.purchase(store_code=shop.store.code, amount_fen=10_000, member=member)
    assert bought.status_code == 201, bought.content
    shop.api.refund_purchase(bought.json()["id"], 2_500)
    redeemed = shop.api.redeem(store_code=shop.store.code, points=300, member=member)
    assert redeemed.status_code == 201, redeemed.content
    shop.api.refund_redemption(redeemed.json()["id"], 100)
    order = orders.order_create(
        store=shop.store, member=member, amount_fen=123_456, points_to_use=1_000, channel="sandbox",
        client=Order.Client.CASHIER, site_url="http://testserver",
    )
    headers, body = sandbox.trade_pay(out_trade_no=order.out_trade_no)
    assert Client().post("/payments/notify/sandbox/", data=body, content_type="application/json",
                         headers=headers).status_code == 200
    order.refresh_from_db()
    refunds.refund_submit(refund=refunds.order_refund_request(order=order, amount_fen=10_000, reason="退一杯"))
    return {
        Order: Order.objects.get(pk=order.pk), OrderRefund: order.refunds.get(), PaymentNotification: order.notifications.first(),
        Purchase: Purchase.objects.get(pk=bought.json()["id"]), Redemption: Redemption.objects.get(pk=redeemed.json()["id"]),
        RedemptionRefund: RedemptionRefund.objects.get(), ApiRequest: ApiRequest.objects.first(),
    }


@pytest.fixture
def boss(client):
    client.force_login(User.objects.create_superuser("boss", password="pw"))
    return client


def url(model, view: str, *args) -> str:
    return reverse(f"admin:payments_{model._meta.model_name}_{view}", args=args)


MODELS = [Order, OrderRefund, PaymentNotification, Purchase, Redemption, RedemptionRefund, ApiRequest]


@pytest.mark.parametrize("model", MODELS, ids=lambda model: model.__name__)
def test_lists_and_pages_speak_chinese_to_chinese_staff(boss, book, model):
    speaking(boss, "zh-hans")
    listing = boss.get(url(model, "changelist"))
    page = page_text(listing)
    assert '<html lang="zh-hans"' in page
    plural = in_language("zh-hans", model._meta.verbose_name_plural)
    assert CJK.search(plural) and plural in page, plural
    assert_labels_shown(page, list_labels(listing, "zh-hans"), "zh-hans")

    detail = boss.get(url(model, "change", book[model].pk))
    page = page_text(detail)
    assert CJK.search(in_language("zh-hans", model._meta.verbose_name))
    assert_labels_shown(page, form_labels(detail, "zh-hans"), "zh-hans")


@pytest.mark.parametrize("model", MODELS, ids=lambda model: model.__name__)
def test_lists_and_pages_speak_english_to_english_staff(boss, book, model):
    speaking(boss, "en")
    listing = boss.get(url(model, "changelist"))
    page = page_text(listing)
    assert '<html lang="en"' in page
    assert str(model._meta.verbose_name_plural).capitalize() in page or str(model._meta.verbose_name_plural) in page
    assert_labels_shown(page, list_labels(listing, "en"), "en")
    detail = boss.get(url(model, "change", book[model].pk))
    assert_labels_shown(page_text(detail), form_labels(detail, "en"), "en")


def test_the_app_its_choices_and_actions_are_chinese(boss, book):
    speaking(boss, "zh-hans")
    listing = boss.get(url(Order, "changelist"))
    page = page_text(listing)
    app = in_language("zh-hans", Order._meta.app_config.verbose_name)
    assert CJK.search(app) and app in page
    actions = {str(label) for name, label in listing.context["action_form"].fields["action"].choices if name}
    assert actions and all(CJK.search(label) for label in actions), actions
    status = in_language("zh-hans", Order.Status.PARTIALLY_REFUNDED.label)
    assert CJK.search(status) and status in page
    channel = in_language("zh-hans", Order.Channel.SANDBOX.label)
    assert CJK.search(channel) and channel in page


def test_money_reads_in_yuan_while_stored_in_fen(boss, book):
    order = book[Order]
    assert (order.amount_fen, order.refunded_fen) == (123_456, 10_000)
    listing = page_text(speaking(boss, "zh-hans").get(url(Order, "changelist")))
    assert "¥1,234.56" in listing and "¥100.00" in listing
    assert "123456" not in listing
    detail = page_text(boss.get(url(Order, "change", order.pk)))
    assert "¥1,234.56" in detail and "¥1,134.56" in detail  # the amount, and what is left to refund
    purchases = page_text(boss.get(url(Purchase, "changelist")))
    assert "¥100.00" in purchases and "¥25.00" in purchases


def test_the_refund_page_and_its_messages_are_chinese(boss, book):
    order = book[Order]
    speaking(boss, "zh-hans")
    form = boss.get(reverse("admin:payments_order_refund", args=[order.pk]))
    page = page_text(form)
    assert CJK.search(str(form.context["form"]["amount"].label)) and "¥1,134.56" in page
    too_much = boss.post(reverse("admin:payments_order_refund", args=[order.pk]),
                         {"token": form.context["form"]["token"].value(), "amount": "2000", "reason": "多退"})
    error = too_much.context["form"].errors["amount"][0]
    assert CJK.search(error) and "¥1,134.56" in error
    assert not order.refunds.exclude(pk=book[OrderRefund].pk).exists()
