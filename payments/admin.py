"""Merchant-side sales in the admin: read-only; changes go through the API and services."""

from django.contrib import admin

from payments.models import ApiRequest, Purchase, PurchaseRefund, Redemption, RedemptionRefund


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
    fields = ["amount_fen", "reversal", "created_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Purchase)
class PurchaseAdmin(ReadOnlyAdmin):
    list_display = ["id", "created_at", "merchant", "store", "member", "amount_fen", "refunded_fen", "order_ref"]
    list_select_related = ["merchant", "store", "member"]
    list_filter = ["merchant", "created_at"]
    search_fields = ["order_ref", "member__member_no"]
    raw_id_fields = ["merchant", "store", "member", "earn"]
    date_hierarchy = "created_at"
    inlines = [PurchaseRefundInline]


@admin.register(Redemption)
class RedemptionAdmin(ReadOnlyAdmin):
    list_display = ["id", "created_at", "merchant", "store", "member", "points", "returned_points", "order_ref"]
    list_select_related = ["merchant", "store", "member"]
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
