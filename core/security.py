"""Security headers of the HTML pages (the admin, /live/, /dashboard/, the API's Swagger page).

A Content-Security-Policy that allows only this origin's scripts: none of the pages runs inline
script (their settings travel as JSON in `json_script` tags, the Swagger page loads its setup from
a URL), so an injected `<script>` or event attribute does not run. Inline styles stay allowed:
Swagger UI and the admin set style attributes. The live page needs the camera (Permissions-Policy)."""

from __future__ import annotations

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data: blob:",
    "media-src 'self' blob:",
    "connect-src 'self'",  # fetch() and the WebSockets of this origin (CSP 3: 'self' covers ws/wss)
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])
PERMISSIONS_POLICY = "camera=(self), microphone=(), geolocation=(), payment=(), usb=()"


class SecurityHeadersMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if response.get("Content-Type", "").startswith("text/html"):
            response.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
            response.setdefault("Permissions-Policy", PERMISSIONS_POLICY)
        response.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        return response
