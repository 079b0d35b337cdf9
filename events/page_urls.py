"""HTML pages of the events app, included at the site root."""

from django.urls import path

from events.views import dashboard_page

urlpatterns = [
    path("dashboard/", dashboard_page, name="dashboard"),
]
