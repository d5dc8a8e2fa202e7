"""Money and rates in the admin as people read them, stored as the integers they are.

Money is stored as integer fen, multipliers and rates as integer basis points
(1 bp = 1/10000). Staff read and type yuan (``¥1,234.56`` / ``1234.56``), multipliers
(``×1.5`` / ``1.5``) and percentages (``1%`` / ``1.25``); nothing here ever goes
through a float, and an entry finer than what the integer holds is refused, never
rounded.

Use in any ModelAdmin (or inline):

    from core.admin_fields import UnitsAdminMixin, yuan_column, multiplier_column

    @admin.register(Tier)
    class TierAdmin(UnitsAdminMixin, admin.ModelAdmin):
        list_display = ["name", yuan_column("threshold_fen", model=Tier), multiplier_column("multiplier_bp", model=Tier)]

``UnitsAdminMixin`` swaps the form field of every model field named ``*_fen`` for a
:class:`YuanField`, ``multiplier_bp`` / ``*_multiplier_bp`` for a
:class:`MultiplierField`, and any other ``*_bp`` for a :class:`PercentField`; list the
names in ``yuan_fields`` / ``multiplier_fields`` / ``percent_fields`` to choose
explicitly, and in ``plain_unit_fields`` to keep a field as a plain integer. The form
fields also work in plain Django forms (``YuanField(min_value=0)``: bounds in fen/bp).

``yuan_column`` / ``multiplier_column`` / ``percent_column`` build list columns (also
usable in ``readonly_fields``), sortable by the stored column; ``format_yuan``,
``format_multiplier`` and ``format_percent`` format one value.
"""

from __future__ import annotations

import re
from decimal import Decimal

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

FEN_PER_YUAN = 100
BP_PER_UNIT = 10_000  # a multiplier of 1 (×1) in basis points
BP_PER_PERCENT = 100
BIGINT_MAX = 2**63 - 1

_THOUSANDS = re.compile(r"^\d{1,3}(,\d{3})+(\.\d*)?$")
_PLAIN = re.compile(r"^\d+(\.\d*)?$|^\.\d+$")


# --- formatting ---------------------------------------------------------------------


def _scaled(value: int, scale: int, *, min_places: int) -> str:
    """An integer of 1/scale units as a decimal string with at least ``min_places`` places,
    trailing zeros past them dropped, grouped by thousands: (15000, 10000, 1) → "1.5"."""
    sign = "-" if value < 0 else ""
    whole, frac = divmod(abs(value), scale)
    places = len(str(scale)) - 1
    digits = f"{frac:0{places}d}".rstrip("0").ljust(min_places, "0") if places else ""
    return f"{sign}{whole:,}" + (f".{digits}" if digits else "")


def format_yuan(fen: int | None, *, symbol: bool = True) -> str:
    """12345678 → "¥123,456.78"; -5 → "-¥0.05"; None → "" (the admin shows its empty value)."""
    if fen is None:
        return ""
    text = _scaled(int(fen), FEN_PER_YUAN, min_places=2)
    if not symbol:
        return text
    return f"-¥{text[1:]}" if text.startswith("-") else f"¥{text}"


def format_multiplier(bp: int | None) -> str:
    """15000 → "×1.5"; 10000 → "×1"; 12345 → "×1.2345"."""
    if bp is None:
        return ""
    return f"×{_scaled(int(bp), BP_PER_UNIT, min_places=0)}"


def format_percent(bp: int | None) -> str:
    """100 → "1%"; 125 → "1.25%"; 5 → "0.05%"."""
    if bp is None:
        return ""
    return f"{_scaled(int(bp), BP_PER_PERCENT, min_places=0)}%"


# --- form fields --------------------------------------------------------------------


