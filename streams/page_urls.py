"""HTML pages of the streams app, included at the site root (the API's routes are in streams.urls)."""

from django.contrib.auth import views as auth_views
from django.urls import path

from streams.views import live_page

urlpatterns = [
    path("live/", live_page, name="live"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(next_page="login"), name="logout"),
]
