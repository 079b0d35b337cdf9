"""Who may call what: the declared rule for every route of the URL configuration.

tests/test_authz_matrix.py walks the URL configuration and checks every route × method × identity
against this table; a route without a rule here fails that test. A method a route does not name
is not allowed: no identity may get past it (401, 403 or 405).

Levels:
- OPEN: anyone; the route reads no credential (a stale or wrong token does not matter).
- ANYONE: anyone, but a credential that is sent is checked (a revoked or expired token is a 401).
- USER: any active user (API token or session); anonymous 401.
- STAFF: staff only; anonymous 401, a user 403.
- SIGNED_IN: an HTML page for any signed-in user (session); others are sent to the sign-in page.
- METRICS: the Prometheus token (METRICS_TOKEN) or an address in METRICS_ALLOWED_NETWORKS only;
  an API token is not a metrics token (401), no credential from elsewhere is a 403.
Every route under ADMIN_PREFIX is the Django admin's: staff with a session only (others are sent
to the admin's sign-in page; an API token does not count there).
"""

from __future__ import annotations

from dataclasses import dataclass

OPEN, ANYONE, USER, STAFF, SIGNED_IN, METRICS = "open", "anyone", "user", "staff", "signed in", "metrics"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
ADMIN_PREFIX = "admin/"


@dataclass(frozen=True)
class Rule:
    methods: dict[str, str]  # method → level; the others are not allowed
    pk: str | None = None  # which row's id fills the route's <pk>
    query: str = ""  # what a request needs besides (the matrix calls each route with it)
    note: str = ""

    def level(self, method: str) -> str | None:
        return self.methods.get(method)


