"""The webhooks API (staff only) and admin: subscriptions' validation and their SSRF refusal, the
delivery log, the test ping and a redelivery to a real receiver on 127.0.0.1; the SSRF address
rule itself and the sender's total time bound."""

from __future__ import annotations

import socket
import threading
import time
import uuid

import pytest

from core.audit.models import AuditRecord
from people.models import Person
from streams.models import Camera
from tests import webhook_support as support
from tests.webhook_support import event, subscribe
from webhooks import backends, sender, ssrf
from webhooks.models import Delivery, Subscription
from webhooks.signing import verify_signature

fast_webhooks, receivers = support.fast_webhooks, support.receivers  # the fixtures, used here
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast_webhooks")]
HOOKS = "/api/webhooks/"


def error(response, status: int, field: str | None = None) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert body["success"] is False
    if field is not None:
        assert body["error"]["code"] == "invalid" and field in body["error"]["details"], body
        assert body["error"]["message"].startswith(f"{field}: ")
    return body["error"]


# ---- permissions -----------------------------------------------------------------------------

def test_only_staff_may_use_the_api(anon_client, user_client, receivers):
    subscription = subscribe(receivers().url)
    delivery = Delivery.objects.create(subscription=subscription, phase="ping", payload={})
    calls = [("get", HOOKS), ("post", HOOKS), ("get", f"{HOOKS}{subscription.pk}/"),
             ("patch", f"{HOOKS}{subscription.pk}/"), ("delete", f"{HOOKS}{subscription.pk}/"),
             ("get", f"{HOOKS}{subscription.pk}/deliveries/"), ("post", f"{HOOKS}{subscription.pk}/test/"),
             ("post", f"{HOOKS}deliveries/{delivery.pk}/redeliver/")]
    for method, url in calls:
        assert error(getattr(anon_client, method)(url, {}, format="json"), 401)["code"] == "not_authenticated"
        assert error(getattr(user_client, method)(url, {}, format="json"), 403)["code"] == "permission_denied"
    assert Subscription.objects.count() == 1 and Delivery.objects.count() == 1


# ---- subscriptions ---------------------------------------------------------------------------

def test_create_read_change_and_delete_a_subscription(staff_client, staff, receivers):
    url = receivers().url
    ada = Person.objects.create(name="Ada")
    door = Camera.objects.create(name="door", source_url="file://door.mp4")
    created = staff_client.post(HOOKS, {"name": "crm", "url": url}, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert len(body["secret"]) >= 40  # generated: secrets.token_urlsafe(32)
    assert (body["kinds"], body["phases"], body["active"], body["people"], body["cameras"]) == (
        ["known", "unknown"], ["opened"], True, [], [])
    assert body["created_by"] == "operator"
    pk = body["id"]
    given = staff_client.post(HOOKS, {"name": "door", "url": url, "secret": "my-own-secret-0123456789",
                                      "kinds": ["known"], "phases": ["opened", "closed"], "people": [ada.pk],
                                      "cameras": [door.pk]}, format="json").json()
    assert (given["secret"], given["people"], given["cameras"]) == ("my-own-secret-0123456789", [ada.pk], [door.pk])
    assert staff_client.get(HOOKS).json()["count"] == 2
    assert staff_client.get(f"{HOOKS}{pk}/").json()["secret"] == body["secret"]
    changed = staff_client.patch(f"{HOOKS}{pk}/", {"active": False, "people": [ada.pk], "phases": ["closed"]},
                                 format="json")
    assert changed.status_code == 200, changed.content
    assert (changed.json()["active"], changed.json()["people"], changed.json()["phases"]) == (False, [ada.pk],
                                                                                               ["closed"])
    assert changed.json()["url"] == url and changed.json()["secret"] == body["secret"]  # the rest kept
    assert staff_client.delete(f"{HOOKS}{pk}/").status_code == 204
    assert error(staff_client.get(f"{HOOKS}{pk}/"), 404)["code"] == "not_found"
    actions = list(AuditRecord.objects.filter(target_type="webhook").order_by("id").values_list("action", flat=True))
    assert actions == ["webhook.create", "webhook.create", "webhook.update", "webhook.delete"]
    assert not any(body["secret"] in str(r.details) or url in str(r.details) for r in AuditRecord.objects.all())


def test_bad_input_is_a_400_naming_the_field(staff_client, receivers):
    url = receivers().url
    cases = [
        ({"name": "x"}, "url"),
        ({"name": "x", "url": "ftp://127.0.0.1/hook"}, "url"),
        ({"name": "x", "url": "not a url"}, "url"),
        ({"name": "x", "url": "http://user:pw@127.0.0.1/hook"}, "url"),
        ({"name": "x", "url": "http:///nohost"}, "url"),
        ({"name": "x", "url": "http://127.0.0.1:99999/"}, "url"),
        ({"name": "x", "url": "http://no-such-host.invalid/"}, "url"),
        ({"name": "", "url": url}, "name"),
        ({"name": "x", "url": url, "kinds": []}, "kinds"),
        ({"name": "x", "url": url, "kinds": ["everyone"]}, "kinds"),
        ({"name": "x", "url": url, "kinds": "known"}, "kinds"),
        ({"name": "x", "url": url, "phases": ["updated"]}, "phases"),
        ({"name": "x", "url": url, "phases": []}, "phases"),
        ({"name": "x", "url": url, "people": [999999]}, "people"),
        ({"name": "x", "url": url, "people": ["ada"]}, "people"),
        ({"name": "x", "url": url, "cameras": [999999]}, "cameras"),
        ({"name": "x", "url": url, "secret": "short"}, "secret"),
        ({"name": "x", "url": url, "active": "maybe"}, "active"),
    ]
    for data, field in cases:
        error(staff_client.post(HOOKS, data, format="json"), 400, field)
    pk = subscribe(url).pk
    error(staff_client.patch(f"{HOOKS}{pk}/", {"kinds": []}, format="json"), 400, "kinds")
    error(staff_client.patch(f"{HOOKS}{pk}/", {"url": "gopher://x/"}, format="json"), 400, "url")
    assert Subscription.objects.count() == 1 and Subscription.objects.get().url == url


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8000/hook", "http://10.1.2.3/hook", "http://169.254.169.254/latest/meta-data/",
    "http://[::1]:8000/hook", "http://localhost:8000/hook", "https://192.168.0.10/", "http://[::ffff:127.0.0.1]/",
    "http://0.0.0.0:8000/", "http://2130706433/",
])
def test_private_addresses_are_refused_at_create(staff_client, settings, url):
    settings.WEBHOOK_ALLOW_PRIVATE = False
    refusal = error(staff_client.post(HOOKS, {"name": "x", "url": url}, format="json"), 400, "url")
    assert "Refused" in refusal["message"] and "WEBHOOK_ALLOW_PRIVATE" in refusal["message"]
    assert not Subscription.objects.exists()


