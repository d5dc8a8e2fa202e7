"""Which plazas each plaza manager looks after (members.roles). Who is in which role is a
user's groups, on the user's page, which only superusers change."""

from django.contrib import admin

from members.models import StaffPlaza


@admin.register(StaffPlaza)
class StaffPlazaAdmin(admin.ModelAdmin):
    list_display = ["user", "plaza", "created_at"]
    list_select_related = ["user", "plaza"]
    list_filter = ["plaza"]
    search_fields = ["user__username", "plaza__code", "plaza__name"]
    autocomplete_fields = ["plaza"]
    fields = ["user", "plaza", "created_at"]
    readonly_fields = ["created_at"]

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "user":
            # Staff accounts only: a shopper-facing or inactive account logs into no admin.
            kwargs["queryset"] = db_field.related_model.objects.filter(is_staff=True, is_active=True).order_by("username")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)
