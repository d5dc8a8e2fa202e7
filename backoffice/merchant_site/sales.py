"""The merchant's sales through the programme: POS purchases and redemptions, and the
orders shoppers paid by scanning its stores' QR, with their refunds. All read-only; a
paid order is refunded through payments.refunds, as in the mall's admin."""

import logging
import uuid

from django.contrib import admin, messages
from django.shortcuts import redirect
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext, gettext_lazy

from backoffice.merchant_site.site import OwnStoreFilter, TenantAdmin, merchant_of, site
from core.admin_fields import format_yuan, yuan_column
from core.errors import ApplicationError
from core.money import fen_to_yuan
from payments import refunds
from payments.admin import RefundForm
from payments.models import Order, OrderRefund, Purchase, PurchaseRefund, Redemption, RedemptionRefund

logger = logging.getLogger(__name__)


def yuan(model, field: str, description=None):
    """A read-only column (an attribute of the admin) showing a fen field as ¥1,234.56."""
    return staticmethod(yuan_column(field, description, model=model))


class MemberNoMixin:
    """The member's number, nothing else of the member (no name, no phone)."""

    @admin.display(description=gettext_lazy("member number"))
    def member_no(self, obj):
        return obj.member.member_no if obj.member_id else "—"


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_view_permission(self, request, obj=None):
        return merchant_of(request) is not None


class PurchaseRefundInline(ReadOnlyInline):
    model = PurchaseRefund
    fields = ["amount_yuan", "created_at"]
    readonly_fields = fields
    amount_yuan = yuan(PurchaseRefund, "amount_fen")


class PurchaseAdmin(MemberNoMixin, TenantAdmin):
    list_display = ["id", "created_at", "store", "member_no", "amount_yuan", "refunded_yuan", "order_ref", "member_present"]
    list_select_related = ["store", "member"]
    list_filter = [OwnStoreFilter, "member_present"]
    search_fields = ["=order_ref"]
    search_help_text = gettext_lazy("A whole POS order number.")
    ordering = ["-created_at"]
    sortable_by = ["created_at"]
    fields = ["id", "created_at", "store", "member_no", "amount_yuan", "refunded_yuan", "order_ref", "member_present"]
    readonly_fields = ["member_no", "amount_yuan", "refunded_yuan"]
    inlines = [PurchaseRefundInline]
    amount_yuan = yuan(Purchase, "amount_fen")
    refunded_yuan = yuan(Purchase, "refunded_fen")


class RedemptionRefundInline(ReadOnlyInline):
    model = RedemptionRefund
    fields = ["points", "created_at"]
    readonly_fields = fields


class RedemptionAdmin(MemberNoMixin, TenantAdmin):
    list_display = ["id", "created_at", "store", "member_no", "points", "returned_points", "order_ref"]
    list_select_related = ["store", "member"]
    list_filter = [OwnStoreFilter]
    search_fields = ["=order_ref"]
    search_help_text = gettext_lazy("A whole POS order number.")
    ordering = ["-created_at"]
    sortable_by = ["created_at"]
    fields = ["id", "created_at", "store", "member_no", "points", "returned_points", "order_ref"]
    readonly_fields = ["member_no"]
    inlines = [RedemptionRefundInline]


class OrderRefundInline(ReadOnlyInline):
    model = OrderRefund
    fields = ["out_refund_no", "status", "amount_yuan", "cash_yuan", "points", "reason", "created_at", "finished_at"]
    readonly_fields = fields
    amount_yuan = yuan(OrderRefund, "amount_fen")
    cash_yuan = yuan(OrderRefund, "cash_fen")


def refundable_fen(order: Order) -> int:
    return order.amount_fen - order.refunded_fen if order.status in refunds.REFUNDABLE else 0


