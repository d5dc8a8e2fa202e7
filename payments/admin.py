"""Sales and orders in the admin: read-only; changes go through the API and services.

POS sales (purchases, redemptions) come from the merchant API. Orders, their refunds
and the platforms' raw notifications come from payments.orders, payments.refunds and
payments.notifications; the refund and close steps staff take here call those services.
"""

import json
import logging
import uuid

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import Http404
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext, gettext_lazy, ngettext

from core.admin_fields import format_yuan, yuan_column
from core.errors import ApplicationError
from core.money import fen_to_yuan, yuan_to_fen
from members.admin.base import LargeTableAdmin, MerchantFilter, ReadOnlyInline, ReadOnlyMixin, member_ids_matching
from members.models import Store
from payments import orders, refunds
from payments.models import (
    ApiRequest,
    Order,
    OrderEvent,
    OrderRefund,
    PaymentNotification,
    Purchase,
    PurchaseRefund,
    Redemption,
    RedemptionRefund,
)

logger = logging.getLogger(__name__)


class ReadOnlyAdmin(admin.ModelAdmin):
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class PurchaseRefundInline(admin.TabularInline):
    model = PurchaseRefund
    fields = ["amount_yuan", "reversal", "created_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    amount_yuan = staticmethod(yuan_column("amount_fen", model=PurchaseRefund))

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Purchase)
class PurchaseAdmin(ReadOnlyAdmin):
    list_display = ["id", "created_at", "store", "member", "amount_yuan", "refunded_yuan", "member_present", "order_ref"]
    list_select_related = ["store", "member"]
    list_filter = ["merchant", "member_present", "created_at"]
    search_fields = ["order_ref", "member__member_no"]
    raw_id_fields = ["merchant", "store", "member", "earn"]
    date_hierarchy = "created_at"
    fields = ["created_at", "merchant", "store", "member", "amount_yuan", "refunded_yuan", "order_ref", "member_present", "earn"]
    readonly_fields = ["amount_yuan", "refunded_yuan"]
    inlines = [PurchaseRefundInline]
    amount_yuan = staticmethod(yuan_column("amount_fen", model=Purchase))
    refunded_yuan = staticmethod(yuan_column("refunded_fen", model=Purchase))


@admin.register(Redemption)
class RedemptionAdmin(ReadOnlyAdmin):
    list_display = ["id", "created_at", "store", "member", "points", "returned_points", "order_ref"]
    list_select_related = ["store", "member"]
    list_filter = ["merchant", "created_at"]
    search_fields = ["order_ref", "member__member_no"]
    raw_id_fields = ["merchant", "store", "member", "redeem"]
    date_hierarchy = "created_at"


@admin.register(RedemptionRefund)
class RedemptionRefundAdmin(ReadOnlyAdmin):
    list_display = ["id", "created_at", "redemption", "points"]
    raw_id_fields = ["redemption", "reversal"]


@admin.register(ApiRequest)
class ApiRequestAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "merchant", "key", "status_code"]
    list_select_related = ["merchant"]
    list_filter = ["status_code"]
    search_fields = ["key"]
    raw_id_fields = ["merchant"]


# --- orders paid by scanning a shop's QR ----------------------------------------------
#
# Read-only like the sales above: every step of an order is a service (payments.orders,
# payments.refunds); the pages only show them and offer the two steps staff take by
# hand, a refund and the close of an unpaid order, each through its service.

# The permission Order.Meta defines; closing an unpaid order needs "change order".
REFUND_PERMISSION = "payments.refund_order"
CLOSE_PERMISSION = "payments.change_order"
# An order page shows its newest notifications; the rest are on the notifications list.
NOTIFICATIONS_SHOWN = 20
# Each close asks the platform first: a batch stays small.
CLOSE_MAX_ORDERS = 50


class StoreFilter(MerchantFilter):
    """A store id or code, typed in: as many stores as merchants."""

    title = gettext_lazy("store")
    parameter_name = "store"

    def choices(self, changelist):
        for choice in super().choices(changelist):
            yield {**choice, "placeholder": gettext("id or code")}

    def queryset(self, request, queryset):
        value = (self.value() or "").strip()
        if not value:
            return queryset
        if value.isdigit():
            return queryset.filter(store_id=int(value))
        return queryset.filter(store_id__in=Store.objects.filter(code=value).values_list("pk", flat=True))


class OrderEventInline(ReadOnlyInline):
    model = OrderEvent
    fields = ["created_at", "kind", "from_status", "to_status", "detail", "operator"]
    show_change_link = False


