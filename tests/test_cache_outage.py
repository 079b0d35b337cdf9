"""A Redis outage slows nothing down and breaks nothing: the index version falls back to the
database, throttles let requests through, and health says the cache is down (200, degraded)."""

import pytest

from conftest import MISC, TRAIN, upload

# Nothing listens on port 1: every cache call fails at once, as when Redis is down.
DEAD_REDIS = {"default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": "redis://127.0.0.1:1/0",
                          "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 1.0}}}


@pytest.fixture
def redis_down(settings):
    settings.CACHES = DEAD_REDIS


def test_recognition_works_while_redis_is_down(engine, user_client, redis_down, db):
    from people.services import face_enroll, person_create

    person = person_create(name="obama")
    face_enroll(person=person, uploads=[upload(TRAIN / "obama" / "obama.jpg")])
    response = user_client.post("/api/faces/recognize/", {"image": upload(MISC / "obama_small.jpg")})
    assert response.status_code == 200, response.content
    assert [face["label"] for face in response.json()["faces"]] == ["obama"]

    # A write is seen on the next request: the version is read from the database.
    person_two = person_create(name="biden")
    face_enroll(person=person_two, uploads=[upload(TRAIN / "biden" / "biden.jpg")])
    response = user_client.post("/api/faces/recognize/", {"image": upload(MISC / "biden.jpg")})
    assert [face["label"] for face in response.json()["faces"]] == ["biden"]


def test_health_reports_the_cache_down_but_stays_in_rotation(anon_client, redis_down, db):
    response = anon_client.get("/api/health/")
    assert response.status_code == 200  # the node still serves: a load balancer keeps it
    body = response.json()
    assert body["status"] == "degraded" and body["cache"] is False and body["database"] is True


@pytest.mark.services
def test_the_index_version_travels_through_redis(settings, db):
    """With the real Redis as the cache, a published version is what every process reads."""
    from django.core.cache import cache

    from core.index.log import CACHE_KEY, _publish, current_index_token

    settings.CACHES = {"default": {**DEAD_REDIS["default"], "LOCATION": "redis://127.0.0.1:6379/14"}}
    cache.delete(CACHE_KEY)
    first = current_index_token()
    assert first.startswith("db-") and cache.get(CACHE_KEY) == first.partition("/")[0]
    _publish()
    assert cache.get(CACHE_KEY).startswith("c-") and current_index_token() != first
    cache.delete(CACHE_KEY)


@pytest.mark.services
def test_a_write_the_cache_missed_is_seen_within_the_db_check_interval(settings, db):
    """A version bump that never reached Redis (it was down at commit time) changes every
    process's token at the next database check, not only at the next published write."""
    from django.core.cache import cache

    from core.index.log import CACHE_KEY, current_index_token
    from core.models import IndexLogState

    settings.CACHES = {"default": {**DEAD_REDIS["default"], "LOCATION": "redis://127.0.0.1:6379/14"}}
    cache.set(CACHE_KEY, "c-steady", timeout=None)
    try:
        settings.INDEX_DB_CHECK_SECONDS = 3600
        before = current_index_token()
        IndexLogState.objects.update_or_create(pk=1, defaults={"seq": 10_000})  # bumped, never published
        assert current_index_token() == before  # not checked again yet: the cache's token is unchanged
        settings.INDEX_DB_CHECK_SECONDS = 0
        after = current_index_token()
        assert after != before and "db-10000" in after
        assert current_index_token() == after  # stable while nothing changes
    finally:
        cache.delete(CACHE_KEY)
