"""The purge of ended rate-limit windows (core.ratelimit.counters_purge), every 10 minutes."""

from django.db import migrations

NAME = "core: purge ended rate-limit counters"


def forwards(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.get_or_create(
        name=NAME, defaults={"func": "core.ratelimit.counters_purge", "schedule_type": "I", "minutes": 10}
    )


def backwards(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0001_initial"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
