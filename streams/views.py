"""The /live/ page: a signed-in user's webcam recognised live over the WebSocket (/ws/live/),
and a photo recognised through the HTTP API, both drawn in the browser."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_GET


@require_GET
@login_required  # settings.LOGIN_URL: a sign-in page for every user (the admin's takes staff only)
@ensure_csrf_cookie  # the page's fetch() POSTs authenticate by session, so they need the CSRF token
def live_page(request):
    # Everything the script needs, handed over as JSON (json_script) rather than written into the code.
    config = {
        "wsPath": "/ws/live/",
        "staff": request.user.is_staff,
        "user": request.user.get_username(),
        "recognizeUrl": reverse("recognize"),
        "galleriesUrl": reverse("gallery-list"),
        "peopleUrl": reverse("person-list"),
    }
    return render(request, "streams/live.html", {"live_config": config})
