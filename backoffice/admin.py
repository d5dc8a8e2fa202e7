"""Mall staff make the tenants' back-office logins here (the tenants' own admin is
backoffice.merchant_site, at /merchant/)."""

from django import forms
from django.contrib import admin
from django.contrib.auth import password_validation
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.utils.translation import gettext, gettext_lazy

from backoffice import services
from backoffice.models import MerchantStaff
from core.errors import ApplicationError


class MerchantStaffCreateForm(forms.ModelForm):
    username = forms.CharField(label=gettext_lazy("username"), max_length=150)
    password1 = forms.CharField(label=gettext_lazy("password"), strip=False, widget=forms.PasswordInput)
    password2 = forms.CharField(
        label=gettext_lazy("password again"), strip=False, widget=forms.PasswordInput,
        help_text=password_validation.password_validators_help_text_html(),
    )

    class Meta:
        model = MerchantStaff
        fields = ["merchant"]

    def clean_username(self):
        username = self.cleaned_data["username"].strip()
        if get_user_model().objects.filter(username__iexact=username).exists():
            raise ValidationError(gettext("A login with this username exists already."), code="username_taken")
        return username

    def clean_merchant(self):
        merchant = self.cleaned_data["merchant"]
        if not merchant.is_active:
            raise ValidationError(gettext("Only an active merchant gets back-office logins."), code="merchant_not_active")
        return merchant

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("password1") != cleaned.get("password2"):
            self.add_error("password2", gettext("The two passwords differ."))
        elif cleaned.get("password1"):
            user = get_user_model()(username=cleaned.get("username") or "")
            try:
                password_validation.validate_password(cleaned["password1"], user)
            except ValidationError as exc:
                self.add_error("password1", exc)
        return cleaned


@admin.register(MerchantStaff)
class MerchantStaffAdmin(admin.ModelAdmin):
    """A login is made here with its password and merchant; it is never mall staff. To
    move it to another merchant, delete it and make a new one; to stop it, deactivate its
    user or delete the binding."""

    list_display = ["user", "merchant", "user_active", "created_at"]
    list_select_related = ["user", "merchant"]
    search_fields = ["user__username", "merchant__name"]
    autocomplete_fields = ["merchant"]

    @admin.display(description=gettext_lazy("active"), boolean=True)
    def user_active(self, obj):
        return obj.user.is_active

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = MerchantStaffCreateForm
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request, obj=None):
        return ["username", "password1", "password2", "merchant"] if obj is None else ["user", "merchant", "created_at"]

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else ["user", "merchant", "created_at"]

    def save_model(self, request, obj, form, change):
        if change:
            return
        try:
            staff = services.merchant_staff_create(
                merchant=form.cleaned_data["merchant"], username=form.cleaned_data["username"],
                password=form.cleaned_data["password1"],
            )
        except ApplicationError as exc:  # a race with another login of the same name
            raise ValidationError(f"{exc.code}: {exc.message}") from exc
        obj.pk, obj.user, obj.created_at = staff.pk, staff.user, staff.created_at
