"""Filled in by the issue that builds it."""

urlpatterns = []