class OrderRefundInline(ReadOnlyInline):
    model = OrderRefund
    fields = ["out_refund_no", "kind", "status", "amount_yuan", "cash_yuan", "points", "reason", "failure",
              "requested_by", "created_at", "finished_at"]
    amount_yuan = staticmethod(yuan_column("amount_fen", model=OrderRefund))
    cash_yuan = staticmethod(yuan_column("cash_fen", model=OrderRefund))


class PaymentNotificationInline(ReadOnlyInline):
    """The newest NOTIFICATIONS_SHOWN only (OrderAdmin.get_formset_kwargs): a platform
    retrying for days sends hundreds."""

    model = PaymentNotification
    fields = ["received_at", "gateway", "kind", "outcome", "reason", "transaction_id", "remote_addr"]
    ordering = ["-received_at", "-pk"]
    verbose_name_plural = gettext_lazy("payment notifications (newest first)")


class RefundForm(forms.Form):
    # A uuid4 per rendered form: submitted twice, it makes one refund (the refund's
    # idempotency key is admin:<token>).
    token = forms.UUIDField(widget=forms.HiddenInput)
    amount = forms.CharField(
        label=gettext_lazy("Amount (¥)"), max_length=20,
        help_text=gettext_lazy("Of the order's whole amount: cash and points go back in the proportion they paid."),
    )
    reason = forms.CharField(label=gettext_lazy("Reason"), max_length=200, widget=forms.TextInput(attrs={"size": 60}))

    def __init__(self, *args, left_fen: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.left_fen = left_fen

    def clean_amount(self) -> int:
        """The amount in fen: positive, whole fen, at most what is left to refund."""
        try:
            amount_fen = yuan_to_fen(self.cleaned_data["amount"])
        except ValueError:
            raise forms.ValidationError(gettext("Enter an amount in yuan, such as 12.50."), code="invalid") from None
        if amount_fen <= 0:
            raise forms.ValidationError(gettext("The amount must be more than zero."), code="not_positive")
        if amount_fen > self.left_fen:
            raise forms.ValidationError(
                gettext("At most %(left)s is left to refund.") % {"left": format_yuan(self.left_fen)}, code="over_left",
            )
        return amount_fen


@admin.register(Order)
class OrderAdmin(ReadOnlyMixin, LargeTableAdmin):
    # What staff scan a day's orders by; the rest (merchant, gateway, points, times) is one click away.
    list_display = ["out_trade_no", "store", "member", "channel", "status", "amount_yuan", "payable_yuan", "refunded_yuan",
                    "created_at"]
    list_select_related = ["store", "member"]
    list_filter = [MerchantFilter, StoreFilter, "channel", "gateway", "status"]
    date_hierarchy = "created_at"
    ordering = ["-created_at"]
    sortable_by = ["created_at"]
    search_fields = ["out_trade_no", "transaction_id", "order_ref", "member__member_no"]
    search_help_text = gettext_lazy(
        "A whole order number, platform transaction number, POS order number, or member number, phone or openid."
    )
    fieldsets = [
        (None, {"fields": ["out_trade_no", "status", "merchant", "store", "store_qr", "member", "description", "order_ref"]}),
        (gettext_lazy("Amounts"), {"fields": [
            "amount_yuan", "points_used", "points_yuan", "coupon_code", "coupon", "coupon_discount_yuan", "payable_yuan",
            "refunded_yuan", "refundable_yuan",
        ]}),
        (gettext_lazy("Platform"), {"fields": [
            "channel", "gateway", "client", "collector", "sub_merchant_id", "payer_id", "transaction_id", "pay_params",
            "points_hold", "earn",
        ]}),
        (gettext_lazy("Times"), {"fields": ["created_at", "expires_at", "paid_at", "closed_at"]}),
    ]
    readonly_fields = ["store_qr", "amount_yuan", "points_yuan", "coupon_discount_yuan", "payable_yuan", "refunded_yuan",
                       "refundable_yuan"]
    inlines = [OrderEventInline, OrderRefundInline, PaymentNotificationInline]
    actions = ["refund", "close_unpaid"]

    def search_q(self, term):
        # Exact values, each with an index of its own (transaction_id's is (gateway,
        # transaction_id): naming every gateway lets it serve), except order_ref, unique
        # only per merchant: until it has an index, this search scans the orders.
        return (
            Q(out_trade_no=term)
            | Q(gateway__in=Order.Gateway.values, transaction_id=term)
            | Q(order_ref=term)
            | Q(member_id__in=member_ids_matching(term))
        )

    amount_yuan = staticmethod(yuan_column("amount_fen", model=Order))
    points_yuan = staticmethod(yuan_column("points_fen", model=Order))
    coupon_discount_yuan = staticmethod(yuan_column("coupon_discount_fen", model=Order))
    payable_yuan = staticmethod(yuan_column("payable_fen", model=Order))
    refunded_yuan = staticmethod(yuan_column("refunded_fen", model=Order))

    @admin.display(description=gettext_lazy("left to refund"))
    def refundable_yuan(self, obj):
        return format_yuan(_refundable_fen(obj))

    @admin.display(description=gettext_lazy("store's payment QR"))
    def store_qr(self, obj):
        if not obj.store.is_active:
            return "—"
        url = reverse("admin:members_store_print_qr", args=[obj.store_id])
        return format_html('<a href="{}" target="_blank">{}</a>', url, gettext("Print payment QR"))

    def get_formset_kwargs(self, request, obj, inline, prefix):
        kwargs = super().get_formset_kwargs(request, obj, inline, prefix)
        if isinstance(inline, PaymentNotificationInline) and obj is not None:
            newest = obj.notifications.order_by("-received_at", "-pk").values_list("pk", flat=True)[:NOTIFICATIONS_SHOWN]
            kwargs["queryset"] = kwargs["queryset"].filter(pk__in=list(newest))
        return kwargs

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        context["can_refund"] = obj is not None and self.has_refund_permission(request) and _refundable_fen(obj) > 0
        return super().render_change_form(request, context, add, change, form_url, obj)

    # -- refund: an action on the list, a button on the order page, one form --------

    def get_urls(self):
        view = self.admin_site.admin_view(self.refund_view)
        return [path("<path:object_id>/refund/", view, name="payments_order_refund"), *super().get_urls()]

    def has_refund_permission(self, request) -> bool:
        return request.user.has_perm(REFUND_PERMISSION)

    def has_close_permission(self, request) -> bool:
        return request.user.has_perm(CLOSE_PERMISSION)

    @admin.action(description=gettext_lazy("Refund the selected order"), permissions=["refund"])
    def refund(self, request, queryset):
        selected = list(queryset[:2])
        if len(selected) != 1:
            self.message_user(request, gettext("Select one order to refund."), messages.ERROR)
            return None
        return redirect("admin:payments_order_refund", selected[0].pk)

    def refund_view(self, request, object_id):
        if not self.has_refund_permission(request):
            raise PermissionDenied
        order = self.get_object(request, object_id)
        if order is None:
            raise Http404
        left_fen = _refundable_fen(order)
        if left_fen <= 0:
            message = gettext("Order %(order)s cannot be refunded: it is %(status)s.") % {
                "order": order.out_trade_no, "status": order.get_status_display()}
            self.message_user(request, message, messages.ERROR)
            return redirect("admin:payments_order_change", order.pk)
        if request.method == "POST":
            form = RefundForm(request.POST, left_fen=left_fen)
            if form.is_valid() and self._refund(request, order, **form.cleaned_data):
                return redirect("admin:payments_order_change", order.pk)
        else:
            form = RefundForm(initial={"token": uuid.uuid4(), "amount": fen_to_yuan(left_fen)}, left_fen=left_fen)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": gettext("Refund order %(order)s") % {"order": order.out_trade_no},
            "form": form,
            "order": order,
            "amounts": {
                "amount": format_yuan(order.amount_fen), "payable": format_yuan(order.payable_fen),
                "refunded": format_yuan(order.refunded_fen), "left": format_yuan(left_fen),
            },
            "carry": [],
            "submit_label": gettext("Refund"),
            "submit_name": "apply",
        }
        return TemplateResponse(request, "admin/payments/order/refund.html", context)

    def _refund(self, request, order, *, token, amount, reason) -> bool:
        """Ask for the refund (it commits), then send it. False: the service refused it."""
        try:
            refund = refunds.order_refund_request(
                order=order, amount_fen=amount, reason=reason, requested_by=request.user, idempotency_key=f"admin:{token}",
            )
        except ApplicationError as exc:
            self.message_user(request, f"{exc.code}: {exc.message}", messages.ERROR)
            return False
        values = {"refund": refund.out_refund_no, "cash": format_yuan(refund.cash_fen), "points": refund.points}
        try:
            refund = refunds.refund_submit(refund=refund)
        except ApplicationError as exc:
            # Asked for, not settled: it stays pending and the schedule sends it again.
            logger.warning("refund %s not sent: %s", refund.out_refund_no, exc)
        if refund.status == OrderRefund.Status.SUCCEEDED:
            message = gettext("Refund %(refund)s succeeded: %(cash)s back to the payer, %(points)s points given back.")
            self.message_user(request, message % values, messages.SUCCESS)
        elif refund.status == OrderRefund.Status.PENDING:
            message = gettext("Refund %(refund)s is pending: the platform has not answered yet; it is asked again later.")
            self.message_user(request, message % values, messages.WARNING)
        else:
            message = gettext("Refund %(refund)s failed: %(failure)s")
            self.message_user(request, message % {**values, "failure": refund.failure}, messages.ERROR)
        return True

    # -- close unpaid orders --------------------------------------------------------

    @admin.action(description=gettext_lazy("Close the selected unpaid orders"), permissions=["close"])
    def close_unpaid(self, request, queryset):
        selected = list(queryset.filter(status=Order.Status.CREATED).order_by("pk")[: CLOSE_MAX_ORDERS + 1])
        if not selected or len(selected) > CLOSE_MAX_ORDERS:
            message = gettext("Select between 1 and %(max)d unpaid orders to close.") % {"max": CLOSE_MAX_ORDERS}
            self.message_user(request, message, messages.ERROR)
            return None
        closed = paid = 0
        for order in selected:
            try:
                status = orders.order_close(order=order, operator=request.user).status
            except (ApplicationError, orders.PaymentMismatch) as exc:
                reason = f"{exc.code}: {exc.message}" if isinstance(exc, ApplicationError) else exc.reason
                self.message_user(request, f"{order.out_trade_no}: {reason}", messages.ERROR)
                continue
            if status == Order.Status.CLOSED:
                closed += 1
            else:
                paid += 1  # the platform said it was paid: order_close booked it instead
        if closed:
            message = ngettext("%(n)d order closed.", "%(n)d orders closed.", closed) % {"n": closed}
            self.message_user(request, message, messages.SUCCESS)
        if paid:
            message = ngettext(
                "%(n)d order had been paid after all: booked as paid, not closed.",
                "%(n)d orders had been paid after all: booked as paid, not closed.", paid,
            ) % {"n": paid}
            self.message_user(request, message, messages.WARNING)
        return None


