from django.apps import AppConfig
from django.utils.translation import gettext_lazy


class MembersConfig(AppConfig):
    name = "members"
    verbose_name = gettext_lazy("Membership and points")
