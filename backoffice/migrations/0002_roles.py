"""The staff roles (members.roles) take in the tenants' logins: operators and merchant
managers manage them. Running it again changes nothing."""

from django.db import migrations

from members import roles


def forwards(apps, schema_editor):
    roles.roles_sync(apps)


class Migration(migrations.Migration):

    dependencies = [
        ("backoffice", "0001_initial"),
        ("members", "0014_roles"),
    ]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
