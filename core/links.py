"""Absolute links to this site, for QR posters, chat replies and pushes."""

from django.conf import settings


def public_url(request, path: str) -> str:
    """The absolute URL shoppers reach ``path`` at: under O2O_PUBLIC_BASE_URL when it is
    set (a poster printed from an internal admin host, or a reply to a platform's
    callback, must still carry the public host), else on the host of ``request``."""
    base = settings.O2O_PUBLIC_BASE_URL
    return base.rstrip("/") + path if base else request.build_absolute_uri(path)


def public_url_of(path: str) -> str:
    """``path`` under O2O_PUBLIC_BASE_URL, or "" when it is not set (no request to ask)."""
    base = settings.O2O_PUBLIC_BASE_URL
    return base.rstrip("/") + path if base else ""


def public_base(request=None) -> str:
    """Scheme and host shoppers and platforms reach us at, without a trailing slash:
    O2O_PUBLIC_BASE_URL, else the host of ``request``, else ""."""
    base = settings.O2O_PUBLIC_BASE_URL
    if base:
        return base.rstrip("/")
    return request.build_absolute_uri("/").rstrip("/") if request is not None else ""
