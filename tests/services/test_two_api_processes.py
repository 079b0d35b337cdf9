"""Two API server processes (gunicorn, production settings) behind one Redis cache, on one
database: once a delete's response has come back from one, the other never returns the deleted
person, while a client keeps recognising on it as fast as it can."""

from __future__ import annotations

import threading
import time

import pytest

from conftest import MISC, TRAIN
from tests.processes import Api, ApiServer, Processes, service_env, staff_token

CACHE = "redis://127.0.0.1:6379/11"
PEOPLE = 8  # each enrolled with the same photo: every one of them matches the probe
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.services, pytest.mark.slow]


@pytest.fixture
def two_servers(settings, tmp_path):
    import redis

    redis.Redis.from_url(CACHE).flushdb()
    started = Processes()
    try:
        env = service_env(settings, REDIS_URL=CACHE)
        servers = [started.add(ApiServer(name, env, tmp_path)) for name in ("api-a", "api-b")]
        yield [server.wait_ready() for server in servers]
    finally:
        started.stop_all()
        redis.Redis.from_url(CACHE).flushdb()


def test_a_delete_in_one_process_is_never_returned_by_the_other(two_servers):
    token = staff_token()
    a, b = (Api(server.base, token) for server in two_servers)
    names = [f"copy-{i}" for i in range(PEOPLE)]
    ids = {}
    for i, name in enumerate(names):  # enrolled alternately through A and B
        writer = a if i % 2 == 0 else b
        ids[name] = writer.create_person(name)
        # The same photo for every copy: forced over the duplicate check.
        assert writer.enrol(ids[name], [TRAIN / "obama" / "obama.jpg"], force=True).status_code == 201
    probe = MISC / "obama_small.jpg"
    assert a.names_matched(probe) == b.names_matched(probe) == set(names)

    # Readers recognise on both processes without pause; each answer is kept with the time its
    # request was sent. Deletes alternate between the processes.
    deleted_at: dict[str, float] = {}
    answers: list[tuple[str, float, set[str]]] = []
    stop = threading.Event()
    failures: list[str] = []

    def reader(api: Api, label: str) -> None:
        while not stop.is_set():
            sent = time.monotonic()
            try:
                answers.append((label, sent, api.names_matched(probe, count=PEOPLE + 1)))
            except Exception as exc:  # noqa: BLE001 - reported below
                failures.append(f"{label}: {exc!r}")

    threads = [threading.Thread(target=reader, args=(Api(s.base, token), label))
               for s, label in zip(two_servers, ("A", "B"), strict=True)]
    for thread in threads:
        thread.start()
    try:
        for i, name in enumerate(names):
            writer, other = (a, b) if i % 2 == 0 else (b, a)
            assert writer.request("DELETE", f"/api/people/{ids[name]}/").status_code == 204
            deleted_at[name] = time.monotonic()
            # At once, on the other process: never the person just deleted, nor any before.
            assert other.names_matched(probe, count=PEOPLE + 1) == set(names[i + 1:])
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=120)
    assert not failures, failures[:5]

    stale = []
    for label, sent, found in answers:
        gone = sorted(n for n in found if n in deleted_at and deleted_at[n] < sent)
        if gone:
            stale.append((label, gone))
    assert not stale, stale[:5]
    assert len(answers) >= PEOPLE, answers  # the readers really ran alongside the deletes
    assert a.labels(probe) == b.labels(probe) == ["unknown"]
    assert all(server.workers_booted() == 1 for server in two_servers)
