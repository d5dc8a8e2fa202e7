"""Yuan / multiplier / percent form fields and columns: exact integers, nothing rounded."""

import pytest
from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db import models

from core.admin_fields import (
    MultiplierField,
    PercentField,
    UnitsAdminMixin,
    YuanField,
    format_multiplier,
    format_percent,
    format_yuan,
    multiplier_column,
    unit_of,
    yuan_column,
)


@pytest.mark.parametrize(
    "fen, text",
    [(0, "¥0.00"), (5, "¥0.05"), (1234, "¥12.34"), (123456, "¥1,234.56"), (-5, "-¥0.05"), (100_000_000_00, "¥100,000,000.00")],
)
def test_format_yuan(fen, text):
    assert format_yuan(fen) == text


def test_format_none_is_empty():
    assert format_yuan(None) == format_multiplier(None) == format_percent(None) == ""


@pytest.mark.parametrize("bp, text", [(10000, "×1"), (15000, "×1.5"), (12345, "×1.2345"), (20000, "×2"), (100000, "×10")])
def test_format_multiplier(bp, text):
    assert format_multiplier(bp) == text


@pytest.mark.parametrize("bp, text", [(100, "1%"), (125, "1.25%"), (5, "0.05%"), (10000, "100%"), (0, "0%")])
def test_format_percent(bp, text):
    assert format_percent(bp) == text


@pytest.mark.parametrize(
    "typed, fen",
    [("12.34", 1234), ("12.3", 1230), ("12", 1200), ("0.01", 1), ("¥1,234.56", 123456), ("￥8", 800),
     (" 1234.5 ", 123450), (".5", 50), ("1,234,567", 123456700), ("0", 0)],
)
def test_yuan_field_stores_exact_fen(typed, fen):
    assert YuanField().clean(typed) == fen


@pytest.mark.parametrize(
    "typed, code",
    [("12.345", "too_precise"), ("0.001", "too_precise"), ("-1", "negative"), ("-0.01", "negative"), ("abc", "invalid"),
     ("1e3", "invalid"), ("NaN", "invalid"), ("Infinity", "invalid"), ("1,23", "invalid"), ("1.2.3", "invalid"),
     ("+5", "invalid"), ("1" * 50, "invalid"), ("99999999999999999999", "max_value")],
)
def test_yuan_field_refuses(typed, code):
    with pytest.raises(ValidationError) as caught:
        YuanField().clean(typed)
    assert caught.value.code == code


def test_yuan_field_negative_only_when_allowed():
    assert YuanField(allow_negative=True, min_value=-(2**63)).clean("-12.34") == -1234
    with pytest.raises(ValidationError):
        YuanField(min_value=-(2**63)).clean("-12.34")


def test_yuan_field_bounds_in_fen_and_messages_in_yuan():
    field = YuanField(min_value=100, max_value=100_000)
    with pytest.raises(ValidationError) as caught:
        field.clean("1000.01")
    assert caught.value.code == "max_value"
    assert "¥1,000.00" in caught.value.messages[0]
    with pytest.raises(ValidationError) as caught:
        field.clean("0.99")
    assert caught.value.code == "min_value"


def test_yuan_field_empty_and_required():
    assert YuanField(required=False).clean("") is None
    with pytest.raises(ValidationError) as caught:
        YuanField().clean("")
    assert caught.value.code == "required"


def test_yuan_field_shows_stored_fen_as_yuan():
    class Form(forms.Form):
        amount = YuanField()

    assert 'value="12.34"' in str(Form(initial={"amount": 1234})["amount"])
    assert 'value="1234567.8"' in str(Form(initial={"amount": 123456780})["amount"])
    bound = Form(data={"amount": "12.34"}, initial={"amount": 1234})
    assert bound.is_valid() and bound.cleaned_data["amount"] == 1234
    assert not bound.has_changed()
    assert Form(data={"amount": "12.35"}, initial={"amount": 1234}).has_changed()


@pytest.mark.parametrize("typed, bp", [("1.5", 15000), ("×1.5", 15000), ("x2", 20000), ("1", 10000), ("1.2345", 12345)])
def test_multiplier_field(typed, bp):
    assert MultiplierField().clean(typed) == bp


@pytest.mark.parametrize("typed, code", [("1.23456", "too_precise"), ("-1", "negative"), ("one", "invalid")])
def test_multiplier_field_refuses(typed, code):
    with pytest.raises(ValidationError) as caught:
        MultiplierField().clean(typed)
    assert caught.value.code == code


def test_multiplier_field_minimum_shown_as_multiplier():
    with pytest.raises(ValidationError) as caught:
        MultiplierField(min_value=10000).clean("0.5")
    assert "×1" in caught.value.messages[0]