def _refundable_fen(order: Order) -> int:
    return order.amount_fen - order.refunded_fen if order.status in refunds.REFUNDABLE else 0


@admin.register(OrderRefund)
class OrderRefundAdmin(ReadOnlyMixin, LargeTableAdmin):
    list_display = ["out_refund_no", "order", "kind", "status", "amount_yuan", "cash_yuan", "points", "created_at",
                    "finished_at"]
    list_select_related = ["order", "requested_by"]
    list_filter = ["status", "kind"]
    date_hierarchy = "created_at"
    ordering = ["-created_at"]
    sortable_by = ["created_at"]
    search_fields = ["out_refund_no", "order__out_trade_no"]
    search_help_text = gettext_lazy("A whole refund number or order number.")
    fields = ["out_refund_no", "order", "kind", "status", "amount_yuan", "cash_yuan", "points", "reason", "failure",
              "requested_by", "transaction_id", "refund_id", "idempotency_key", "earn_reversal", "points_return",
              "created_at", "finished_at"]

    amount_yuan = staticmethod(yuan_column("amount_fen", model=OrderRefund))
    cash_yuan = staticmethod(yuan_column("cash_fen", model=OrderRefund))

    def search_q(self, term):
        return Q(out_refund_no=term) | Q(order_id__in=Order.objects.filter(out_trade_no=term).values_list("pk", flat=True))


