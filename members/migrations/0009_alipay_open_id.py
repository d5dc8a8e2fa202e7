from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("members", "0008_checkin_proofs"),
    ]

    operations = [
        migrations.AlterField(
            model_name="identity",
            name="channel",
            field=models.CharField(
                choices=[
                    ("wechat_openid", "Official-account openid"),
                    ("miniapp_openid", "Mini-program openid"),
                    ("wechat_unionid", "WeChat unionid"),
                    ("alipay_user_id", "Alipay user_id"),
                    ("alipay_open_id", "Alipay open_id"),
                ],
                max_length=20,
            ),
        ),
    ]
