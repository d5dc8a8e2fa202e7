"""Tiers that follow spend (members.tiers): the rolling spend on the member's row, the
history of tier changes, the nightly review's runs, and its daily schedule.

The new member columns have constant defaults (no table rewrite on PostgreSQL 11+) and
no CHECK constraint, which would scan the whole table under its lock.
"""

import django.db.models.deletion
from django.db import migrations, models

SCHEDULES = [
    # name, func, schedule type ("D": daily, from the first start of the cluster)
    ("tiers: review members' tiers", "members.tasks.tiers_review_nightly", "D"),
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
        ('members', '0012_segments'),
        ('django_q', '0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more'),
    ]

    operations = [
        migrations.AddField(
            model_name='member',
            name='tier_spend_fen',
            field=models.BigIntegerField(default=0),
        ),
        migrations.AddField(
            model_name='member',
            name='tier_spend_months',
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.AddField(
            model_name='member',
            name='tier_below_since',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.CreateModel(
            name='TierChange',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('reason', models.CharField(choices=[('upgrade', 'Upgrade (spend reached the tier)'), ('downgrade', 'Downgrade (spend below the tier past the grace period)'), ('staff', 'Set by staff')], max_length=16)),
                ('spend_fen', models.BigIntegerField()),
                ('created_at', models.DateTimeField()),
                ('member', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='tier_changes', to='members.member')),
                ('from_tier', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='members.tier')),
                ('to_tier', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to='members.tier')),
            ],
            options={
                'ordering': ['-created_at', '-id'],
                'indexes': [models.Index(fields=['member', 'created_at'], name='tier_change_member')],
                'constraints': [models.CheckConstraint(condition=models.Q(('spend_fen__gte', 0)), name='tier_change_spend_not_negative')],
            },
        ),
        migrations.CreateModel(
            name='TierRun',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('day', models.DateField(unique=True)),
                ('as_of', models.DateTimeField()),
                ('last_member_id', models.BigIntegerField(default=0)),
                ('upgrades', models.PositiveIntegerField(default=0)),
                ('downgrades', models.PositiveIntegerField(default=0)),
                ('started_at', models.DateTimeField()),
                ('finished_at', models.DateTimeField(blank=True, null=True)),
            ],
            options={
                'ordering': ['-day'],
            },
        ),
        migrations.RunPython(forwards, backwards),
    ]
