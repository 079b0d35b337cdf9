"""The erasure proof (tests/test_erasure.py) on the machine's services: the database of the run
(PostgreSQL under `make test-services`) and a Redis cache of its own (database 7, flushed before
and after), whose every key is read back (SCAN) after the erasure: nothing of the person there."""

from __future__ import annotations

import os

import pytest

from conftest import TEST, database_env, upload
from tests import erasure_walk
from tests.test_erasure import SUBJECT, keeper_state, scenario

CACHE = "redis://127.0.0.1:6379/7"
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.services, pytest.mark.slow]


@pytest.fixture
def redis_cache(settings):
    import redis
    from django.core.cache import cache

    client = redis.Redis.from_url(CACHE)
    client.flushdb()
    settings.CACHES = {"default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": CACHE,
                                   "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 1.0}}}
    try:
        yield client
    finally:
        cache.close()
        client.flushdb()


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    root = tmp_path / "media"
    settings.MEDIA_ROOT = str(root)
    return root


def test_an_erasure_leaves_nothing_in_the_database_media_index_or_redis(staff_client, engine, media, settings,
                                                                         redis_cache):
    from core.audit.models import AuditRecord
    from people.models import Person

    ids = scenario(staff_client)
    assert redis_cache.dbsize() > 0, "the service uses this Redis (index version, throttling)"
    subject = Person.objects.get(pk=ids["subject"])
    trace = erasure_walk.trace_of(subject, media)
    kept = keeper_state(ids)
    # A canary: the walk reads every key and would find the person's name in one.
    redis_cache.set("canary", f"cached answer for {SUBJECT}".encode())
    assert any("canary" in hit for hit in erasure_walk.cache_hits(trace))
    redis_cache.delete("canary")

    assert staff_client.delete(f"/api/people/{subject.pk}/").status_code == 204
    fresh = {**os.environ, **database_env(settings), "DJANGO_SETTINGS_MODULE": "config.settings.base",
             "REDIS_URL": CACHE, "CACHE_URL": CACHE}
    found = erasure_walk.everything(trace, media, fresh_env=fresh)
    assert found == [], "\n".join(found)
    assert AuditRecord.objects.get(action="person.delete", target_ids=[subject.pk]).details["removed"]["faces"] == 2
    assert keeper_state(ids) == kept
    top = staff_client.post("/api/faces/recognize/", {"image": upload(TEST / "obama1.jpg")}).json()["top_match"]
    assert top is None or top["person_name"] != SUBJECT