RULES: dict[str, Rule] = {
    # Tokens: asking for one takes a password; revoking takes the token (or a session).
    "api/auth/token/": Rule({"POST": OPEN, "DELETE": USER}, note="POST: password, rate limited; DELETE: revoke own"),
    "api/health/": Rule({"GET": OPEN}, note="load balancers"),
    "api/stats/": Rule({"GET": USER}),
    "api/galleries/": Rule({"GET": USER, "POST": STAFF}),
    "api/galleries/<int:pk>/": Rule({"GET": USER, "PUT": STAFF, "PATCH": STAFF, "DELETE": STAFF}, pk="gallery"),
    "api/people/": Rule({"GET": USER, "POST": STAFF}),
    "api/people/duplicates/": Rule({"GET": STAFF}, note="pairs of people whose faces match"),
    "api/people/<int:pk>/": Rule({"GET": USER, "PUT": STAFF, "PATCH": STAFF, "DELETE": STAFF}, pk="person"),
    "api/people/<int:pk>/faces/": Rule({"GET": USER, "POST": STAFF}, pk="person", note="POST enrols"),
    "api/faces/recognize/": Rule({"POST": USER}, note="reads by POST"),
    "api/faces/batch-recognize/": Rule({"POST": USER}, note="reads by POST"),
    "api/faces/verify/": Rule({"POST": USER}, note="reads by POST"),
    "api/faces/cache/": Rule({"POST": STAFF}),
    "api/faces/encodings/": Rule({"POST": STAFF}),
    "api/faces/<int:pk>/": Rule({"GET": USER, "DELETE": STAFF}, pk="face"),
    "api/faces/<int:pk>/image/": Rule({"GET": USER}, pk="face", note="the enrolled photo"),
    "api/faces/<int:pk>/thumbnail/": Rule({"GET": USER}, pk="face", note="the face thumbnail"),
    "api/jobs/<uuid:pk>/": Rule({"GET": STAFF}, pk="job"),
    "api/audit/": Rule({"GET": STAFF}, note="the audit trail"),
    "api/cameras/": Rule({"GET": USER, "POST": STAFF}),
    "api/cameras/<int:pk>/": Rule({"GET": USER, "PUT": STAFF, "PATCH": STAFF, "DELETE": STAFF}, pk="camera"),
    "api/events/": Rule({"GET": USER}),
    "api/events/<int:pk>/": Rule({"GET": USER}, pk="event"),
    "api/events/<int:pk>/crop/": Rule({"GET": USER}, pk="event", note="the event's face crop"),
    "api/webhooks/": Rule({"GET": STAFF, "POST": STAFF}, note="answers carry the signing secrets"),
    "api/webhooks/<int:pk>/": Rule({"GET": STAFF, "PATCH": STAFF, "DELETE": STAFF}, pk="webhook"),
    "api/webhooks/<int:pk>/deliveries/": Rule({"GET": STAFF}, pk="webhook"),
    "api/webhooks/<int:pk>/test/": Rule({"POST": STAFF}, pk="webhook"),
    "api/webhooks/deliveries/<uuid:pk>/redeliver/": Rule({"POST": STAFF}, pk="delivery"),
    "api/attendance/": Rule({"GET": USER}, query="?gallery=door"),
    "api/attendance/summary/": Rule({"GET": USER}, query="?gallery=door&start=2026-01-01&end=2026-01-07"),
    "api/corrections/": Rule({"POST": STAFF}, note='"not X" / "is Y" on an event or sighting'),
    "api/corrections/negatives/": Rule({"GET": STAFF}),
    "api/corrections/negatives/<int:pk>/": Rule({"DELETE": STAFF}, pk="negative", note="undo a correction"),
    "api/corrections/negatives/<int:pk>/crop/": Rule({"GET": STAFF}, pk="negative", note="the negative's face crop"),
    "api/unknowns/": Rule({"GET": USER}, note="unknown identities (clusters)"),
    "api/unknowns/<int:pk>/": Rule({"GET": USER}, pk="cluster"),
    "api/unknowns/<int:pk>/name/": Rule({"POST": STAFF}, pk="cluster", note="enrols its best faces"),
    "api/unknowns/<int:pk>/merge/": Rule({"POST": STAFF}, pk="cluster"),
    "api/unknowns/<int:pk>/split/": Rule({"POST": STAFF}, pk="cluster"),
    "api/unknowns/<int:pk>/discard/": Rule({"POST": STAFF}, pk="cluster"),
    "api/unknowns/sightings/<int:pk>/crop/": Rule({"GET": USER}, pk="sighting", note="a sighting's face crop"),
    "api/people/<int:pk>/export/": Rule({"GET": STAFF}, pk="person", note="all of a person's data, one zip"),
    "api/galleries/export/": Rule({"GET": STAFF}, note="people, photos and embeddings, one zip"),
    "api/galleries/import/": Rule({"POST": STAFF}, note="a gallery archive (multipart `archive`)"),
    "api/schema/": Rule({"GET": ANYONE}, note="OpenAPI"),
    "api/docs/": Rule({"GET": ANYONE}, note="Swagger UI"),
    "metrics": Rule({"GET": METRICS}),
    "live/": Rule({"GET": SIGNED_IN}),
    "dashboard/": Rule({"GET": SIGNED_IN}),
    # PUT: Django's form views take it as POST.
    "accounts/login/": Rule({"GET": OPEN, "POST": OPEN, "PUT": OPEN}, note="PUT is POST (Django's form views)"),
    "accounts/logout/": Rule({"POST": OPEN}, note="signs the session out"),
}

# The WebSocket routes (config.asgi): a user by API token (?token=) or session; refused at connect
# with close code 4401 otherwise.
WEBSOCKET_RULES: dict[str, str] = {
    "ws/live/": USER,
    "ws/events/": USER,
}


def markdown_table() -> str:
    """The permission table of docs/api.md, from RULES (``python -m tests.authz_rules``)."""
    who = {OPEN: "anyone", ANYONE: "anyone (a token sent must be valid)", USER: "any user", STAFF: "staff",
           SIGNED_IN: "signed-in user (session)", METRICS: "metrics token or allowed network"}
    lines = ["| route | method | who | note |", "|---|---|---|---|"]
    for route, rule in RULES.items():
        path = "/" + route.replace("<int:pk>", "{id}").replace("<uuid:pk>", "{id}")
        for method in METHODS:
            if rule.level(method):
                lines.append(f"| `{path}` | {method} | {who[rule.level(method)]} | {rule.note} |")
    lines.append("| `/admin/…` | any | staff (session) | the Django admin; model permissions apply |")
    for route, level in WEBSOCKET_RULES.items():
        lines.append(f"| `/{route}` | WebSocket | {who[level]} | token (`?token=`) or session |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())
