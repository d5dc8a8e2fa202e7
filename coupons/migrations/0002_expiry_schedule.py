"""The nightly schedule that expires coupons past their validity (coupons.tasks)."""

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import migrations

SCHEDULES = [
    # name, func, schedule type ("D": daily, from its first run at NIGHTLY_AT local time)
    ("coupons: expire coupons past their validity", "coupons.tasks.coupons_expire_due", "D"),
]
NIGHTLY_AT = time(2, 15)


def forwards(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    local = ZoneInfo(settings.TIME_ZONE)
    now = datetime.now(local)
    first_run = datetime.combine(now.date(), NIGHTLY_AT, tzinfo=local)
    if first_run <= now:
        first_run += timedelta(days=1)
    for name, func, schedule_type in SCHEDULES:
        Schedule.objects.get_or_create(name=name, defaults={"func": func, "schedule_type": schedule_type, "next_run": first_run})


def backwards(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.filter(name__in=[s[0] for s in SCHEDULES]).delete()


class Migration(migrations.Migration):

    dependencies = [
        ("coupons", "0001_initial"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
