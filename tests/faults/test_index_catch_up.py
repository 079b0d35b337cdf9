"""A process cut off from the database while others write catches up when it is back: it names
the person enrolled meanwhile and never the one deleted meanwhile, by applying the change log.
Two API servers of one machine (sharing its index snapshot, production's default) on a throw-away
cluster; the second reaches it through a proxy the test cuts, so only that one loses the database."""

from __future__ import annotations

import pytest

from conftest import MISC, TRAIN
from tests.faults.proxy import CuttableProxy
from tests.processes import Api, ApiServer, Processes, manage, service_env, wait_for

pytestmark = [pytest.mark.services, pytest.mark.slow]


def test_a_process_cut_off_from_the_database_catches_up_on_the_changes_it_missed(cluster, tmp_path):
    url = cluster.createdb("facerec_catch_up")
    env = service_env(DATABASE_URL=url, MEDIA_ROOT=str(tmp_path / "media"))
    manage(env, "migrate", "--noinput")
    manage({**env, "DJANGO_SUPERUSER_PASSWORD": "fault-test-pass-1"}, "createsuperuser", "--noinput",
           "--username", "ops", "--email", "ops@example.com")
    token = manage(env, "drf_create_token", "ops").stdout.split()[2]
    proxy = CuttableProxy(cluster.port)
    started = Processes()
    try:
        a = Api(started.add(ApiServer("api-a", env, tmp_path)).wait_ready().base, token, timeout=60)
        behind = {**env, "DATABASE_URL": url.replace(f":{cluster.port}/", f":{proxy.port}/")}
        b = Api(started.add(ApiServer("api-b", behind, tmp_path)).wait_ready().base, token, timeout=60)
        obama = a.create_person("obama")
        assert a.enrol(obama, [TRAIN / "obama" / "obama.jpg"]).status_code == 201
        assert b.labels(MISC / "obama_small.jpg") == ["obama"]  # b holds its index now
        assert b.labels(TRAIN / "biden" / "biden.jpg") == ["unknown"]

        proxy.cut()
        assert b.request("GET", "/api/people/").status_code == 503  # b has lost the database
        biden = a.create_person("biden")
        assert a.enrol(biden, [TRAIN / "biden" / "biden.jpg"]).status_code == 201
        assert a.request("DELETE", f"/api/people/{obama}/").status_code == 204
        proxy.restore()

        wait_for(lambda: b.request("GET", "/api/health/").status_code == 200, timeout=60,
                 what="b healthy again", interval=0.5)
        assert b.labels(MISC / "obama_small.jpg") == ["unknown"]  # the deletion it missed
        assert b.labels(TRAIN / "biden" / "biden.jpg") == ["biden"]  # the enrolment it missed
        index = b.request("GET", "/api/stats/").json()["index"]
        # Caught up in place; the one rebuild allowed is the erasure's (a new shared snapshot without
        # obama's embeddings), never one for having fallen behind.
        assert index["faces"] == 1 and index["changes_applied"] >= 3, index
        assert index["rebuilds"] == 0 or index["last_rebuild_reason"] == "reload asked for", index
        assert '"status": 500' not in started.items[1].log.read_text()
    finally:
        started.stop_all()
        proxy.close()
