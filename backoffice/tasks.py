"""Scheduled work of the back office. Thin and safe to run twice."""

from backoffice.dashboards import refresh


def dashboards_refresh() -> int:
    """Rewrite the dashboards' recent days and totals (hourly). Returns the rows written."""
    return refresh.dashboards_refresh().rows
