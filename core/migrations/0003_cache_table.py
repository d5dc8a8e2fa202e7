"""The database cache's table (CACHES without REDIS_URL), so that `migrate` alone makes a
working deployment: throttles, platform access tokens and the task cluster's heartbeat
live in it, shared by every process. With Redis as the cache this does nothing."""

from django.core.management import call_command
from django.db import migrations


def cache_table_create(apps, schema_editor):
    call_command("createcachetable", database=schema_editor.connection.alias, verbosity=0)


class Migration(migrations.Migration):
    dependencies = [("core", "0002_counters_purge_schedule")]

    operations = [migrations.RunPython(cache_table_create, migrations.RunPython.noop, elidable=False)]
