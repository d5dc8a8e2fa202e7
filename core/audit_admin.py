"""The staff audit in the admin: the mixin every ModelAdmin gets, and the read-only log.

``o2o_site.admin.MallAdminSite.register`` mixes ``AuditedAdminMixin`` into every
ModelAdmin registered on the mall's site, so no page escapes it:

- an addition or change through a form (or a list's editable columns) records the
  fields that changed, old → new, readable, with the "reason for this change" typed on
  the form (required on changes where the site says so, optional elsewhere);
- changes to inline rows are recorded on the parent object;
- a deletion (one object or a bulk delete) records what the object held;
- an admin action records one entry per selected object once the action has done its
  work (an action's intermediate page is not a change); actions that record their own,
  more precise entries (adjusting points) set ``audit_skip = True``;
- any other change a page logs through Django's ``log_change`` / ``log_addition`` (a
  password change) is recorded from that message;
- the object's "History" page lists its audit entries.
"""

import json

from django import forms
from django.contrib import admin
from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.contrib.admin.utils import flatten_fieldsets, model_format_dict, unquote
from django.core.exceptions import FieldDoesNotExist, PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.text import capfirst
from django.utils.translation import gettext, gettext_lazy

from core import audit
from core.models import AuditEntry

REASON_FIELD = "audit_reason"
REASON_MAX_LENGTH = 500
# One entry per selected object, up to this many; an action on more says so in each entry.
ACTION_MAX_OBJECTS = 1000
HISTORY_PAGE_SIZE = 100


def _done(request) -> set:
    if not hasattr(request, "_audit_done"):
        request._audit_done = set()
    return request._audit_done


def _key(obj) -> tuple:
    return (obj._meta.label_lower, str(obj.pk))


def _reason_form(base, *, required: bool):
    """``base`` with the "reason for this change" field; required only when something changed."""

    class AuditReasonForm(base):
        audit_reason = forms.CharField(
            label=gettext_lazy("Reason for this change"),
            required=False,
            max_length=REASON_MAX_LENGTH,
            widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
            help_text=(
                gettext_lazy("Required when you change anything. Recorded in the audit log with your changes.")
                if required else gettext_lazy("Recorded in the audit log with your changes.")
            ),
        )

        def clean(self):
            cleaned = super().clean()
            changed = [name for name in self.changed_data if name != REASON_FIELD]
            if required and changed and not (cleaned or {}).get(REASON_FIELD, "").strip():
                self.add_error(REASON_FIELD, gettext("Say why you make this change."))
            return cleaned

    AuditReasonForm.__name__ = base.__name__
    AuditReasonForm.__qualname__ = base.__qualname__
    return AuditReasonForm


