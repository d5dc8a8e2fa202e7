from django.apps import AppConfig
from django.utils.translation import gettext_lazy


class PaymentsConfig(AppConfig):
    name = "payments"
    verbose_name = gettext_lazy("Sales and payments")
