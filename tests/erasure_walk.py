"""The proof of an erasure: what the service held about a person (taken before the deletion) is looked
for afterwards in every row of every model, the media folder, the recognition index (this process's
and a fresh process's) and the cache (every key of a Redis database, or the process's local cache).
Shared by tests/test_erasure.py and tests/services/test_erasure_services.py."""

from __future__ import annotations

import base64
import hashlib
import json
import pickle
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

PERSON_KEYS = {"person", "person_id", "matched_person", "matched_person_id"}
# The audit trail keeps ids and counts, never names: it is the record of the erasure itself, and its
# ids name no one once the person's row is gone. Names are still looked for there.
IDS_KEPT_IN = {"audit.auditrecord"}


@dataclass
class Trace:
    """What identifies the person's data: their id, name and external id, every embedding stored
    about them (faces, events, negatives, sightings), and their files (names and contents)."""

    pk: int
    texts: list[str]
    embeddings: set[bytes] = field(default_factory=set)
    file_names: set[str] = field(default_factory=set)
    file_hashes: set[str] = field(default_factory=set)

    def byte_forms(self) -> list[bytes]:
        forms = [text.encode() for text in self.texts]
        for blob in self.embeddings:
            forms += [blob, base64.b64encode(blob), blob.hex().encode()]
        return forms


def trace_of(person, media: Path) -> Trace:
    """Everything of ``person`` before the deletion, found through every model's foreign keys to
    Person (and the rows those point to: a cluster named to them and its sightings)."""
    from django.apps import apps
    from django.db import models

    from people.models import Person

    trace = Trace(pk=person.pk, texts=[t for t in (person.name, person.external_id) if t])
    rows = []
    for model in apps.get_models(include_auto_created=True):
        for f in model._meta.concrete_fields:
            if isinstance(f, models.ForeignKey) and f.related_model is Person:
                rows += list(model.objects.filter(**{f.attname: person.pk}))
    try:
        from unknowns.models import Sighting

        rows += list(Sighting.objects.filter(cluster__person_id=person.pk))
    except LookupError:
        pass
    for row in rows:
        for f in row._meta.concrete_fields:
            value = getattr(row, f.attname)
            if isinstance(f, models.BinaryField) and value:
                trace.embeddings.add(bytes(value))
            elif isinstance(f, models.FileField) and value:
                trace.file_names.add(str(value))
                path = media / str(value)
                if path.is_file():
                    trace.file_hashes.add(hashlib.sha256(path.read_bytes()).hexdigest())
    return trace


def _json_hits(value, trace: Trace, where: str, ids: bool) -> list[str]:
    found = []
    stack = [(value, where)]
    while stack:
        item, at = stack.pop()
        if isinstance(item, dict):
            for key, inner in item.items():
                if ids and key in PERSON_KEYS and inner == trace.pk:
                    found.append(f"{at}.{key} = the person's id")
                stack.append((inner, f"{at}.{key}"))
        elif isinstance(item, list):
            stack += [(inner, f"{at}[{i}]") for i, inner in enumerate(item)]
            if ids and at.endswith(("person_ids", "people")) and trace.pk in item:
                found.append(f"{at} lists the person's id")
        elif isinstance(item, str):
            found += [f"{at} holds {text!r}" for text in trace.texts if text in item]
            found += [f"{at} holds an embedding (base64)" for blob in trace.embeddings
                      if base64.b64encode(blob).decode() in item]
    return found


def database_hits(trace: Trace) -> list[str]:
    """Every row of every model (their through tables included), every field."""
    from django.apps import apps
    from django.db import models

    from people.models import Person

    found = []
    for model in apps.get_models(include_auto_created=True):
        if model._meta.proxy:
            continue
        label = model._meta.label_lower
        for row in model.objects.all().iterator():
            where = f"{label} {row.pk}"
            if model is Person and row.pk == trace.pk:
                found.append(f"{where}: the person's row")
            for f in model._meta.concrete_fields:
                value = getattr(row, f.attname)
                if value is None:
                    continue
                if isinstance(f, models.ForeignKey) and f.related_model is Person and value == trace.pk:
                    found.append(f"{where}: {f.name} is the person")
                elif isinstance(f, models.BinaryField) and bytes(value) in trace.embeddings:
                    found.append(f"{where}: {f.name} is one of their embeddings")
                elif isinstance(f, models.FileField) and str(value) in trace.file_names:
                    found.append(f"{where}: {f.name} is one of their files")
                elif isinstance(f, models.JSONField):
                    found += _json_hits(value, trace, f"{where}: {f.name}", ids=label not in IDS_KEPT_IN)
                elif isinstance(value, str):
                    found += [f"{where}: {f.name} holds {text!r}" for text in trace.texts if text in value]
    return found


