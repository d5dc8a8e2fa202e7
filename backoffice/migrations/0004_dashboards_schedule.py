"""The dashboards' refresh every hour (backoffice.tasks.dashboards_refresh), and the roles
again: plaza managers and finance read the dashboards, finance exports them
(members.roles). Running it again changes nothing."""

from django.db import migrations

from members import roles

NAME = "dashboards: refresh the summary tables"


def forwards(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    # "H": hourly, from the first start of the cluster.
    Schedule.objects.get_or_create(name=NAME, defaults={"func": "backoffice.tasks.dashboards_refresh", "schedule_type": "H"})
    roles.roles_sync(apps)


def backwards(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):

    dependencies = [
        ("backoffice", "0003_dashboard_stats"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
