"""Lifecycle segments (members.segments): each member's segment, the runs that make the
nightly job resumable, the sizes kept for the dashboards, and the schedules of the job and
of the reminders of points about to expire (members.reminders)."""


import django.db.models.deletion
from django.db import migrations, models

SCHEDULES = [
    # name, func, schedule type ("D": daily, from the first start of the cluster)
    ("segments: tag members", "members.tasks.segments_tag_nightly", "D"),
    ("points: remind of points expiring within 30 days", "members.tasks.expiry_reminders_send", "D"),
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
        ('members', '0011_shortfall_recovery'),
        ('django_q', '0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more'),
    ]

    operations = [
        migrations.CreateModel(
            name='SegmentRun',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('day', models.DateField(unique=True)),
                ('as_of', models.DateTimeField()),
                ('phase', models.CharField(choices=[('classify', 'Segments'), ('high_value', 'High-value tag'), ('done', 'Done')], default='classify', max_length=16)),
                ('last_member_id', models.BigIntegerField(default=0)),
                ('high_value_threshold_fen', models.BigIntegerField(blank=True, null=True)),
                ('started_at', models.DateTimeField()),
                ('finished_at', models.DateTimeField(blank=True, null=True)),
            ],
            options={
                'ordering': ['-day'],
            },
        ),
        migrations.CreateModel(
            name='SegmentSnapshot',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('day', models.DateField()),
                ('segment', models.CharField(choices=[('lapsed', 'Lapsed'), ('loyal', 'Loyal'), ('occasional', 'Occasional'), ('one_time', 'One-time'), ('potential', 'Potential')], max_length=16)),
                ('members', models.PositiveIntegerField()),
                ('high_value_members', models.PositiveIntegerField()),
            ],
            options={
                'ordering': ['-day', 'segment'],
                'constraints': [models.UniqueConstraint(fields=('day', 'segment'), name='segment_snapshot_one_per_day'), models.CheckConstraint(condition=models.Q(('high_value_members__lte', models.F('members'))), name='segment_snapshot_high_value_within')],
            },
        ),
        migrations.CreateModel(
            name='MemberSegment',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('segment', models.CharField(choices=[('lapsed', 'Lapsed'), ('loyal', 'Loyal'), ('occasional', 'Occasional'), ('one_time', 'One-time'), ('potential', 'Potential')], max_length=16)),
                ('high_value', models.BooleanField(default=False)),
                ('spend_12m_fen', models.BigIntegerField(default=0)),
                ('computed_at', models.DateTimeField()),
                ('member', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='segment', to='members.member')),
                ('run', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to='members.segmentrun')),
            ],
            options={
                'indexes': [models.Index(fields=['spend_12m_fen'], name='member_segment_spend'), models.Index(fields=['segment', 'high_value'], name='member_segment_segment')],
            },
        ),
        migrations.RunPython(forwards, backwards),
    ]
