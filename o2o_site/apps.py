from django.contrib.admin.apps import AdminConfig


class MallAdminConfig(AdminConfig):
    """The Django admin with the mall's own site (o2o_site.admin.MallAdminSite) as admin.site."""

    default_site = "o2o_site.admin.MallAdminSite"
