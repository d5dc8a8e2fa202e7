from django.apps import AppConfig
from django.utils.translation import gettext_lazy


class BackofficeConfig(AppConfig):
    name = "backoffice"
    verbose_name = gettext_lazy("Back office")
