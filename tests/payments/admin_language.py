"""Reading an admin page as a Chinese or an English member of staff: what the tests of the
Chinese admin check on every list and change page they open."""

import re

from django.conf import settings
from django.contrib.admin.utils import flatten_fieldsets, label_for_field
from django.utils import translation
from django.utils.html import escape
from django.utils.text import capfirst

CJK = re.compile(r"[\u4e00-\u9fff]")
# Labels that read the same in both languages.
SAME_IN_BOTH = {"ID"}


def speaking(client, language: str):
    """The client as a member of staff who chose ``language`` (LocaleMiddleware's cookie)."""
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = language
    return client


def page_text(response) -> str:
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def list_labels(response, language: str) -> list[str]:
    """The column headers of a changelist response, as ``language`` reads them."""
    changelist = response.context["cl"]
    with translation.override(language):
        return [
            str(label_for_field(name, changelist.model, changelist.model_admin))
            for name in changelist.list_display if name != "action_checkbox"
        ]


def form_labels(response, language: str) -> list[str]:
    """The field labels of a change page response (its fieldsets), as ``language`` reads them.

    The audit's "reason for this change" field (core.audit_admin, added to every page) is
    its own tests' business."""
    admin_form = response.context["adminform"]
    with translation.override(language):
        return [
            str(label_for_field(name, admin_form.model_admin.model, admin_form.model_admin, form=admin_form.form))
            for name in flatten_fieldsets(admin_form.fieldsets) if not name.startswith("audit_")
        ]


def assert_labels_shown(page: str, labels: list[str], language: str) -> None:
    """Each label is on the page, in ``language``: Chinese labels hold Chinese characters, English ones none."""
    for label in labels:
        assert escape(capfirst(label)) in page or escape(label) in page, label
        if label in SAME_IN_BOTH:
            continue
        if language == "en":
            assert not CJK.search(label), label
        else:
            assert CJK.search(label), f"not translated: {label!r}"


def in_language(language: str, text) -> str:
    """A lazy string, or an msgid, as ``language`` reads it."""
    with translation.override(language):
        return translation.gettext(text) if isinstance(text, str) else str(text)