def media_hits(trace: Trace, media: Path) -> list[str]:
    found = []
    for path in sorted(media.rglob("*")) if media.exists() else []:
        if not path.is_file():
            continue
        name = str(path.relative_to(media))
        if name in trace.file_names:
            found.append(f"media {name}: one of their files is still there")
        elif hashlib.sha256(path.read_bytes()).hexdigest() in trace.file_hashes:
            found.append(f"media {name}: a copy of one of their files")
    return found


def index_hits(trace: Trace, *, fresh_env: dict[str, str] | None = None) -> list[str]:
    """This process's index, and a fresh process's (``fresh_env``: its database), searched with each
    of their embeddings: the person never comes back."""
    import numpy as np

    from core.index.holder import index_cache

    found = []
    index = index_cache.get()
    queries = np.stack([np.frombuffer(blob, dtype="<f4") for blob in trace.embeddings]).astype(np.float32)
    returned = {m.person_id for matches in index.search(queries, k=50, negatives=False) for m in matches}
    if trace.pk in returned or trace.pk in set(index.person_ids.tolist()):
        found.append("this process's index still holds the person")
    if fresh_env is not None:
        vectors = [base64.b64encode(blob).decode() for blob in trace.embeddings]
        program = (
            "import base64, json, sys, django, numpy as np; django.setup();"
            "from core.index.holder import build_index;"
            "index = build_index(); ask = json.loads(sys.stdin.read());"
            "q = np.stack([np.frombuffer(base64.b64decode(v), dtype='<f4') for v in ask]).astype(np.float32);"
            "found = {m.person_id for ms in index.search(q, k=50, negatives=False) for m in ms};"
            "print(json.dumps(sorted(found | set(index.person_ids.tolist()))))"
        )
        done = subprocess.run([sys.executable, "-c", program], input=json.dumps(vectors), capture_output=True,
                              text=True, env=fresh_env, timeout=300, cwd=Path(__file__).resolve().parent.parent)
        assert done.returncode == 0, done.stderr[-3000:]
        fresh = json.loads(done.stdout.strip().splitlines()[-1])
        assert fresh, "the fresh process's index holds the other people"
        if trace.pk in fresh:
            found.append("a fresh process's index holds the person")
    return found


def cache_hits(trace: Trace) -> list[str]:
    """Every key of the cache's Redis database (SCAN; each value by its type), or every entry of the
    process's local memory cache."""
    from django.core.cache import cache

    forms = trace.byte_forms()
    found = []
    client = getattr(cache, "_cache", None)
    if hasattr(cache, "client") and hasattr(cache.client, "get_client"):  # django-redis
        redis = cache.client.get_client(write=False)
        for key in redis.scan_iter(count=1000):
            found += [f"redis {key!r}: {what}" for what in _redis_value_hits(redis, key, forms)]
    elif isinstance(client, dict):  # LocMemCache: pickled values
        for key, value in client.items():
            data = value if isinstance(value, bytes) else pickle.dumps(value)
            if any(form in data or form in str(key).encode() for form in forms):
                found.append(f"local cache {key!r} holds their data")
    return found


def _redis_value_hits(redis, key: bytes, forms: list[bytes]) -> list[str]:
    kind = redis.type(key).decode()
    if kind == "string":
        values = [redis.get(key) or b""]
    elif kind == "hash":
        values = [k + b"=" + v for k, v in redis.hgetall(key).items()]
    elif kind == "list":
        values = redis.lrange(key, 0, -1)
    elif kind in ("set",):
        values = list(redis.smembers(key))
    elif kind == "zset":
        values = [member for member, _ in redis.zrange(key, 0, -1, withscores=True)]
    else:
        values = []
    values.append(key)
    return [f"a {kind} holds their data" for value in values if any(form in value for form in forms)][:1]


def everything(trace: Trace, media: Path, *, fresh_env: dict[str, str] | None = None) -> list[str]:
    return database_hits(trace) + media_hits(trace, media) + index_hits(trace, fresh_env=fresh_env) + \
        cache_hits(trace)
