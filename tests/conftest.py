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
    _mall_defaults_ensure()
    yield


def _mall_defaults_ensure():
    """The rows the data migrations make (tiers, the mall's accounts, schedules).

    A transactional test empties every table when it ends; rather than Django's
    fragile serialized rollback, the next test simply puts the defaults back.
    """
    import importlib

    from django.apps import apps

    from members.models import Tier

    if not Tier.objects.exists():
        importlib.import_module("members.migrations.0002_defaults").forwards(apps, None)
        importlib.import_module("members.migrations.0007_pending_points_spend_authorizations").forwards(apps, None)
        importlib.import_module("members.migrations.0010_order_holds_partner_accounts").escrow_account(apps, None)
        importlib.import_module("payments.migrations.0004_orders").forwards(apps, None)
        importlib.import_module("members.migrations.0012_segments").forwards(apps, None)
        importlib.import_module("members.migrations.0013_tiers").forwards(apps, None)
        importlib.import_module("coupons.migrations.0002_expiry_schedule").forwards(apps, None)
        importlib.import_module("coupons.migrations.0003_campaigns").forwards(apps, None)
        importlib.import_module("backoffice.migrations.0004_dashboards_schedule").forwards(apps, None)