@pytest.mark.parametrize("typed, bp", [("1", 100), ("1.25", 125), ("1.25%", 125), ("100", 10000), ("0.01", 1)])
def test_percent_field(typed, bp):
    assert PercentField().clean(typed) == bp


def test_percent_field_refuses_finer_than_a_basis_point():
    with pytest.raises(ValidationError) as caught:
        PercentField().clean("0.005")
    assert caught.value.code == "too_precise"


@pytest.mark.parametrize(
    "name, unit",
    [("amount_fen", "yuan"), ("multiplier_bp", "multiplier"), ("tier_multiplier_bp", "multiplier"),
     ("earn_rate_bp", "percent"), ("points", None), ("fence", None)],
)
def test_unit_of(name, unit):
    assert unit_of(name) == unit


class _Thing(models.Model):
    threshold_fen = models.BigIntegerField("threshold", default=0)
    cap_fen = models.BigIntegerField(null=True, blank=True)
    multiplier_bp = models.PositiveIntegerField(default=10000)
    earn_rate_bp = models.PositiveIntegerField(default=100)
    points = models.IntegerField(default=0)
    kept_fen = models.IntegerField(default=0)

    class Meta:
        app_label = "core"
        managed = False


class _ThingAdmin(UnitsAdminMixin, admin.ModelAdmin):
    plain_unit_fields = ("kept_fen",)
    list_display = [yuan_column("threshold_fen", model=_Thing), multiplier_column("multiplier_bp", model=_Thing)]


def test_admin_mixin_swaps_form_fields():
    model_admin = _ThingAdmin(_Thing, admin.AdminSite())
    form_class = model_admin.get_form(None, fields=["threshold_fen", "cap_fen", "multiplier_bp", "earn_rate_bp", "points", "kept_fen"])
    fields = form_class.base_fields
    assert isinstance(fields["threshold_fen"], YuanField)
    assert isinstance(fields["cap_fen"], YuanField) and not fields["cap_fen"].required
    assert isinstance(fields["multiplier_bp"], MultiplierField)
    assert isinstance(fields["earn_rate_bp"], PercentField)
    assert isinstance(fields["points"], forms.IntegerField)
    assert isinstance(fields["kept_fen"], forms.IntegerField)
    form = form_class(data={"threshold_fen": "1,000.5", "cap_fen": "", "multiplier_bp": "1.5", "earn_rate_bp": "2.5",
                            "points": "3", "kept_fen": "4"})
    assert form.is_valid(), form.errors
    assert form.cleaned_data == {"threshold_fen": 100050, "cap_fen": None, "multiplier_bp": 15000, "earn_rate_bp": 250,
                                 "points": 3, "kept_fen": 4}
    unbound = form_class()
    assert 'value="0"' in str(unbound["threshold_fen"])
    assert 'value="1"' in str(unbound["multiplier_bp"])


def test_columns_format_and_sort_by_the_stored_column():
    threshold, multiplier = _ThingAdmin.list_display
    thing = _Thing(threshold_fen=500000, multiplier_bp=15000)
    assert threshold(thing) == "¥5,000.00"
    assert multiplier(thing) == "×1.5"
    assert threshold.admin_order_field == "threshold_fen"
    assert str(threshold.short_description) == "threshold"


class _ReadOnlyThingAdmin(UnitsAdminMixin, admin.ModelAdmin):
    list_display = ["points", "threshold_fen", "multiplier_bp"]
    fields = ["points", "threshold_fen", "earn_rate_bp"]
    readonly_fields = ["threshold_fen", "earn_rate_bp"]


def test_read_only_unit_fields_and_list_columns_are_formatted(rf):
    model_admin = _ReadOnlyThingAdmin(_Thing, admin.AdminSite())
    request = rf.get("/")
    assert model_admin.get_list_display(request) == ["points", "threshold_fen_yuan", "multiplier_bp_multiplier"]
    assert model_admin.get_readonly_fields(request) == ["threshold_fen_yuan", "earn_rate_bp_percent"]
    assert model_admin.get_fields(request) == ["points", "threshold_fen_yuan", "earn_rate_bp_percent"]
    thing = _Thing(threshold_fen=123456, multiplier_bp=12500, earn_rate_bp=150)
    assert model_admin.threshold_fen_yuan(thing) == "¥1,234.56"
    assert model_admin.multiplier_bp_multiplier(thing) == "×1.25"
    assert model_admin.earn_rate_bp_percent(thing) == "1.5%"
    assert str(model_admin.threshold_fen_yuan.short_description) == "threshold"
    with pytest.raises(AttributeError):
        model_admin.points_yuan  # noqa: B018  (not a unit field)
    with pytest.raises(AttributeError):
        model_admin.nothing_fen_yuan  # noqa: B018  (no such field)