class AuditedAdminMixin:
    """Records every change a ModelAdmin makes (see the module docstring)."""

    # Set by MallAdminSite.register from its list of models whose changes need a reason;
    # a ModelAdmin may set it itself.
    audit_reason_required = False

    # -- the reason field ---------------------------------------------------------------

    def _audit_reason_shown(self, request, obj) -> bool:
        return self.has_change_permission(request, obj) if obj is not None else self.has_add_permission(request)

    def get_form(self, request, obj=None, change=False, **kwargs):
        shown = self._audit_reason_shown(request, obj)
        if "fields" in kwargs:
            if kwargs["fields"] is not None:
                kwargs["fields"] = [name for name in kwargs["fields"] if name != REASON_FIELD]
        else:
            fieldsets = self.get_fieldsets(request, obj)
            kwargs["fields"] = [name for name in flatten_fieldsets(fieldsets) if name != REASON_FIELD]
        form = super().get_form(request, obj, change=change, **kwargs)
        if not shown:
            return form
        return _reason_form(form, required=self.audit_reason_required and obj is not None)

    def get_fieldsets(self, request, obj=None):
        fieldsets = [
            (name, {**options, "fields": [f for f in options["fields"] if f != REASON_FIELD]})
            for name, options in super().get_fieldsets(request, obj)
        ]
        if self._audit_reason_shown(request, obj):
            fieldsets.append((gettext_lazy("Reason for this change"), {"fields": [REASON_FIELD]}))
        return fieldsets

    # -- changes, deletions -----------------------------------------------------------------

    def save_model(self, request, obj, form, change):
        changes = audit.form_changes(form, adding=not change, exclude=[REASON_FIELD])
        super().save_model(request, obj, form, change)
        if change and not changes:
            return
        reason = form.cleaned_data.get(REASON_FIELD, "")
        action = AuditEntry.Action.CHANGE if change else AuditEntry.Action.ADD
        audit.audit_record(actor=request.user, action=action, obj=obj, changes=changes, reason=reason)
        _done(request).add(_key(obj))

    def save_formset(self, request, form, formset, change):
        deleted_ids = {id(f) for f in formset.deleted_forms} if formset.can_delete else set()
        label = formset.model._meta.verbose_name
        changes, added = {}, []
        for inline in formset.initial_forms:
            instance = inline.instance
            name = f"{label} #{instance.pk}"
            if id(inline) in deleted_ids:
                changes[name] = [str(instance), None]
            elif inline.has_changed():
                for field, pair in audit.form_changes(inline, adding=False).items():
                    changes[f"{name}.{field}"] = pair
        for inline in formset.extra_forms:
            if inline.has_changed() and id(inline) not in deleted_ids:
                added.append(inline)
        super().save_formset(request, form, formset, change)
        for inline in added:
            if inline.instance.pk is not None:
                for field, pair in audit.form_changes(inline, adding=True).items():
                    changes[f"{label} #{inline.instance.pk}.{field}"] = pair
        if changes:
            reason = getattr(form, "cleaned_data", {}).get(REASON_FIELD, "")
            audit.audit_record(
                actor=request.user, action=AuditEntry.Action.CHANGE, obj=form.instance, changes=changes, reason=reason
            )
            _done(request).add(_key(form.instance))

    def delete_model(self, request, obj):
        audit.audit_record(
            actor=request.user, action=AuditEntry.Action.DELETE, obj=obj, changes=audit.snapshot(obj),
            reason=request.POST.get(REASON_FIELD, ""),
        )
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        reason = request.POST.get(REASON_FIELD, "")
        for obj in queryset:
            audit.audit_record(
                actor=request.user, action=AuditEntry.Action.DELETE, obj=obj, changes=audit.snapshot(obj), reason=reason
            )
        super().delete_queryset(request, queryset)

    # -- whatever else a page logs (a password change, a custom view) ----------------------

    def log_addition(self, request, obj, message):
        self._audit_logged(request, obj, message, AuditEntry.Action.ADD)
        return super().log_addition(request, obj, message)

    def log_change(self, request, obj, message):
        self._audit_logged(request, obj, message, AuditEntry.Action.CHANGE)
        return super().log_change(request, obj, message)

    def _audit_logged(self, request, obj, message, action):
        if _key(obj) in _done(request):
            return
        text = LogEntry(change_message=json.dumps(message) if isinstance(message, list) else message).get_change_message()
        audit.audit_record(actor=request.user, action=action, obj=obj, changes={"message": [None, text]})
        _done(request).add(_key(obj))

    # -- admin actions ----------------------------------------------------------------------

    def get_actions(self, request):
        return {
            name: (self._audited_action(func, name, description), name, description)
            for name, (func, _, description) in super().get_actions(request).items()
        }

    def _audited_action(self, func, name, description):
        if name == "delete_selected" or getattr(func, "audit_skip", False):
            return func  # deletions are recorded by delete_queryset; the action records its own

        def audited(modeladmin, request, queryset):
            selected = list(queryset[: ACTION_MAX_OBJECTS + 1])
            response = func(modeladmin, request, queryset)
            # An intermediate page (a form to fill in) has done nothing yet.
            finished = response is None or isinstance(response, HttpResponseRedirect) or response.has_header(
                "Content-Disposition"
            )
            if finished and selected:
                label = str(description % model_format_dict(modeladmin.opts))
                changes = {"action": [None, label]}
                if len(selected) > ACTION_MAX_OBJECTS:
                    changes["selection"] = [None, gettext("more than %(n)s objects; the first %(n)s are recorded")
                                            % {"n": ACTION_MAX_OBJECTS}]
                audit.audit_record_many(
                    actor=request.user, action=AuditEntry.Action.ACTION, objects=selected[:ACTION_MAX_OBJECTS],
                    changes=changes, reason=request.POST.get(REASON_FIELD) or request.POST.get("reason", ""),
                )
            return response

        audited.__name__ = getattr(func, "__name__", name)
        for attribute in ("allowed_permissions", "short_description"):
            if hasattr(func, attribute):
                setattr(audited, attribute, getattr(func, attribute))
        return audited

    # -- the object's history: its audit entries -------------------------------------------

    def history_view(self, request, object_id, extra_context=None):
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_view_or_change_permission(request, obj):
            raise PermissionDenied
        entries = audit.audited_entries(obj=obj)
        page = Paginator(entries, HISTORY_PAGE_SIZE).get_page(request.GET.get("p"))
        rows = [{"entry": entry, "changes": changes_rows(entry, self.model)} for entry in page]
        context = {
            **self.admin_site.each_context(request),
            "title": gettext("Audit history: %s") % obj,
            "subtitle": None,
            "object": obj,
            "opts": self.opts,
            "module_name": str(capfirst(self.opts.verbose_name_plural)),
            "page": page,
            "rows": rows,
            "all_url": audit_list_url(obj),
            "preserved_filters": self.get_preserved_filters(request),
            **(extra_context or {}),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/core/audit_history.html", context)


def audit_list_url(obj) -> str:
    try:
        base = reverse("admin:core_auditentry_changelist")
    except NoReverseMatch:
        return ""
    content_type = ContentType.objects.get_for_model(obj, for_concrete_model=False)
    return base + "?" + urlencode({"content_type__id__exact": content_type.pk, "object_id": str(obj.pk)})


# Keys of entries that are not a model's fields (core.audit callers, the mixin above).
ENTRY_KEYS = {
    "points": gettext_lazy("points balance"),
    "transaction": gettext_lazy("points transaction"),
    "public_note": gettext_lazy("description for the shopper"),
    "action": gettext_lazy("action"),
    "message": gettext_lazy("change"),
    "selection": gettext_lazy("selection"),
}


def _field_label(model, name: str) -> str:
    if name in ENTRY_KEYS and (model is None or name not in {f.name for f in model._meta.get_fields()}):
        return str(ENTRY_KEYS[name])
    if model is None:
        return name
    try:
        return str(capfirst(model._meta.get_field(name).verbose_name))
    except FieldDoesNotExist:
        return name


def _shown(value) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, list):
        return ", ".join(_shown(v) for v in value) or "—"
    if isinstance(value, bool):
        return gettext("yes") if value else gettext("no")
    return str(value)


