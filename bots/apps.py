from django.apps import AppConfig
from django.utils.translation import gettext_lazy


class BotsConfig(AppConfig):
    name = "bots"
    verbose_name = gettext_lazy("Official account and service window")

    def ready(self):
        # The plaza admin lives in members, which must not import bots (imports point
        # one way); so bots adds its "create WeChat check-in QR" action to it here,
        # after the admin has discovered every app's pages.
        from django.contrib import admin

        from bots.admin import create_wechat_checkin_qr
        from members.models import Plaza

        if admin.site.is_registered(Plaza):
            plaza_admin = admin.site.get_model_admin(Plaza)
            if create_wechat_checkin_qr not in plaza_admin.actions:
                plaza_admin.actions = [*plaza_admin.actions, create_wechat_checkin_qr]
