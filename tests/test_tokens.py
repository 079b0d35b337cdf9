"""API tokens: expiry, revocation (by its owner, and by staff in the admin), inactive users, and
the rate limits on asking for one (per address, and per account from any number of addresses).
The same rules hold on the WebSockets, at connect. Real database, real cache, real ASGI app."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.test import Client
from django.utils import timezone
from rest_framework.authtoken.models import Token

from core.audit.models import AuditRecord
from tests.ws_client import Communicator

TOKEN = "/api/auth/token/"
ORIGIN = [(b"origin", b"http://testserver")]


def address() -> str:
    """A client address of its own per test: the limits' counters live in the cache, which may
    outlive a test run (Redis)."""
    return f"2001:db8::{uuid.uuid4().hex[:4]}:{uuid.uuid4().hex[:4]}"


def new_user(**extra):
    name = f"u-{uuid.uuid4().hex[:10]}"
    return get_user_model().objects.create_user(name, password="right-pass-123", **extra)


def ask(username: str, password: str, remote: str):
    return Client(REMOTE_ADDR=remote).post(TOKEN, {"username": username, "password": password},
                                           content_type="application/json")


def with_key(key: str, scheme: str = "Bearer") -> Client:
    return Client(HTTP_AUTHORIZATION=f"{scheme} {key}")


def error(response, status: int, code: str) -> str:
    assert response.status_code == status, (response.status_code, response.content)
    body = response.json()
    assert body["success"] is False and body["error"]["code"] == code, body
    return body["error"]["message"]


def backdate(user, **age) -> None:
    Token.objects.filter(user=user).update(created=timezone.now() - timedelta(**age))


# ---- issuing and expiry --------------------------------------------------------------------------

def test_a_token_comes_with_its_expiry_and_stays_the_same_until_then(db, settings):
    settings.TOKEN_TTL_HOURS = 48
    user, remote = new_user(), address()
    first = ask(user.username, "right-pass-123", remote)
    assert first.status_code == 200, first.content
    body = first.json()
    token = Token.objects.get(user=user)
    assert body["token"] == token.key
    assert body["expires"] == (token.created + timedelta(hours=48)).isoformat().replace("+00:00", "Z")
    assert ask(user.username, "right-pass-123", remote).json()["token"] == token.key


@pytest.mark.parametrize("scheme", ["Bearer", "Token"])
def test_an_expired_token_is_a_401_saying_so_and_a_new_one_replaces_it(db, settings, scheme):
    settings.TOKEN_TTL_HOURS = 24
    user = new_user()
    key = Token.objects.create(user=user).key
    assert with_key(key, scheme).get("/api/people/").status_code == 200

    backdate(user, hours=24, seconds=1)

    response = with_key(key, scheme).get("/api/people/")
    assert "expired" in error(response, 401, "authentication_failed")
    assert response["WWW-Authenticate"] == "Bearer"
    renewed = ask(user.username, "right-pass-123", address()).json()["token"]
    assert renewed != key
    assert with_key(renewed, scheme).get("/api/people/").status_code == 200
    error(with_key(key, scheme).get("/api/people/"), 401, "authentication_failed")


def test_a_ttl_of_zero_means_tokens_never_expire(db, settings):
    settings.TOKEN_TTL_HOURS = 0
    user = new_user()
    key = Token.objects.create(user=user).key
    backdate(user, days=3650)
    assert with_key(key).get("/api/people/").status_code == 200
    assert ask(user.username, "right-pass-123", address()).json() == {"token": key, "expires": None}


def test_bad_settings_stop_the_process():
    from config.settings.base import _check_token_rate

    _check_token_rate("TOKEN_RATE_PER_ACCOUNT", "10/hour")
    _check_token_rate("TOKEN_RATE_PER_ACCOUNT", "0")
    for value in ("10", "ten/hour", "10/fortnight", "-1/hour"):
        with pytest.raises(ImproperlyConfigured, match="TOKEN_RATE_PER_ACCOUNT"):
            _check_token_rate("TOKEN_RATE_PER_ACCOUNT", value)


# ---- revocation ----------------------------------------------------------------------------------

def test_the_caller_revokes_its_own_token_and_it_is_refused_at_once(db):
    user, other = new_user(), new_user()
    key, other_key = (Token.objects.create(user=u).key for u in (user, other))

    response = with_key(key).delete(TOKEN)

    assert response.status_code == 204 and response.content == b""
    assert "not valid" in error(with_key(key).get("/api/people/"), 401, "authentication_failed")
    error(with_key(key).delete(TOKEN), 401, "authentication_failed")
    assert with_key(other_key).get("/api/people/").status_code == 200  # only the caller's
    record = AuditRecord.objects.get(action="token.revoke")
    assert record.actor == user and record.target_ids == [user.pk] and record.details == {"via": "api"}
    new_key = ask(user.username, "right-pass-123", address()).json()["token"]
    assert new_key != key and with_key(new_key).get("/api/people/").status_code == 200


def test_revoking_needs_a_credential(db):
    error(Client().delete(TOKEN), 401, "not_authenticated")
    error(Client().get(TOKEN), 405, "method_not_allowed")


def test_a_stale_authorization_header_does_not_stop_asking_for_a_token(db):
    user = new_user()
    response = Client(HTTP_AUTHORIZATION="Bearer revoked-long-ago", REMOTE_ADDR=address()).post(
        TOKEN, {"username": user.username, "password": "right-pass-123"}, content_type="application/json")
    assert response.status_code == 200 and response.json()["token"]


def test_staff_revoke_anyones_token_in_the_admin_and_never_see_the_key(db, browser):
    user = new_user()
    key = Token.objects.create(user=user).key
    listing = browser.get("/admin/authtoken/tokenproxy/")
    assert listing.status_code == 200
    page = listing.content.decode()
    assert user.username in page and key[:6] in page and key not in page

    response = browser.post(f"/admin/authtoken/tokenproxy/{user.pk}/delete/", {"post": "yes"})

    assert response.status_code == 302
    assert not Token.objects.filter(user=user).exists()
    error(with_key(key).get("/api/people/"), 401, "authentication_failed")
    assert AuditRecord.objects.get(action="token.revoke").details == {"via": "admin"}


def test_an_inactive_users_token_and_password_are_refused(db):
    user = new_user()
    key = Token.objects.create(user=user).key
    user.is_active = False
    user.save()
    assert "inactive" in error(with_key(key).get("/api/people/"), 401, "authentication_failed")
    error(ask(user.username, "right-pass-123", address()), 400, "invalid_credentials")


# ---- the WebSockets --------------------------------------------------------------------------------

def refusal(route: str, key: str) -> tuple[dict, dict]:
    from config.asgi import application

    async def body():
        communicator = Communicator(application, f"{route}?token={key}", headers=ORIGIN)
        assert await communicator.connect(timeout=10)
        message = await communicator.receive_json_from(timeout=10)
        close = await communicator.receive_output(timeout=10)
        await communicator.wait(timeout=10)
        return message, close

    return async_to_sync(body)()


@pytest.mark.django_db(transaction=True)  # the consumers read the database from their own threads
@pytest.mark.parametrize("route", ["/ws/live/", "/ws/events/"])
def test_websockets_refuse_expired_revoked_and_inactive_at_connect(settings, route):
    settings.TOKEN_TTL_HOURS = 1
    expired, revoked, inactive = new_user(), new_user(), new_user(is_active=False)
    keys = {user: Token.objects.create(user=user).key for user in (expired, revoked, inactive)}
    backdate(expired, hours=2)
    assert with_key(keys[revoked]).delete(TOKEN).status_code == 204

    for user, words in ((expired, "expired"), (revoked, "not valid"), (inactive, "inactive")):
        message, close = refusal(route, keys[user])
        assert message["type"] == "error" and message["code"] == "authentication_failed", message
        assert words in message["message"]
        assert close == {"type": "websocket.close", "code": 4401}
    # Not a key at all: refused the same way, not a crash in the database.
    message, close = refusal(route, "%00%ff" + "x" * 500)
    assert message["code"] == "authentication_failed" and close["code"] == 4401


# ---- the rate limits ---------------------------------------------------------------------------

def test_guessing_one_accounts_password_from_many_addresses_is_stopped(db, settings):
    settings.TOKEN_RATE_PER_ACCOUNT = "3/hour"
    user, bystander = new_user(), new_user()
    for _ in range(3):
        error(ask(user.username, "wrong", address()), 400, "invalid_credentials")

    # Refused before the password is looked at: the right one is no help, and says nothing.
    response = ask(user.username, "right-pass-123", address())

    assert "Too many failed attempts" in error(response, 429, "throttled")
    assert 3000 < int(response["Retry-After"]) <= 3600
    error(ask(user.username.upper(), "wrong", address()), 429, "throttled")  # the same account, cased otherwise
    assert ask(bystander.username, "right-pass-123", address()).status_code == 200
    # Tokens already issued keep working.
    key = Token.objects.create(user=user).key
    assert with_key(key).get("/api/people/").status_code == 200


def test_unknown_accounts_are_counted_like_real_ones(db, settings):
    settings.TOKEN_RATE_PER_ACCOUNT = "2/minute"
    name = f"nobody-{uuid.uuid4().hex[:8]}"
    for _ in range(2):
        error(ask(name, "guess", address()), 400, "invalid_credentials")
    error(ask(name, "guess", address()), 429, "throttled")


def test_one_address_asking_too_often_is_stopped(db, settings):
    settings.TOKEN_RATE_PER_ADDRESS = "4/minute"
    remote, user = address(), new_user()
    for _ in range(4):
        assert ask(f"someone-{uuid.uuid4().hex[:8]}", "guess", remote).status_code == 400

    response = ask(user.username, "right-pass-123", remote)

    error(response, 429, "throttled")
    assert 0 < int(response["Retry-After"]) <= 60
    # Its own X-Forwarded-For does not make a client someone else.
    spoofed = Client(REMOTE_ADDR=remote, HTTP_X_FORWARDED_FOR=address()).post(
        TOKEN, {"username": user.username, "password": "right-pass-123"}, content_type="application/json")
    error(spoofed, 429, "throttled")
    assert ask(user.username, "right-pass-123", address()).status_code == 200


def test_limits_set_to_zero_are_off(db, settings):
    settings.TOKEN_RATE_PER_ADDRESS = "0"
    settings.TOKEN_RATE_PER_ACCOUNT = "0"
    remote, user = address(), new_user()
    for _ in range(30):
        error(ask(user.username, "wrong", remote), 400, "invalid_credentials")
    assert ask(user.username, "right-pass-123", remote).status_code == 200


@pytest.mark.parametrize("payload", [
    {"username": "a" * 151, "password": "x"},
    {"username": "someone", "password": "x" * 4097},
    {"username": "some\x00one", "password": "x"},
    {"username": ["someone"], "password": "x"},
])
def test_bad_credentials_payloads_are_a_400(db, payload):
    response = Client(REMOTE_ADDR=address()).post(TOKEN, payload, content_type="application/json")
    error(response, 400, "invalid")


def test_a_lone_surrogate_in_the_username_is_a_400(db):
    body = b'{"username": "\\ud800", "password": "x"}'
    response = Client(REMOTE_ADDR=address()).post(TOKEN, body, content_type="application/json")
    error(response, 400, "invalid")
