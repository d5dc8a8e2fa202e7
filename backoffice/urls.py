"""The tenants' admin (/merchant/): an instance of Django's admin application, so its
templates' {% url 'admin:…' %} resolve within it (included with namespace "merchant")."""

from backoffice.merchant_site import site

app_name = "admin"
urlpatterns = site.get_urls()