def test_the_address_rule():
    refused = ["127.0.0.1", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
               "224.0.0.1", "240.0.0.1", "::1", "::", "fe80::1", "fe80::1%eth0", "fc00::1", "::ffff:10.0.0.1",
               "64:ff9b::a00:1", "2002:7f00:1::1", "255.255.255.255"]
    for address in refused:
        assert ssrf.address_refusal(address), address
    for address in ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"]:
        assert ssrf.address_refusal(address) is None, address
    assert ssrf.check_url("http://93.184.216.34/x", allow_private=False).addresses == ("93.184.216.34",)
    target = ssrf.check_url("https://[2606:4700:4700::1111]/in?q=1", allow_private=False)
    assert (target.scheme, target.host, target.port, target.path) == ("https", "2606:4700:4700::1111", 443, "/in?q=1")


# ---- deliveries: log, ping, redeliver --------------------------------------------------------

def test_ping_delivery_log_and_redeliver(staff_client, receivers):
    receiver = receivers([500, 200])
    subscription = subscribe(receiver.url, active=False)  # a ping is sent even while inactive
    ping = staff_client.post(f"{HOOKS}{subscription.pk}/test/")
    assert ping.status_code == 202 and ping.json()["phase"] == "ping" and ping.json()["state"] == "pending"
    backends.wait_idle(10)
    first, second = receiver.wait_for(2)
    assert first.headers["X-Facerec-Event"] == "ping" and first.json()["type"] == "ping"
    assert verify_signature(subscription.secret, second.headers["X-Facerec-Signature"], second.body)
    log = staff_client.get(f"{HOOKS}{subscription.pk}/deliveries/").json()
    assert log["count"] == 1
    [entry] = log["results"]
    assert (entry["id"], entry["state"], entry["attempts"], entry["last_status_code"]) == (
        ping.json()["id"], "delivered", 2, 200)
    assert [a["status_code"] for a in entry["attempt_log"]] == [500, 200] and entry["last_latency_ms"] >= 0
    again = staff_client.post(f"{HOOKS}deliveries/{entry['id']}/redeliver/")
    assert again.status_code == 202 and again.json()["id"] != entry["id"]
    backends.wait_idle(10)
    third = receiver.wait_for(3)[2]
    assert third.body == first.body and third.headers["X-Facerec-Delivery"] == again.json()["id"]
    delivered = staff_client.get(f"{HOOKS}{subscription.pk}/deliveries/", {"state": "delivered"}).json()
    assert delivered["count"] == 2
    assert staff_client.get(f"{HOOKS}{subscription.pk}/deliveries/", {"state": "failed"}).json()["count"] == 0
    error(staff_client.get(f"{HOOKS}{subscription.pk}/deliveries/", {"state": "lost"}), 400, "state")
    assert error(staff_client.post(f"{HOOKS}deliveries/{uuid.uuid4()}/redeliver/"), 404)["code"] == "not_found"
    assert error(staff_client.post(f"{HOOKS}999999/test/"), 404)["code"] == "not_found"


