from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("members", "0004_identities_checkins_pushes"),
    ]

    operations = [
        migrations.AlterField(
            model_name="pointstransaction",
            name="idempotency_key",
            field=models.CharField(max_length=255, unique=True),
        ),
    ]
