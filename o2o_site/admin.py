"""The mall staff's console: the Django admin site, in the mall's name.

Every app registers on ``admin.site`` as usual; INSTALLED_APPS names
``o2o_site.apps.MallAdminConfig``, which makes this class that site.
"""

from django.contrib import admin
from django.utils.translation import gettext_lazy


class MallAdminSite(admin.AdminSite):
    site_header = gettext_lazy("Big membership · mall console")
    site_title = gettext_lazy("Big membership")
    index_title = gettext_lazy("Overview")
    # "View site": the shoppers' pages (the root URL belongs to the bots' endpoints).
    site_url = "/m/"
