"""Merchant campaigns through the merchant API, under /api/v1/campaigns/."""

from django.urls import path

urlpatterns: list = []
