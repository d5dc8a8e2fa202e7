"""The audit log on the mall's admin site (read-only; see core.audit_admin)."""

from django.contrib import admin

from core.audit_admin import AuditEntryAdmin
from core.models import AuditEntry

admin.site.register(AuditEntry, AuditEntryAdmin)
