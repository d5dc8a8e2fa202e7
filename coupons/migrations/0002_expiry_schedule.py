"""The nightly schedule that expires coupons past their validity (coupons.tasks)."""


from django.db import migrations

SCHEDULES = [
    # name, func, schedule type ("D": daily, from the first start of the cluster)
    ("coupons: expire coupons past their validity", "coupons.tasks.coupons_expire_due", "D"),
]


def forwards(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    for name, func, schedule_type in SCHEDULES:
        Schedule.objects.get_or_create(name=name, defaults={"func": func, "schedule_type": schedule_type})


def backwards(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.filter(name__in=[s[0] for s in SCHEDULES]).delete()


class Migration(migrations.Migration):

    dependencies = [
        ("coupons", "0001_initial"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