def test_an_inactive_subscription_gets_no_events_and_its_pending_deliveries_stop(receivers):
    receiver = receivers()
    subscription = subscribe(receiver.url)
    Subscription.objects.filter(pk=subscription.pk).update(active=False)
    from webhooks.selectors import routes_changed

    routes_changed()
    event()
    backends.wait_idle(10)
    assert not Delivery.objects.exists()
    # A delivery queued while it was active is not sent once it is not.
    pending = Delivery.objects.create(subscription=subscription, event_uid=uuid.uuid4(), phase="opened",
                                      payload={"type": "event"}, next_attempt_at=subscription.created_at)
    backends.dispatch(pending.pk)
    backends.wait_idle(10)
    pending.refresh_from_db()
    assert pending.state == "failed" and "inactive" in pending.last_error and receiver.requests == []


# ---- the sender's total time bound -----------------------------------------------------------

def test_a_receiver_trickling_its_answer_is_cut_at_the_timeout():
    """Each byte comes well within a per-read timeout, but the answer would take seconds: the
    attempt's total bound cuts it (without it the 200 at the end would be read)."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def serve():
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 40:
                if stop.is_set():
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return
                time.sleep(0.1)
            conn.sendall(b"\r\nContent-Length: 0\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    target = ssrf.Target("http", "127.0.0.1", port, "/", ("127.0.0.1",))
    try:
        response = sender.post(target, b"{}", {"Content-Type": "application/json"}, timeout=0.5)
    finally:
        stop.set()
        listener.close()
    assert response.status_code is None and response.error == "timed out after 0.5 s"


# ---- admin -----------------------------------------------------------------------------------

def test_admin_pages_render_and_refuse_a_private_url(browser, receivers, settings):
    receiver = receivers()
    subscription = subscribe(receiver.url)
    delivery = Delivery.objects.create(subscription=subscription, phase="ping", payload={"type": "ping"},
                                       state="failed", attempts=3, last_status_code=500, last_error="HTTP 500: boom",
                                       last_latency_ms=12.5)
    for url in ["/admin/webhooks/subscription/", "/admin/webhooks/subscription/add/",
                f"/admin/webhooks/subscription/{subscription.pk}/change/", "/admin/webhooks/delivery/",
                "/admin/webhooks/delivery/?state__exact=failed", f"/admin/webhooks/delivery/{delivery.pk}/change/"]:
        response = browser.get(url)
        assert response.status_code == 200, url
    listing = browser.get("/admin/webhooks/delivery/").content.decode()
    assert "HTTP 500: boom" in listing and "12.5" in listing
    settings.WEBHOOK_ALLOW_PRIVATE = False
    form = {"name": "internal", "url": "http://169.254.169.254/", "secret": "a-long-enough-secret-123",
            "active": "on", "kinds": ["known"], "phases": ["opened"]}
    refused = browser.post("/admin/webhooks/subscription/add/", form)
    assert refused.status_code == 200 and "Refused" in refused.content.decode()
    assert Subscription.objects.count() == 1
    settings.WEBHOOK_ALLOW_PRIVATE = True
    added = browser.post("/admin/webhooks/subscription/add/", {**form, "url": receiver.url})
    assert added.status_code == 302 and Subscription.objects.get(name="internal").kinds == ["known"]
    assert AuditRecord.objects.filter(action="webhook.create", actor_name="site-admin").count() == 1
    # The redeliver action: a new delivery of the same payload, sent.
    action = browser.post("/admin/webhooks/delivery/", {"action": "redeliver", "_selected_action": [str(delivery.pk)]})
    assert action.status_code == 302
    backends.wait_idle(10)
    assert receiver.wait_for(1)[0].json() == {"type": "ping"}
    assert Delivery.objects.filter(state="delivered").count() == 1


def test_control_characters_in_the_url_are_refused():
    """DEL too: http.client would refuse it only at delivery, after the subscription was accepted."""
    for url in ("http://93.184.216.34/a\x7fb", "http://93.184.216.34/a\x00b", "http://93.184.216.34/a b"):
        with pytest.raises(ssrf.UnsafeURL, match="control characters"):
            ssrf.parse_url(url)
