"""What the shopper's points history says about a staff adjustment, apart from the staff's reason."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("members", "0014_roles")]

    operations = [
        migrations.AddField(
            model_name="pointstransaction",
            name="public_note",
            field=models.CharField(blank=True, db_default="", max_length=200, verbose_name="description for the shopper"),
        ),
    ]
