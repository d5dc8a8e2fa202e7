"""The staff dashboards on the admin index.

``refresh`` writes the summary tables (backoffice.models: DashboardDay, DashboardRefresh,
DashboardMembers, DashboardCampaign) from the apps' own tables with grouped queries, on a
schedule (backoffice.tasks.dashboards_refresh, hourly) and by hand
(``manage.py dashboards_refresh``). ``figures`` reads those tables alone for the page
and its CSV export, so the page costs the same at a thousand members or a hundred million.
"""