class ScaledIntegerField(forms.Field):
    """A decimal typed by staff, stored as the exact integer ``value × scale``.

    ``min_value`` / ``max_value`` are in the stored unit (what the model field's
    ``formfield()`` passes); negative values are refused unless ``allow_negative``. Accepts an optional prefix/suffix symbol, thousands
    separators in their right places (``1,234.5``), and at most ``log10(scale)``
    decimal places; refuses exponents, NaN, more precision, and out-of-range values,
    each with a stable error code.
    """

    scale = 1
    symbols: tuple[str, ...] = ()
    default_error_messages = {
        "invalid": _("Enter a number, such as %(example)s."),
        "too_precise": _("At most %(places)d decimal places."),
        "negative": _("Enter a value that is not negative."),
        "min_value": _("Enter at least %(limit)s."),
        "max_value": _("Enter at most %(limit)s."),
    }
    example = "1.5"

    def __init__(self, *, min_value=0, max_value=BIGINT_MAX, allow_negative=False, **kwargs):
        # The model field's formfield() passes an IntegerField's options; they make no sense here.
        kwargs.pop("step_size", None)
        kwargs.pop("localize", None)
        if not allow_negative:  # a BigIntegerField passes its database minimum: money typed by staff is not negative
            min_value = 0 if min_value is None else max(min_value, 0)
        self.min_value, self.max_value = min_value, max_value
        kwargs.setdefault("widget", forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off", "size": 14}))
        super().__init__(**kwargs)

    @property
    def places(self) -> int:
        return len(str(self.scale)) - 1

    def format_limit(self, value: int) -> str:
        return _scaled(value, self.scale, min_places=0)

    def prepare_value(self, value):
        if isinstance(value, int) and not isinstance(value, bool):
            return _scaled(value, self.scale, min_places=0).replace(",", "")
        return value

    def to_python(self, value):
        if value in self.empty_values:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            return value  # already stored units (an initial value)
        text = str(value).strip().replace("\u00a0", "").replace(" ", "")
        for symbol in self.symbols:
            text = text.removeprefix(symbol).removesuffix(symbol)
        negative = text.startswith(("-", "−"))
        if negative:
            text = text[1:]
            for symbol in self.symbols:  # "-¥5"
                text = text.removeprefix(symbol)
        if _THOUSANDS.match(text):
            text = text.replace(",", "")
        if len(text) > 40 or not _PLAIN.match(text):
            raise ValidationError(self.error_messages["invalid"], code="invalid", params={"example": self.example})
        whole, _dot, frac = text.partition(".")
        if len(frac) > self.places:
            raise ValidationError(self.error_messages["too_precise"], code="too_precise", params={"places": self.places})
        stored = int(Decimal(f"{whole or '0'}.{frac or '0'}") * self.scale)
        if negative and stored:
            stored = -stored
        return stored

    def validate(self, value):
        super().validate(value)
        if value is None:
            return
        if value < 0 and (self.min_value is None or self.min_value >= 0):
            raise ValidationError(self.error_messages["negative"], code="negative")
        if self.min_value is not None and value < self.min_value:
            raise ValidationError(
                self.error_messages["min_value"], code="min_value", params={"limit": self.format_limit(self.min_value)}
            )
        if self.max_value is not None and value > self.max_value:
            raise ValidationError(
                self.error_messages["max_value"], code="max_value", params={"limit": self.format_limit(self.max_value)}
            )

    def widget_attrs(self, widget):
        attrs = super().widget_attrs(widget)
        attrs.setdefault("placeholder", self.example)
        return attrs


class YuanField(ScaledIntegerField):
    """Yuan with up to 2 decimals ⇄ integer fen: "12.34" → 1234; "12.345" is refused."""

    scale = FEN_PER_YUAN
    symbols = ("¥", "￥")
    example = "12.34"

    def format_limit(self, value: int) -> str:
        return format_yuan(value)


class MultiplierField(ScaledIntegerField):
    """A multiplier with up to 4 decimals ⇄ basis points: "1.5" → 15000; "1.23456" is refused."""

    scale = BP_PER_UNIT
    symbols = ("×", "x", "X")
    example = "1.5"

    def format_limit(self, value: int) -> str:
        return format_multiplier(value)


class PercentField(ScaledIntegerField):
    """A percentage with up to 2 decimals ⇄ basis points: "1.25" (%) → 125; "0.005" is refused."""

    scale = BP_PER_PERCENT
    symbols = ("%", "％")
    example = "1.25"

    def format_limit(self, value: int) -> str:
        return format_percent(value)


# --- admin integration --------------------------------------------------------------


def unit_of(field_name: str) -> str | None:
    """"yuan", "multiplier", "percent" or None, from a field's name (``*_fen``, ``*multiplier_bp``, ``*_bp``)."""
    if field_name.endswith("_fen"):
        return "yuan"
    if field_name == "multiplier_bp" or field_name.endswith("_multiplier_bp"):
        return "multiplier"
    if field_name.endswith("_bp"):
        return "percent"
    return None


FORM_FIELDS = {"yuan": YuanField, "multiplier": MultiplierField, "percent": PercentField}
FORMATTERS = {"yuan": format_yuan, "multiplier": format_multiplier, "percent": format_percent}


class UnitsAdminMixin:
    """Yuan / ×multiplier / % for the integer fen / bp model fields (see the module), in
    ModelAdmins and inlines, placed before the admin class (and before ReadOnly mixins):

    - editable fields get a YuanField / MultiplierField / PercentField;
    - read-only fields and list columns named after a unit field (``"amount_fen"``) are
      shown formatted (``¥12.34``), through a column named ``"amount_fen_yuan"`` that
      the mixin answers for (sortable by the stored column in lists).
    """

    yuan_fields: tuple[str, ...] = ()
    multiplier_fields: tuple[str, ...] = ()
    percent_fields: tuple[str, ...] = ()
    plain_unit_fields: tuple[str, ...] = ()

    def unit_for(self, field_name: str) -> str | None:
        if not isinstance(field_name, str) or field_name in self.plain_unit_fields:
            return None
        for unit, names in (("yuan", self.yuan_fields), ("multiplier", self.multiplier_fields), ("percent", self.percent_fields)):
            if field_name in names:
                return unit
        return unit_of(field_name)

    def _unit_column_name(self, field_name):
        """``"amount_fen"`` → ``"amount_fen_yuan"`` for a unit field of the model; else unchanged."""
        unit = self.unit_for(field_name)
        if unit is None:
            return field_name
        try:
            self.model._meta.get_field(field_name)
        except Exception:  # a method or an annotation that happens to end in _fen
            return field_name
        return f"{field_name}_{unit}"

    def __getattr__(self, name):
        # The formatted columns: "<field>_<unit>" for a unit field of the model.
        model = self.__dict__.get("model") or getattr(type(self), "model", None)
        for unit in FORMATTERS:
            field_name = name.removesuffix(f"_{unit}")
            if field_name != name and model is not None and self.unit_for(field_name) == unit:
                try:
                    model._meta.get_field(field_name)
                except Exception:
                    break
                return unit_column(field_name, unit, model=model)
        raise AttributeError(name)

    def get_readonly_fields(self, request, obj=None):
        return [self._unit_column_name(name) for name in super().get_readonly_fields(request, obj)]

    def get_fields(self, request, obj=None):
        # Raw unit fields that are read-only are shown by their formatted column instead.
        readonly = set(super().get_readonly_fields(request, obj))
        shown = []
        for name in super().get_fields(request, obj):
            name = self._unit_column_name(name) if name in readonly else name
            if name not in shown:
                shown.append(name)
        return shown

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if not self.fieldsets:
            return fieldsets  # from get_fields, already mapped
        readonly = set(super().get_readonly_fields(request, obj))

        def mapped(fields):
            return [
                mapped(name) if isinstance(name, (list, tuple)) else (self._unit_column_name(name) if name in readonly else name)
                for name in fields
            ]

        return [(title, {**options, "fields": mapped(options["fields"])}) for title, options in fieldsets]

    def get_list_display(self, request):
        return [self._unit_column_name(name) for name in super().get_list_display(request)]

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        unit = self.unit_for(db_field.name) if not db_field.choices and not db_field.is_relation else None
        if unit is None or db_field.get_internal_type() not in {
            "IntegerField", "BigIntegerField", "PositiveIntegerField", "PositiveBigIntegerField",
            "SmallIntegerField", "PositiveSmallIntegerField",
        }:
            return super().formfield_for_dbfield(db_field, request, **kwargs)
        return db_field.formfield(form_class=FORM_FIELDS[unit], **kwargs)


def unit_column(field_name: str, unit: str, description=None, *, model=None, ordering: bool = True):
    """A list column (or read-only field) showing ``field_name`` formatted in ``unit``.

    Its header is ``description``, else the model field's (translated) verbose_name
    when ``model`` is given; it sorts by the stored column unless ``ordering=False``.
    """
    formatter = FORMATTERS[unit]
    if description is None and model is not None:
        description = model._meta.get_field(field_name).verbose_name

    def column(obj):
        return formatter(getattr(obj, field_name))

    column.__name__ = f"{field_name}_{unit}"
    return admin.display(description=description or _field_label(field_name), ordering=field_name if ordering else None)(
        column
    )


def yuan_column(field_name: str, description=None, *, model=None, ordering: bool = True):
    return unit_column(field_name, "yuan", description, model=model, ordering=ordering)


def multiplier_column(field_name: str, description=None, *, model=None, ordering: bool = True):
    return unit_column(field_name, "multiplier", description, model=model, ordering=ordering)


def percent_column(field_name: str, description=None, *, model=None, ordering: bool = True):
    return unit_column(field_name, "percent", description, model=model, ordering=ordering)


def _field_label(field_name: str) -> str:
    """"threshold_fen" → "threshold" (a fallback; pass the model field's verbose_name instead)."""
    return field_name.removesuffix("_fen").removesuffix("_bp").replace("_", " ")
