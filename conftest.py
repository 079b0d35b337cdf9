"""Shared fixtures: real photos, real weights (loaded once per session), users and API clients."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parent / "tests" / "data"
TRAIN = DATA / "people" / "train"
TEST = DATA / "people" / "test"
MISC = DATA / "misc"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


@pytest.fixture(autouse=True)
def fresh_index_cache():
    """The process-wide index cache is keyed by the database's version counter, which restarts
    with every test database (rolled back): drop it so no test sees another test's faces."""
    try:
        from django.conf import settings
    except ImportError:  # the engine alone, on a machine without Django (the GPU machine)
        settings = None
    if settings is None or not settings.configured:  # engine-only runs with the Django plugin off
        yield
        return
    from core.index import log as index_log
    from core.index.holder import index_cache

    _finish_rebuild(index_cache)
    index_cache.clear()
    index_log._publish_owed = False  # a publication another test's dead cache refused
    yield
    _finish_rebuild(index_cache)
    index_cache.clear()


def _finish_rebuild(cache) -> None:
    """A background rebuild a test started (and the one it may have owed) ends with that test: left
    running, it would read the next test's database and swap its index in after ``clear``."""
    for _ in range(3):
        thread = cache._rebuild_thread
        if thread is None or not thread.is_alive():
            return
        thread.join(60)


@pytest.fixture(scope="session")
def engine():
    """The process's pipeline with the real dlib weights, loaded once for the whole session."""
    from django.conf import settings

    from face_engine.registry import get_pipeline

    pipeline = get_pipeline(settings.FACE_ENGINE)
    pipeline.load()
    return pipeline


def upload(path: Path | str, name: str | None = None, content_type: str = "image/jpeg"):
    from django.core.files.uploadedfile import SimpleUploadedFile

    path = Path(path)
    return SimpleUploadedFile(name or path.name, path.read_bytes(), content_type=content_type)


def make_client(user=None):
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    client = APIClient()
    if user is not None:
        token, _ = Token.objects.get_or_create(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token.key}")
    return client


@pytest.fixture
def user(db):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user("reader", password="reader-pass-123")


@pytest.fixture
def staff(db):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user("operator", password="operator-pass-123", is_staff=True)


@pytest.fixture
def browser(db):
    """A Django test client logged in as a staff superuser, as an operator using the admin."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    admin_user = get_user_model().objects.create_superuser("site-admin", "", "site-admin-pass-123")
    client = Client()
    client.force_login(admin_user)
    return client


@pytest.fixture
def anon_client():
    return make_client()


@pytest.fixture
def user_client(user):
    return make_client(user)


@pytest.fixture
def staff_client(staff):
    return make_client(staff)


def enrol_folder(root: Path = TRAIN, *, gallery=None, first_only: bool = False):
    """Enrol DIR/<person>/<photos> through the service; returns {folder name: Person}."""
    from people.services import face_enroll, person_create

    people = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        person = person_create(name=folder.name, galleries=[gallery] if gallery else [])
        photos = sorted(folder.iterdir())[:1] if first_only else sorted(folder.iterdir())
        outcomes = face_enroll(person=person, uploads=[upload(p) for p in photos])
        assert all(o.error is None for o in outcomes), [o.error.message for o in outcomes if o.error]
        people[folder.name] = person
    return people


@pytest.fixture
def enrolled(db, engine):
    """Every photo of people/train enrolled (9 photos of 5 people)."""
    return enrol_folder()


def database_env(settings) -> dict[str, str]:
    """Environment for a server or worker subprocess to use this test's database (the test SQLite
    file, or the PostgreSQL test database Django created)."""
    from urllib.parse import quote

    db = settings.DATABASES["default"]
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return {"DATABASE_URL": "", "SQLITE_PATH": db["NAME"]}
    credentials = f"{quote(db['USER'], safe='')}:{quote(db['PASSWORD'], safe='')}"
    return {"DATABASE_URL": f"postgres://{credentials}@{db['HOST']}:{db['PORT'] or 5432}/{quote(db['NAME'])}"}


@contextmanager
def celery_broker(settings, url: str):
    """Celery's client pointed at ``url`` for a block (CELERY_BROKER_URL and the app's broker), its
    connection pools dropped on the way in and out: kombu keeps pools per broker in a registry of
    its own, and a pool closed by one test would otherwise be handed to the next ("Acquire on
    closed pool")."""
    import kombu.pools

    from config.celery import app

    def drop_pools() -> None:
        kombu.pools.reset()
        app._pool = None
        app.amqp._producer_pool = None

    settings.CELERY_BROKER_URL = url
    previous = app.conf.broker_url
    app.conf.broker_url = url
    drop_pools()
    try:
        yield app
    finally:
        app.conf.broker_url = previous
        drop_pools()
