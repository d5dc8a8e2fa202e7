"""The ledger, read-only: accounts, transactions, entries, lots, visits."""

from django.contrib import admin, messages
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext, gettext_lazy, ngettext

from core.admin_fields import UnitsAdminMixin
from core.errors import ApplicationError
from members import ledger

from members.admin.base import (
    LargeTableAdmin,
    MerchantFilter,
    PlazaScopedMixin,
    ReadOnlyInline,
    ReadOnlyMixin,
    changelist_link,
    member_ids_matching,
)
from members.models import (
    Account,
    Entry,
    Lot,
    Merchant,
    PointsTransaction,
    Visit,
)

# --- the ledger, read-only --------------------------------------------------------


class EntryInline(ReadOnlyInline):
    model = Entry
    fields = ["account", "amount", "lot", "member"]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("account__merchant", "lot", "member")


class TransactionLotInline(ReadOnlyInline):
    model = Lot
    fk_name = "transaction"
    fields = ["amount", "remaining", "expires_at"]
    verbose_name_plural = gettext_lazy("points lots it credited")


@admin.register(Account)
class AccountAdmin(ReadOnlyMixin, LargeTableAdmin):
    list_display = ["id", "kind", "owner", "balance", "rolled_up_at"]
    list_select_related = ["member", "merchant"]
    list_filter = ["kind"]
    sortable_by = ["id"]
    search_fields = ["member__member_no", "merchant__name", "partner_code"]
    search_help_text = gettext_lazy("A whole member number, phone or openid; part of a merchant's name; a partner code.")
    readonly_fields = ["entries"]

    def search_q(self, term):
        merchant_ids = list(Merchant.objects.filter(name__icontains=term).values_list("pk", flat=True)[:100])
        return (
            Q(member_id__in=member_ids_matching(term))
            | Q(merchant_id__in=merchant_ids)
            | Q(kind=Account.Kind.PARTNER, partner_code=term)
        )

    @admin.display(description=gettext_lazy("owner"))
    def owner(self, obj):
        return obj.member or obj.merchant or obj.partner_code or gettext("mall")

    @admin.display(description=gettext_lazy("ledger entries"))
    def entries(self, obj):
        # Wallets carry a live balance; the others are Σ entries as of rolled_up_at.
        return changelist_link(Entry, gettext("All entries of this account"), account__id__exact=obj.pk)


@admin.register(PointsTransaction)
class PointsTransactionAdmin(UnitsAdminMixin, ReadOnlyMixin, LargeTableAdmin):
    list_display = ["id", "created_at", "kind", "member", "points", "merchant", "store", "reason", "operator"]
    list_select_related = ["member", "merchant", "store", "operator"]
    list_filter = ["kind", MerchantFilter, "created_at"]
    ordering = ["-created_at"]
    sortable_by = ["id", "created_at"]
    search_fields = ["idempotency_key", "member__member_no", "counterparty__member_no"]
    search_help_text = gettext_lazy("A whole idempotency key, or a member's number, phone or openid.")
    inlines = [EntryInline, TransactionLotInline]

    def search_q(self, term):
        member_ids = member_ids_matching(term)
        return Q(idempotency_key=term) | Q(member_id__in=member_ids) | Q(counterparty_id__in=member_ids)


@admin.register(Entry)
class EntryAdmin(ReadOnlyMixin, LargeTableAdmin):
    list_display = ["id", "created_at", "transaction", "account", "amount", "lot", "member"]
    list_select_related = ["transaction", "account__merchant", "lot", "member"]
    list_filter = ["account__kind", "created_at"]
    sortable_by = ["id"]
    search_fields = ["transaction__idempotency_key", "member__member_no"]
    search_help_text = gettext_lazy("A whole idempotency key, or a member's number, phone or openid.")

    def search_q(self, term):
        txn_ids = list(PointsTransaction.objects.filter(idempotency_key=term).values_list("pk", flat=True))
        return Q(transaction_id__in=txn_ids) | Q(member_id__in=member_ids_matching(term))


class LotStateFilter(admin.SimpleListFilter):
    title = gettext_lazy("state")
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("live", gettext_lazy("Live")), ("due", gettext_lazy("Due for expiry")), ("used", gettext_lazy("Spent or expired"))]

    def queryset(self, request, queryset):
        now = timezone.now()
        match self.value():
            case "live":
                return queryset.filter(remaining__gt=0, expires_at__gt=now)
            case "due":
                return queryset.filter(remaining__gt=0, expires_at__lte=now)
            case "used":
                return queryset.filter(remaining=0)
        return queryset


@admin.register(Lot)
class LotAdmin(ReadOnlyMixin, LargeTableAdmin):
    list_display = ["id", "member", "status", "amount", "remaining", "expires_at", "releases_at", "merchant", "created_at", "transaction"]
    list_select_related = ["member", "transaction", "merchant"]
    list_filter = [LotStateFilter, "status", MerchantFilter]
    sortable_by = ["id"]
    search_fields = ["member__member_no"]
    search_help_text = gettext_lazy(
        "A member's whole number, phone or openid. Status “held”: mall-funded points of merchants over their daily cap."
    )
    inlines = [EntryInline]
    actions = ["release_held", "cancel_held"]

    def search_q(self, term):
        return Q(member_id__in=member_ids_matching(term))

    def has_review_permission(self, request):
        return request.user.has_perm("members.review_held_points")

    @admin.action(description=gettext_lazy("Release the selected held points to the members"), permissions=["review"])
    def release_held(self, request, queryset):
        released = 0
        for lot in queryset.filter(status=Lot.Status.HELD, remaining__gt=0):
            try:
                if ledger.points_release_lot(lot=lot, operator=request.user) is not None:
                    released += 1
            except ApplicationError as exc:
                self.message_user(request, _lot_error(lot, exc), messages.ERROR)
        message = ngettext("%(count)d points lot released.", "%(count)d points lots released.", released)
        self.message_user(request, message % {"count": released}, messages.SUCCESS)

    @admin.action(description=gettext_lazy("Cancel the selected held points (back to the mall)"), permissions=["review"])
    def cancel_held(self, request, queryset):
        cancelled = 0
        for lot in queryset.filter(status=Lot.Status.HELD, remaining__gt=0):
            try:
                ledger.points_cancel_lot(lot=lot, operator=request.user, reason="held points cancelled by staff review")
                cancelled += 1
            except ApplicationError as exc:
                self.message_user(request, _lot_error(lot, exc), messages.ERROR)
        message = ngettext("%(count)d points lot cancelled.", "%(count)d points lots cancelled.", cancelled)
        self.message_user(request, message % {"count": cancelled}, messages.SUCCESS)


def _lot_error(lot, exc) -> str:
    return gettext("Points lot %(lot)s: %(code)s: %(message)s") % {"lot": lot.pk, "code": exc.code, "message": exc.message}


@admin.register(Visit)
class VisitAdmin(UnitsAdminMixin, PlazaScopedMixin, ReadOnlyMixin, LargeTableAdmin):
    list_display = ["id", "occurred_at", "kind", "member", "plaza", "store", "amount_fen"]
    list_select_related = ["member", "plaza", "store"]
    list_filter = ["kind", "plaza", "occurred_at"]
    sortable_by = ["id", "occurred_at"]
    search_fields = ["member__member_no"]
    search_help_text = gettext_lazy("A member's whole number, phone or openid.")

    def search_q(self, term):
        return Q(member_id__in=member_ids_matching(term))

    def scope_to_plazas(self, queryset, plaza_ids):
        return queryset.filter(plaza_id__in=plaza_ids)
