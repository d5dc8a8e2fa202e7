import pytest


@pytest.fixture(autouse=True, scope="session")
def _tasks_run_inline():
    """Tasks enqueued with django-q2's async_task run synchronously in tests."""
    from django_q.conf import Conf

    previous, Conf.SYNC = Conf.SYNC, True
    yield
    Conf.SYNC = previous


@pytest.fixture(autouse=True)
def _clear_cache():
    from django.core.cache import cache

    cache.clear()
    yield