def changes_rows(entry: AuditEntry, model=None) -> list[tuple[str, str, str]]:
    """[(field label, old, new)] of an entry, for people."""
    model = model or entry.content_type.model_class()
    return [
        (_field_label(model, name), _shown(pair[0]), _shown(pair[1]))
        for name, pair in (entry.changes or {}).items()
        if isinstance(pair, list) and len(pair) == 2
    ]


class AuditEntryAdmin(admin.ModelAdmin):
    """The audit log: read by staff who may view it, changed by nobody (superusers included)."""

    list_display = ["at", "actor_username", "action", "content_type", "object_link", "changes_summary", "reason"]
    list_filter = ["action", "content_type", "at"]
    search_fields = ["=actor_username", "=object_id", "object_repr", "reason", "=request_id"]
    date_hierarchy = "at"
    list_select_related = ["content_type"]
    show_full_result_count = False
    ordering = ["-at", "-pk"]
    fields = ["at", "actor", "actor_username", "action", "content_type", "object_id", "object_link", "changes_table",
              "reason", "request_id"]
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_actions(self, request):
        return {}

    def lookup_allowed(self, lookup, value, request=None):
        # The object's page links here filtered by its type and id.
        return lookup in {"object_id", "content_type__id__exact"} or super().lookup_allowed(lookup, value, request)

    @admin.display(description=gettext_lazy("object"))
    def object_link(self, entry):
        try:
            url = reverse(f"admin:{entry.content_type.app_label}_{entry.content_type.model}_change", args=[entry.object_id])
        except NoReverseMatch:
            return entry.object_repr
        return format_html('<a href="{}">{}</a>', url, entry.object_repr)

    @admin.display(description=gettext_lazy("changes"))
    def changes_summary(self, entry):
        return format_html_join("", "<div>{}: {} → {}</div>", changes_rows(entry)[:6])

    @admin.display(description=gettext_lazy("changes"))
    def changes_table(self, entry):
        rows = format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td></tr>", changes_rows(entry))
        return format_html(
            "<table><thead><tr><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>{}</tbody></table>",
            gettext("field"), gettext("before"), gettext("after"), rows,
        )
