"""Defaults every mall starts with: the entry tier and its ladder, the mall's system
accounts, and the schedules of the ledger's periodic tasks."""

from django.db import migrations

TIERS = [
    # code, name, 12-month spend threshold in fen, earn multiplier in basis points
    ("standard", "普卡", 0, 10000),
    ("silver", "银卡", 500_000, 12000),
    ("gold", "金卡", 2_000_000, 15000),
    ("black", "黑卡", 10_000_000, 20000),
]

SCHEDULES = [
    # name, func, schedule type, minutes
    ("points: expire due lots", "members.tasks.points_expire_due", "D", None),
    ("ledger: roll up system balances", "members.tasks.ledger_rollup", "I", 15),
]


def forwards(apps, schema_editor):
    Tier = apps.get_model("members", "Tier")
    Account = apps.get_model("members", "Account")
    Schedule = apps.get_model("django_q", "Schedule")
    for code, name, threshold_fen, multiplier_bp in TIERS:
        Tier.objects.get_or_create(code=code, defaults={"name": name, "threshold_fen": threshold_fen, "multiplier_bp": multiplier_bp})
    for kind in ("promotions", "expired"):
        Account.objects.get_or_create(kind=kind, merchant=None, member=None)
    for name, func, schedule_type, minutes in SCHEDULES:
        Schedule.objects.get_or_create(name=name, defaults={"func": func, "schedule_type": schedule_type, "minutes": minutes})


def backwards(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.filter(name__in=[s[0] for s in SCHEDULES]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("members", "0001_initial"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
