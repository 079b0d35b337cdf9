"""PostgreSQL stopped under a running camera worker (`manage.py run_cameras`): the worker keeps
reading and recognising, the appearances decided during the outage are written when the database
is back, with no duplicate, and it goes on without a restart. On a throw-away cluster of its own."""

from __future__ import annotations

import datetime as dt
import sys
import time

import psycopg
import pytest

from face_engine.bench.scene import OBAMA_1, Entry, build_scene
from tests.processes import Process, Processes, manage, service_env, wait_for

pytestmark = [pytest.mark.services, pytest.mark.slow]
OUTAGE = 12.0  # seconds; the video brings a new appearance every 8 s



def rows(url: str, sql: str) -> list[tuple]:
    with psycopg.connect(url, connect_timeout=3) as connection:
        return connection.execute(sql).fetchall()


def test_events_decided_while_the_database_is_down_are_written_when_it_is_back(cluster, tmp_path):
    video = tmp_path / "visits.mp4"  # looped: Obama walks in at 1 s, stays 1.5 s, leaves; 8 s in all
    build_scene(video, script=[Entry(OBAMA_1, 1.0, 1.5, "left", 120, slide=0.4)], width=640, height=360, duration=8)
    url = cluster.createdb("facerec_cameras")
    env = service_env(DATABASE_URL=url, MEDIA_ROOT=str(tmp_path / "media"), DEBUG="false", LOG_FORMAT="text",
                      DJANGO_SETTINGS_MODULE="config.settings.base", CAMERA_FILE_ROOT=str(tmp_path),
                      CAMERA_LEASE_SECONDS="3", CAMERA_OPEN_TIMEOUT="2")
    manage(env, "migrate", "--noinput")
    manage(env, "enroll_folder", "tests/data/people/train")
    manage(env, "shell", "-c", "from streams.models import Camera; "
           f"Camera.objects.create(name='hall', source_url='file://{video}?loop=1')")
    started = Processes()
    try:
        worker = started.add(Process("cameras", [sys.executable, "manage.py", "run_cameras"], env,
                                     tmp_path / "cameras.log"))
        wait_for(lambda: rows(url, "select count(*) from events_event")[0][0] >= 1, timeout=120,
                 what="a first event", detail=worker.log_tail)
        frames_before = rows(url, "select frames_in from streams_camera")[0][0]

        cluster.stop("fast")
        down_at = dt.datetime.now(dt.UTC)
        time.sleep(OUTAGE)
        assert worker.alive(), worker.log_tail()
        cluster.start()
        up_at = dt.datetime.now(dt.UTC)

        def written_from_the_outage():
            return rows(url, "select count(*) from events_event where named_at between "
                             f"'{down_at.isoformat()}' and '{up_at.isoformat()}'")[0][0]

        wait_for(written_from_the_outage, timeout=60, what="the outage's events written", detail=worker.log_tail)
        wait_for(lambda: rows(url, "select frames_in from streams_camera")[0][0] > frames_before + 25 * OUTAGE,
                 timeout=30, what="the camera's status moving on", detail=worker.log_tail)
        events = rows(url, "select first_seen, last_seen, person_id from events_event order by first_seen")
        assert all(person is not None for _, _, person in events)
        for (_, last, _), (first, _, _) in zip(events, events[1:], strict=False):
            assert first > last, events  # one event per appearance: none overlaps another
        assert worker.alive(), worker.log_tail()
        log = worker.log.read_text()
        assert "database unavailable" in log or "not written" in log
        print(f"camera worker through a {OUTAGE:.0f} s outage: {len(events)} events, "
              f"{written_from_the_outage()} decided during it and written after")
    finally:
        started.stop_all()
