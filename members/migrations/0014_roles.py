"""Staff roles (members.roles): the user → plaza binding of plaza managers, and the role
groups with their permissions. Running it again changes nothing; backwards removes the
groups. It runs after the apps whose permissions the roles hold, so that those exist."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from members import roles


def forwards(apps, schema_editor):
    roles.roles_sync(apps)


def backwards(apps, schema_editor):
    roles.roles_delete(apps)


class Migration(migrations.Migration):

    dependencies = [
        ('members', '0013_tiers'),
        ('payments', '0006_refund_of_an_order_a_coupon_paid'),
        ('coupons', '0005_redemptions_after_refund'),
        ('bots', '0003_signed_queries'),
        ('django_q', '0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more'),
        ('auth', '0012_alter_user_first_name_max_length'),
        ('contenttypes', '0002_remove_content_type_name'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='StaffPlaza',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('created_at', models.DateTimeField(auto_now_add=True, verbose_name='created at')),
                ('plaza', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='staff', to='members.plaza', verbose_name='plaza')),
                ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='staff_plazas', to=settings.AUTH_USER_MODEL, verbose_name='user')),
            ],
            options={
                'verbose_name': 'staff plaza',
                'verbose_name_plural': 'staff plazas',
                'constraints': [models.UniqueConstraint(fields=('user', 'plaza'), name='staff_plaza_once_per_user')],
            },
        ),
        migrations.RunPython(forwards, backwards),
    ]
