"""The load test's checks after the load: every async job done, every enrolled face encoded in the
database, every gunicorn worker recognising every person enrolled under load."""

from __future__ import annotations

import time
from collections import Counter

import psycopg

from loadtest.clients import Client, Results, retry_after
from loadtest.stack import Stack


def answered(client: Client, method: str, path: str, attempts: int = 10, **kwargs):
    """``client.call`` again after each 503 with Retry-After (setup and checks are not load)."""
    for _ in range(attempts - 1):
        response, took = client.call(method, path, **kwargs)
        wait = retry_after(response)
        if wait is None:
            return response, took
        time.sleep(wait)
    return client.call(method, path, **kwargs)


def wait_for_jobs(client: Client, jobs: set[str], limit: float) -> list[str]:
    problems = []
    deadline = time.monotonic() + limit
    for job in jobs:
        while True:
            body = answered(client, "GET", f"/api/jobs/{job}/")[0].json()
            if body["state"] in ("succeeded", "failed"):
                if body["state"] != "succeeded" or body["failed"]:
                    problems.append(f"job {job}: {body['state']}, {body['message']}")
                break
            if time.monotonic() > deadline:
                problems.append(f"job {job} still {body['state']} after {limit:.0f} s")
                break
            time.sleep(0.5)
    return problems


def verify(stack: Stack, client: Client, results: Results, base_faces: int) -> list[str]:
    problems = wait_for_jobs(client, {e["job"] for e in results.enrolled if e["job"]}, limit=300)
    # In the database: every enrolled face, encoded.
    with psycopg.connect(stack.database_url, connect_timeout=5) as db:
        statuses = dict(db.execute("SELECT status, count(*) FROM people_face GROUP BY status").fetchall())
    expected = base_faces + len(results.enrolled)
    if statuses != {"encoded": expected}:
        problems.append(f"faces in the database by status: {statuses}; expected {{'encoded': {expected}}}")
    print(f"database: {statuses} ({base_faces} base + {len(results.enrolled)} enrolled under load)")

    # Every worker recognises every enrolled person: batches of photos, sent on new connections
    # until each worker pid has answered each batch.
    pids = {int(a.pid) for a in results.answers if a.pid.isdigit()}
    if len(pids) < stack.args.workers:
        problems.append(f"only worker pids {sorted(pids)} answered under load; {stack.args.workers} expected")
    batches = [results.enrolled[i:i + 32] for i in range(0, len(results.enrolled), 32)]
    checked: Counter = Counter()
    for batch in batches:
        seen: set[int] = set()
        for _ in range(40):
            files = [("images", (e["photo"].name, e["photo"].read_bytes())) for e in batch]
            response, _ = answered(client, "POST", "/api/faces/batch-recognize/", files=files,
                                   headers={"Connection": "close"}, timeout=180,
                                   data={"gallery": "load", "match_count": "100", "return_all_matches": "true"})
            pid = int(response.headers.get("X-Worker-PID", "0"))
            if response.status_code != 200:
                problems.append(f"verification batch: {response.status_code} {response.text[:200]}")
                break
            for entry, result in zip(batch, response.json()["results"], strict=True):
                found = {m["person_id"] for m in result["faces"][0]["matches"]} if result.get("faces") else set()
                if entry["person"] not in found:
                    problems.append(f"worker {pid} does not recognise {entry['name']} ({entry['photo'].name})")
            seen.add(pid)
            checked[pid] += len(batch)
            if pids <= seen:
                break
        if not pids <= seen:
            problems.append(f"workers {sorted(pids - seen)} never answered a verification request")
    print(f"recognition of every enrolled person, per worker pid: {dict(checked)}")
    return problems
