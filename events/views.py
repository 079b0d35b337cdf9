"""The /dashboard/ page: recognition events and camera states as they happen (ws/events/)."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET


@require_GET
@login_required  # settings.LOGIN_URL; the feed and the crops authenticate with the same session
def dashboard_page(request):
    config = {
        "wsPath": "/ws/events/",
        "camerasUrl": reverse("camera-list"),
        "galleriesUrl": reverse("gallery-list"),
        "backlog": 30,
    }
    return render(request, "events/dashboard.html", {"dashboard_config": config})
