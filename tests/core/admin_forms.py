"""Post an admin change form as a browser would: what the page shows, with some fields changed."""

from django import forms
from django.forms.widgets import ChoiceWidget


def _widget_data(widget, name, value) -> dict:
    context = widget.get_context(name, value, {})["widget"]
    if context.get("subwidgets") and isinstance(widget, forms.MultiWidget):
        data = {}
        values = widget.decompress(value) if not isinstance(value, list) else value
        for index, (sub, sub_value) in enumerate(zip(widget.widgets, values or [None] * len(widget.widgets))):
            data |= _widget_data(sub, f"{name}{widget.widgets_names[index]}", sub_value)
        return data
    if isinstance(widget, forms.CheckboxInput):
        return {name: "on"} if widget.check_test(value) else {}
    if isinstance(widget, ChoiceWidget):
        chosen = [v for v in context["value"] if v != ""]
        if widget.allow_multiple_selected:
            return {name: chosen}
        return {name: chosen[0]} if chosen else {name: ""}
    shown = context.get("value")
    return {} if shown is None else {name: shown}


def _form_data(form) -> dict:
    data = {}
    for bound in form:
        widget = bound.field.widget
        while hasattr(widget, "widget") and not isinstance(widget, forms.MultiWidget):  # RelatedFieldWidgetWrapper
            widget = widget.widget
        data |= _widget_data(widget, bound.html_name, bound.value())
    return data


def change_form_data(response, **changes) -> dict:
    """The POST data of the admin change page in ``response``, with ``changes`` applied."""
    data = _form_data(response.context["adminform"].form)
    for inline in response.context.get("inline_admin_formsets", []):
        formset = inline.formset
        data |= {formset.management_form.add_prefix(k): v for k, v in formset.management_form.initial.items()}
        for form in formset.initial_forms:
            data |= _form_data(form)
    data |= changes
    return data
