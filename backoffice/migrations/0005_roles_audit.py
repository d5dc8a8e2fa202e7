"""The roles again: operators and finance read the audit trail (core.AuditEntry,
members.roles). Running it again changes nothing."""

from django.db import migrations

from members import roles


def forwards(apps, schema_editor):
    roles.roles_sync(apps)


class Migration(migrations.Migration):

    dependencies = [
        ("backoffice", "0004_dashboards_schedule"),
        ("core", "0005_labels"),
    ]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