class OrderAdmin(MemberNoMixin, TenantAdmin):
    list_display = ["out_trade_no", "store", "member_no", "channel", "status", "amount_yuan", "points_used", "payable_yuan",
                    "refunded_yuan", "created_at"]
    list_select_related = ["store", "member"]
    list_filter = [OwnStoreFilter, "status", "channel"]
    search_fields = ["=out_trade_no", "=order_ref"]
    search_help_text = gettext_lazy("A whole order number or POS order number.")
    ordering = ["-created_at"]
    sortable_by = ["created_at"]
    fields = ["out_trade_no", "status", "store", "member_no", "description", "order_ref", "channel", "amount_yuan",
              "points_used", "coupon_discount_yuan", "payable_yuan", "refunded_yuan", "refundable_yuan", "refund_link",
              "created_at", "paid_at", "closed_at"]
    readonly_fields = ["member_no", "amount_yuan", "coupon_discount_yuan", "payable_yuan", "refunded_yuan",
                       "refundable_yuan", "refund_link"]
    inlines = [OrderRefundInline]
    actions = ["refund"]
    amount_yuan = yuan(Order, "amount_fen")
    coupon_discount_yuan = yuan(Order, "coupon_discount_fen")
    payable_yuan = yuan(Order, "payable_fen", gettext_lazy("paid in cash"))
    refunded_yuan = yuan(Order, "refunded_fen")

    @admin.display(description=gettext_lazy("left to refund"))
    def refundable_yuan(self, obj):
        return format_yuan(refundable_fen(obj))

    @admin.display(description=gettext_lazy("refund"))
    def refund_link(self, obj):
        if refundable_fen(obj) <= 0:
            return "—"
        return format_html('<a href="{}">{}</a>', reverse("merchant:payments_order_refund", args=[obj.pk]),
                           gettext("Refund this order"))

    def has_refund_permission(self, request):
        return merchant_of(request) is not None

    @admin.action(description=gettext_lazy("Refund the selected order"), permissions=["refund"])
    def refund(self, request, queryset):
        selected = list(queryset[:2])
        if len(selected) != 1:
            self.message_user(request, gettext("Select one order to refund."), messages.ERROR)
            return None
        return redirect("merchant:payments_order_refund", selected[0].pk)

    def get_urls(self):
        view = self.admin_site.admin_view(self.refund_view)
        return [path("<path:object_id>/refund/", view, name="payments_order_refund"), *super().get_urls()]

    def refund_view(self, request, object_id):
        order = self.get_object(request, object_id)  # another merchant's: 404
        left_fen = refundable_fen(order)
        if left_fen <= 0:
            message = gettext("Order %(order)s cannot be refunded: it is %(status)s.") % {
                "order": order.out_trade_no, "status": order.get_status_display()}
            self.message_user(request, message, messages.ERROR)
            return redirect("merchant:payments_order_change", order.pk)
        if request.method == "POST":
            form = RefundForm(request.POST, left_fen=left_fen)
            if form.is_valid() and self._refund(request, order, **form.cleaned_data):
                return redirect("merchant:payments_order_change", order.pk)
        else:
            form = RefundForm(initial={"token": uuid.uuid4(), "amount": fen_to_yuan(left_fen)}, left_fen=left_fen)
        amounts = {"amount": format_yuan(order.amount_fen), "payable": format_yuan(order.payable_fen),
                   "refunded": format_yuan(order.refunded_fen), "left": format_yuan(left_fen)}
        return self.page(
            request, title=gettext("Refund order %(order)s") % {"order": order.out_trade_no},
            template="backoffice/order_refund.html", form=form, order=order, amounts=amounts, carry=[],
            submit_label=gettext("Refund"), submit_name="apply",
        )

    def _refund(self, request, order, *, token, amount, reason) -> bool:
        """Ask for the refund (it commits), then send it. False: the service refused it."""
        try:
            refund = refunds.order_refund_request(
                order=order, amount_fen=amount, reason=reason, requested_by=request.user,
                idempotency_key=f"backoffice:{token}",
            )
        except ApplicationError as exc:
            self.message_user(request, f"{exc.code}: {exc.message}", messages.ERROR)
            return False
        try:
            refund = refunds.refund_submit(refund=refund)
        except ApplicationError as exc:
            # Asked for, not settled: it stays pending and the schedule sends it again.
            logger.warning("refund %s not sent: %s", refund.out_refund_no, exc)
        values = {"refund": refund.out_refund_no, "cash": format_yuan(refund.cash_fen), "points": refund.points}
        if refund.status == OrderRefund.Status.SUCCEEDED:
            message = gettext("Refund %(refund)s succeeded: %(cash)s back to the payer, %(points)s points given back.")
            self.message_user(request, message % values, messages.SUCCESS)
        elif refund.status == OrderRefund.Status.FAILED:
            message = gettext("Refund %(refund)s failed: %(failure)s") % {**values, "failure": refund.failure}
            self.message_user(request, message, messages.ERROR)
        else:
            message = gettext("Refund %(refund)s is pending: the platform has not answered yet; it is asked again later.")
            message = message % values
            self.message_user(request, message, messages.WARNING)
        self.log_change(request, order, f"Refund {refund.out_refund_no} asked for")
        return True


site.register(Purchase, PurchaseAdmin)
site.register(Redemption, RedemptionAdmin)
site.register(Order, OrderAdmin)
