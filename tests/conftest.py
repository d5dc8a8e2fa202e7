pytest_plugins = ["tests.fakes.platform_server"]

import pytest


@pytest.fixture(autouse=True, scope="session")
def _tasks_run_inline():
    """Tasks enqueued with django-q2's async_task run synchronously in tests."""
    from django_q.conf import Conf

    previous, Conf.SYNC = Conf.SYNC, True
    yield
    Conf.SYNC = previous


@pytest.fixture(autouse=True)
def _clear_cache(request):
    """Each database test starts with an empty cache (tokens, throttles)."""
    if request.node.get_closest_marker("django_db") is None:
        yield
        return
    from django.core.cache import cache

    request.getfixturevalue("transactional_db" if "transactional_db" in request.fixturenames else "db")
    cache.clear()
    yield
