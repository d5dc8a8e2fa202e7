"""Machinery shared by the admin pages of members: big tables, read-only records, search."""

from django.contrib import admin
from django.core.paginator import Paginator
from django.db.models import Q
from django.urls import reverse
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.translation import gettext_lazy

from members import roles, services
from members.models import (
    Identity,
    Member,
    Merchant,
)

# Creating points is its own permission: editing a member's nickname must not imply it.
ADJUST_POINTS_PERMISSION = "members.adjust_points"
# One adjustment is one locked ledger transaction per member; a batch stays small.
ADJUST_MAX_MEMBERS = 100
# Every issued raw key travels in a message, once.
ISSUE_KEYS_MAX_MERCHANTS = 20


# --- shared machinery -------------------------------------------------------------


class CappedCountPaginator(Paginator):
    """Counts at most COUNT_CAP rows.

    An exact COUNT(*) over hundreds of millions of rows takes minutes on PostgreSQL;
    past the cap the list says "10000+" and staff narrow it with a search or a filter.
    """

    COUNT_CAP = 10_000

    @cached_property
    def count(self):
        return self.object_list[: self.COUNT_CAP].count()

    @property
    def is_capped(self) -> bool:
        return self.count >= self.COUNT_CAP


class LargeTableAdmin(admin.ModelAdmin):
    """A table that grows with visits. Subclasses define ``search_q(term) -> Q``:
    exact lookups that an index serves, used for the search box and autocomplete.
    Their ``search_fields`` only switch the search box on and say what it matches."""

    paginator = CappedCountPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(self.search_q(term)), False


class ReadOnlyMixin:
    """Records of what happened (the ledger, visits): written by services, never edited or deleted."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_readonly_fields(self, request, obj=None):
        # All of them, including the non-editable ones a view-only form would leave out.
        shown = self.fields or [field.name for field in self.model._meta.fields]
        return [*shown, *(name for name in self.readonly_fields if name not in shown)]


class PlazaScopedMixin:
    """For plaza managers (members.roles.plaza_scope): only the rows of their plazas, in
    the list, the search, the autocomplete and behind every object URL (another plaza's
    object is not found). Subclasses define ``scope_to_plazas(queryset, plaza_ids)``."""

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        plaza_ids = roles.plaza_scope(request.user)
        return queryset if plaza_ids is None else self.scope_to_plazas(queryset, plaza_ids)


class ReadOnlyInline(ReadOnlyMixin, admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = True


def member_ids_matching(term: str) -> list[int]:
    """Members whose number, phone or any channel identity is exactly ``term``.

    Resolved to ids first: an OR across a join or a subquery makes PostgreSQL scan
    the member table instead of probing its unique indexes.
    """
    match = Q(member_no=term)
    try:
        match |= Q(phone=services.phone_normalise(term))
    except services.InvalidPhone:
        pass
    ids = set(Member.objects.filter(match).values_list("pk", flat=True))
    # Naming every channel lets the (channel, external_id) unique index serve the lookup.
    identities = Identity.objects.filter(channel__in=Identity.Channel.values, external_id=term)
    ids.update(identities.values_list("member_id", flat=True))
    return sorted(ids)


# Rows one prefix search returns at most, per column: staff narrow it by typing more.
PREFIX_SEARCH_LIMIT = 50
# A prefix of fewer digits matches too many numbers to mean anything.
PREFIX_MIN_DIGITS = 4


def member_ids_by_prefix(term: str, *, phones: bool) -> list[int]:
    """Members whose number, phone (when ``phones``) or nickname starts with ``term``,
    at most PREFIX_SEARCH_LIMIT per column.

    Prefixes, not substrings: ``LIKE 'term%'`` is a range scan of a btree index (the
    unique indexes of member_no and phone have varchar_pattern_ops twins on PostgreSQL,
    and the nickname has its own), read in index order and stopped after the limit, so
    the cost stays the same at 100 million members. ``LIKE '%term%'`` can use no btree
    index and reads the whole table; a trigram index would serve it but is several
    times the table's size, slows every write and still returns unbounded candidate
    sets for short terms. Phone prefixes only for those who may read phones in full
    (members.roles.phone_visible): digit by digit, a prefix search would reveal a
    masked number.
    """
    ids: list[int] = []
    digits = term.removeprefix("+")
    if digits.isdigit() and len(digits) >= PREFIX_MIN_DIGITS:
        by_number = Member.objects.filter(member_no__startswith=digits).order_by("member_no")
        ids += by_number.values_list("pk", flat=True)[:PREFIX_SEARCH_LIMIT]
        if phones:
            # Stored as E.164: a mainland number typed without its country code is +86….
            prefix = term if term.startswith("+") else f"+86{digits}"
            by_phone = Member.objects.filter(phone__startswith=prefix).order_by("phone")
            ids += by_phone.values_list("pk", flat=True)[:PREFIX_SEARCH_LIMIT]
    by_nickname = Member.objects.filter(nickname__startswith=term).order_by("nickname")
    ids += by_nickname.values_list("pk", flat=True)[:PREFIX_SEARCH_LIMIT]
    return sorted(set(ids))



def changelist_link(model, label: str, **params) -> str:
    url = reverse(f"admin:members_{model._meta.model_name}_changelist")
    return format_html('<a href="{}?{}">{}</a>', url, urlencode(params), label)


class MerchantFilter(admin.SimpleListFilter):
    """A merchant id or part of a name, typed in: tens of thousands of merchants do not fit a sidebar."""

    title = gettext_lazy("merchant")
    parameter_name = "merchant"
    template = "admin/members/input_filter.html"

    def lookups(self, request, model_admin):
        return ()

    def has_output(self):
        return True

    def choices(self, changelist):
        yield {
            "selected": self.value() is None,
            "query_string": changelist.get_query_string(remove=[self.parameter_name]),
            "hidden_params": [(k, v) for k, v in changelist.params.items() if k != self.parameter_name],
            "placeholder": gettext_lazy("id or name"),
        }

    def queryset(self, request, queryset):
        value = (self.value() or "").strip()
        if not value:
            return queryset
        if value.isdigit():
            return queryset.filter(merchant_id=int(value))
        ids = list(Merchant.objects.filter(name__icontains=value).values_list("pk", flat=True)[:100])
        return queryset.filter(merchant_id__in=ids)
