"""What operators call: /healthz, /readyz and /metrics (DESIGN.md "HTTP").

Load balancers and Prometheus call these over plain HTTP with whatever Host they like
(often the pod's IP), so ``OperatorEndpointsMiddleware``, first in MIDDLEWARE, answers
them itself: before SecurityMiddleware's HTTPS redirect and before anything that calls
``request.get_host()`` (which refuses a Host not in ALLOWED_HOSTS), and without logging
or timing every probe. The same views are in the URL map, for ``reverse()`` and in case
the middleware is not installed (settings also exempt them from the redirect).
"""

import hmac
import logging

from django.conf import settings
from django.http import HttpResponse, JsonResponse

from core import health
from core.metrics import metrics_exposition

logger = logging.getLogger(__name__)


def healthz(request) -> HttpResponse:
    """The process is up and answering."""
    return _no_store(HttpResponse("ok\n", content_type="text/plain"))


def readyz(request) -> JsonResponse:
    """200 when the database, the cache and a task cluster (seen in the last minute) are
    all there; 503 naming what failed."""
    checks = health.readiness()
    failed = [name for name, result in checks.items() if result != health.OK]
    if failed:
        logger.warning("not ready: %s", "; ".join(f"{name}: {checks[name]}" for name in failed))
        response = JsonResponse({"status": "unavailable", "failed": failed, "checks": checks}, status=503)
        # Logged above as a warning, not again by Django as an ERROR "Service Unavailable"
        # every few seconds for as long as the probes go on.
        response._has_been_logged = True
        return _no_store(response)
    return _no_store(JsonResponse({"status": "ok", "checks": checks}))


def metrics(request) -> HttpResponse:
    """No METRICS_TOKEN: 404 (off). Without ``Authorization: Bearer <token>``: 401; another token: 403."""
    token = settings.METRICS_TOKEN
    if not token:
        return HttpResponse("Not Found\n", status=404, content_type="text/plain")
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    presented = presented.strip()
    if scheme.lower() != "bearer" or not presented:
        response = HttpResponse("Unauthorized\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    if not hmac.compare_digest(presented.encode(), token.encode()):
        return HttpResponse("Forbidden\n", status=403, content_type="text/plain")
    body, content_type = metrics_exposition(request.headers.get("Accept"))
    return _no_store(HttpResponse(body, content_type=content_type))


def _no_store(response):
    response["Cache-Control"] = "no-store"
    return response


ENDPOINTS = {"/healthz": healthz, "/readyz": readyz, "/metrics": metrics}


class OperatorEndpointsMiddleware:
    """First in MIDDLEWARE: answers ENDPOINTS' paths, GET or HEAD, before the others run."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        view = ENDPOINTS.get(request.path_info)
        if view is None or request.method not in ("GET", "HEAD"):
            return self.get_response(request)
        return view(request)
