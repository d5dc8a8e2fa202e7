"""Push delivery: the SENDING status (a worker's claim), what was sent to whom
(Push.recipient, Push.payload), the index of the retry sweep and of the claims'
deadlines, PushTemplate.page, mini-program subscriptions, the resend permission, and
the sweep itself, every minute (members.tasks.push_deliver_due)."""

import django.db.models.deletion
from django.db import migrations, models

import members.models.pushes

SCHEDULES = [
    # name, func, schedule type ("I": every `minutes` minutes), minutes
    ("pushes: deliver due pushes", "members.tasks.push_deliver_due", "I", 1),
]


def schedules_create(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    for name, func, schedule_type, minutes in SCHEDULES:
        Schedule.objects.get_or_create(name=name, defaults={"func": func, "schedule_type": schedule_type, "minutes": minutes})


def schedules_delete(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.filter(name__in=[s[0] for s in SCHEDULES]).delete()


class Migration(migrations.Migration):

    dependencies = [
        ('members', '0005_ledger_key_length'),
        ('django_q', '0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more'),
    ]

    operations = [
        migrations.CreateModel(
            name='MiniappSubscription',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('template_id', models.CharField(max_length=128)),
                ('remaining', models.PositiveIntegerField(default=0)),
                ('updated_at', models.DateTimeField(auto_now=True)),
            ],
        ),
        migrations.AlterModelOptions(
            name='push',
            options={'permissions': [('resend_push', 'Can send a failed or inbox-only push again')]},
        ),
        migrations.RemoveIndex(
            model_name='push',
            name='push_due',
        ),
        migrations.AddField(
            model_name='push',
            name='payload',
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.AddField(
            model_name='push',
            name='recipient',
            field=models.CharField(blank=True, max_length=160),
        ),
        migrations.AddField(
            model_name='pushtemplate',
            name='page',
            field=models.CharField(blank=True, max_length=200),
        ),
        migrations.AlterField(
            model_name='push',
            name='status',
            field=models.CharField(choices=[('pending', 'Pending'), ('sending', 'Sending (claimed)'), ('sent', 'Sent'), ('failed', 'Failed (gave up)'), ('skipped', 'Inbox only')], default='pending', max_length=16),
        ),
        migrations.AlterField(
            model_name='pushtemplate',
            name='fields',
            field=models.JSONField(default=dict, validators=[members.models.pushes.validate_template_fields]),
        ),
        migrations.AddIndex(
            model_name='push',
            index=models.Index(condition=models.Q(('status__in', ['pending', 'sending'])), fields=['status', 'next_attempt_at'], name='push_due_or_claimed'),
        ),
        migrations.AddField(
            model_name='miniappsubscription',
            name='member',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='miniapp_subscriptions', to='members.member'),
        ),
        migrations.AddConstraint(
            model_name='miniappsubscription',
            constraint=models.UniqueConstraint(fields=('member', 'template_id'), name='one_subscription_per_member_and_template'),
        ),
        migrations.AddConstraint(
            model_name='miniappsubscription',
            constraint=models.CheckConstraint(condition=models.Q(('remaining__gte', 0)), name='subscription_remaining_not_negative'),
        ),
        migrations.RunPython(schedules_create, schedules_delete),
    ]
