"""Trust: pending lots (the mall's pending account, release and hold), per-merchant
limits, spend authorisations (a scanned code or a shopper-confirmed token), and the
schedules that release pending points (members.tasks.points_release_due) and purge
redemption tokens nobody used."""

import django.db.models.deletion
from django.db import migrations, models

SCHEDULES = [
    # name, func, schedule type ("I": every `minutes` minutes), minutes
    ("points: release pending points", "members.tasks.points_release_due", "I", 60),
    ("spends: purge unused redemption tokens", "members.tasks.spend_authorizations_purge", "D", None),
]


def forwards(apps, schema_editor):
    Account = apps.get_model("members", "Account")
    Account.objects.get_or_create(kind="pending", merchant=None, member=None)
    Schedule = apps.get_model("django_q", "Schedule")
    for name, func, schedule_type, minutes in SCHEDULES:
        Schedule.objects.get_or_create(name=name, defaults={"func": func, "schedule_type": schedule_type, "minutes": minutes})


def backwards(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.filter(name__in=[s[0] for s in SCHEDULES]).delete()


class Migration(migrations.Migration):

    dependencies = [
        ('members', '0006_push_delivery'),
        ('django_q', '0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more'),
    ]

    operations = [
        migrations.CreateModel(
            name='SpendAuthorization',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('kind', models.CharField(choices=[('member_code', 'Scanned member code'), ('token', 'Redemption confirmed by the shopper')], max_length=16)),
                ('key_hash', models.CharField(max_length=64, unique=True)),
                ('max_points', models.BigIntegerField()),
                ('expires_at', models.DateTimeField(db_index=True)),
                ('used_at', models.DateTimeField(blank=True, null=True)),
                ('created_at', models.DateTimeField()),
            ],
            options={
                'verbose_name': 'spend authorisation',
            },
        ),
        migrations.RemoveConstraint(
            model_name='account',
            name='account_owner_matches_kind',
        ),
        migrations.RemoveConstraint(
            model_name='account',
            name='one_mall_account_per_kind',
        ),
        migrations.AddField(
            model_name='lot',
            name='merchant',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='members.merchant'),
        ),
        migrations.AddField(
            model_name='lot',
            name='moved_from',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='moved_to', to='members.lot'),
        ),
        migrations.AddField(
            model_name='lot',
            name='releases_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='lot',
            name='status',
            field=models.CharField(choices=[('available', 'Available'), ('pending', 'Pending (refund window)'), ('held', 'Held for review (merchant over its daily cap)')], default='available', max_length=12),
        ),
        migrations.AddField(
            model_name='merchant',
            name='mall_points_daily_cap',
            field=models.BigIntegerField(blank=True, help_text="Mall-funded points a day (tier extras) released for this merchant's sales; the rest is held for review. Empty: MERCHANT_MALL_POINTS_DAILY_CAP.", null=True),
        ),
        migrations.AddField(
            model_name='merchant',
            name='max_sale_fen',
            field=models.BigIntegerField(blank=True, help_text='The largest single sale this merchant may book, in fen. Empty: MERCHANT_MAX_SALE_FEN.', null=True),
        ),
        migrations.AlterField(
            model_name='account',
            name='kind',
            field=models.CharField(choices=[('wallet', 'Member wallet'), ('merchant_funding', 'Merchant funding (points it issued)'), ('merchant_acceptance', 'Merchant acceptance (points it took as payment)'), ('promotions', 'Mall promotions'), ('expired', 'Expired points sink'), ('pending', 'Pending points (not yet spendable)'), ('partner', 'Partner programme')], max_length=24),
        ),
        migrations.AlterField(
            model_name='pointstransaction',
            name='kind',
            field=models.CharField(choices=[('earn', 'Earn (purchase)'), ('redeem', 'Redeem (points as payment)'), ('grant', 'Grant (mall promotion)'), ('reverse', 'Reversal (refund)'), ('adjust', 'Staff adjustment'), ('expire', 'Expiry'), ('transfer', 'Transfer between members'), ('release', 'Release of pending points'), ('cancel', 'Cancellation of held points')], max_length=16),
        ),
        migrations.AddIndex(
            model_name='lot',
            index=models.Index(condition=models.Q(('status', 'pending')), fields=['releases_at'], name='lot_release_due'),
        ),
        migrations.AddConstraint(
            model_name='account',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('kind', 'wallet'), ('member__isnull', False), ('merchant__isnull', True)), models.Q(('kind__in', ['merchant_funding', 'merchant_acceptance']), ('member__isnull', True), ('merchant__isnull', False)), models.Q(('kind', 'partner'), ('member__isnull', True), ('merchant__isnull', True), ('partner_code__isnull', False)), models.Q(('kind__in', ['promotions', 'expired', 'pending']), ('member__isnull', True), ('merchant__isnull', True)), _connector='OR'), name='account_owner_matches_kind'),
        ),
        migrations.AddConstraint(
            model_name='account',
            constraint=models.UniqueConstraint(condition=models.Q(('kind__in', ['promotions', 'expired', 'pending'])), fields=('kind',), name='one_mall_account_per_kind'),
        ),
        migrations.AddConstraint(
            model_name='lot',
            constraint=models.CheckConstraint(condition=models.Q(('status', 'available'), ('releases_at__isnull', False), _connector='OR'), name='lot_pending_has_release_date'),
        ),
        migrations.AddConstraint(
            model_name='merchant',
            constraint=models.CheckConstraint(condition=models.Q(('max_sale_fen__isnull', True), ('max_sale_fen__gt', 0), _connector='OR'), name='merchant_max_sale_positive'),
        ),
        migrations.AddConstraint(
            model_name='merchant',
            constraint=models.CheckConstraint(condition=models.Q(('mall_points_daily_cap__isnull', True), ('mall_points_daily_cap__gte', 0), _connector='OR'), name='merchant_daily_cap_not_negative'),
        ),
        migrations.AddField(
            model_name='spendauthorization',
            name='member',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='spend_authorizations', to='members.member'),
        ),
        migrations.AddField(
            model_name='spendauthorization',
            name='store',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='members.store'),
        ),
        migrations.AddConstraint(
            model_name='spendauthorization',
            constraint=models.CheckConstraint(condition=models.Q(('max_points__gt', 0)), name='spend_authorization_max_positive'),
        ),
        migrations.AddConstraint(
            model_name='spendauthorization',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('kind', 'token'), _negated=True), ('store__isnull', False), _connector='OR'), name='spend_token_names_store'),
        ),
        migrations.CreateModel(
            name='MemberCodeScan',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('key_hash', models.CharField(max_length=64, unique=True)),
                ('expires_at', models.DateTimeField(db_index=True)),
                ('created_at', models.DateTimeField()),
                ('member', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='members.member')),
                ('merchant', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='members.merchant')),
            ],
        ),
        migrations.AlterModelOptions(
            name='lot',
            options={'permissions': [('review_held_points', 'Can release or cancel points held for review')]},
        ),
        migrations.RunPython(forwards, backwards),
    ]