@admin.register(PaymentNotification)
class PaymentNotificationAdmin(ReadOnlyMixin, LargeTableAdmin):
    list_display = ["received_at", "gateway", "kind", "outcome", "reason", "out_trade_no", "transaction_id"]
    list_filter = ["gateway", "outcome"]
    date_hierarchy = "received_at"
    ordering = ["-received_at"]
    sortable_by = ["received_at"]
    search_fields = ["out_trade_no", "transaction_id"]
    search_help_text = gettext_lazy("A whole order number or platform transaction number.")
    fields = ["received_at", "gateway", "kind", "outcome", "reason", "order", "out_trade_no", "transaction_id",
              "remote_addr", "headers_shown", "body_shown"]

    def search_q(self, term):
        return Q(out_trade_no=term) | Q(transaction_id=term)

    @admin.display(description=gettext_lazy("headers"))
    def headers_shown(self, obj):
        return format_html("<pre>{}</pre>", json.dumps(obj.headers, indent=2, ensure_ascii=False, sort_keys=True))

    @admin.display(description=gettext_lazy("body, as received"))
    def body_shown(self, obj):
        # Anyone can post to the endpoints: the body is whatever they sent, shown escaped.
        return format_html('<pre style="white-space: pre-wrap; word-break: break-all">{}</pre>', obj.body)
