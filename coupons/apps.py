from django.apps import AppConfig
from django.utils.translation import gettext_lazy


class CouponsConfig(AppConfig):
    name = "coupons"
    verbose_name = gettext_lazy("Coupons and campaigns")
