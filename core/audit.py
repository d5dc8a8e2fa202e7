"""The staff audit: who changed what, when, from what to what, and why.

``audit_record`` is the only writer of ``AuditEntry`` and it only inserts; there is no
service that updates or deletes an entry. Values are stored readable — a related
object's name, a choice's label, money in fen as stored — so an entry still reads
right after the related row is renamed or gone. Callers that change points or money
record inside their own transaction, so an entry exists exactly when the change does.
"""

import datetime
import decimal
import uuid
from collections.abc import Iterable

from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.utils import timezone

from core.logs import request_id_get
from core.models import AuditEntry

Action = AuditEntry.Action
# Field names whose values never go into an entry: a change is recorded as "changed".
SECRET_MARKERS = ("password", "secret", "token", "key_hash", "private_key")
SECRET = "******"
REPR_MAX = AuditEntry._meta.get_field("object_repr").max_length
# Values longer than this are cut: an entry says what changed, it is not a backup.
VALUE_MAX = 1000


def audit_record(*, actor, action: str, obj: models.Model, changes: dict | None = None, reason: str = "",
                 at: datetime.datetime | None = None) -> AuditEntry:
    """Insert one entry for ``obj``; ``changes`` is {field: [old, new]} of JSON-ready values."""
    return AuditEntry.objects.create(**_entry_fields(actor=actor, action=action, obj=obj, changes=changes, reason=reason, at=at))


def audit_record_many(*, actor, action: str, objects: Iterable[models.Model], changes: dict | None = None,
                      reason: str = "", at: datetime.datetime | None = None) -> int:
    """One entry per object, inserted in batches (an admin action on a selection)."""
    at = at or timezone.now()
    entries = [
        AuditEntry(**_entry_fields(actor=actor, action=action, obj=obj, changes=changes, reason=reason, at=at))
        for obj in objects
    ]
    AuditEntry.objects.bulk_create(entries, batch_size=500)
    return len(entries)


def _entry_fields(*, actor, action, obj, changes, reason, at) -> dict:
    if action not in Action.values:
        raise ValueError(f"unknown audit action {action!r}")
    if actor is not None and not getattr(actor, "pk", None):
        actor = None  # AnonymousUser: no row to point at
    return {
        "actor": actor,
        "actor_username": actor.get_username() if actor is not None else "",
        "at": at or timezone.now(),
        "action": action,
        "content_type": ContentType.objects.get_for_model(obj, for_concrete_model=False),
        "object_id": str(obj.pk),
        "object_repr": str(obj)[:REPR_MAX],
        "changes": {name: [json_value(old), json_value(new)] for name, (old, new) in (changes or {}).items()},
        "reason": (reason or "").strip(),
        "request_id": request_id_get() or "",
    }


def audited_entries(*, obj: models.Model):
    """The entries about ``obj``, newest first."""
    content_type = ContentType.objects.get_for_model(obj, for_concrete_model=False)
    return AuditEntry.objects.filter(content_type=content_type, object_id=str(obj.pk)).order_by("-at", "-pk")


# --- readable values -------------------------------------------------------------------


def json_value(value):
    """A JSON-ready, readable form of ``value`` (already readable values pass through)."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return value if len(value) <= VALUE_MAX else value[:VALUE_MAX] + "…"
    if isinstance(value, datetime.datetime):
        return timezone.localtime(value).isoformat() if timezone.is_aware(value) else value.isoformat()
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | uuid.UUID | datetime.timedelta):
        return str(value)
    if isinstance(value, list | tuple | set | frozenset):
        return [json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    return json_value(str(value))


def _is_secret(name: str) -> bool:
    name = name.lower()
    return any(marker in name for marker in SECRET_MARKERS)


def _model_field(model, name):
    try:
        return model._meta.get_field(name)
    except Exception:  # a form-only field (password1, a computed choice)
        return None


def readable(model, name: str, value):
    """``value`` of ``model.name`` as staff would read it: a related object's name, a choice's label."""
    if value is None or value == "":
        return json_value(value)
    if _is_secret(name):
        return SECRET
    field = _model_field(model, name)
    if field is not None and field.many_to_many:
        return sorted(str(item) for item in _related_objects(field, value))
    if field is not None and field.is_relation and not isinstance(value, models.Model):
        related = field.related_model._default_manager.filter(pk=value).first()
        return str(related) if related is not None else json_value(value)
    if isinstance(value, models.Model):
        return str(value)
    if field is not None and field.choices:
        labels = dict(field.flatchoices)
        if value in labels:
            return str(labels[value])
    return json_value(value)


def _related_objects(field, value):
    if isinstance(value, models.QuerySet):
        return list(value)
    items = list(value or [])
    pks = [item for item in items if not isinstance(item, models.Model)]
    objects = [item for item in items if isinstance(item, models.Model)]
    if pks:
        objects += list(field.related_model._default_manager.filter(pk__in=pks))
    return objects


def form_changes(form, *, adding: bool, exclude: Iterable[str] = ()) -> dict:
    """{field: [old, new]} of a bound, valid ModelForm, readable.

    A change: the fields in ``form.changed_data``, old from ``form.initial`` (what the
    form showed), new from ``cleaned_data``. An addition: every filled-in field, old None.
    """
    model = form._meta.model
    skip = set(exclude)
    names = form.cleaned_data.keys() if adding else form.changed_data
    changes = {}
    for name in names:
        if name in skip or name not in form.cleaned_data:
            continue
        new = form.cleaned_data[name]
        if adding and new in (None, "", [], ()):
            continue
        if adding and isinstance(new, models.QuerySet) and not new.exists():
            continue
        old = None if adding else readable(model, name, form.initial.get(name))
        changes[name] = [old, readable(model, name, new)]
    return changes


def snapshot(obj: models.Model) -> dict:
    """{field: [value, None]} of a row about to be deleted: what it was, readable."""
    changes = {}
    for field in obj._meta.concrete_fields:
        if field.primary_key:
            continue
        value = getattr(obj, field.attname)
        changes[field.name] = [readable(type(obj), field.name, value), None]
    return changes
