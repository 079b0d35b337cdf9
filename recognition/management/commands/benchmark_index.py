"""manage.py benchmark_index [--faces N]: time loading N embeddings from the database into the index.

The rows are written inside a transaction that is rolled back at the end: the database is left
as it was. Prints the write time (for information), the load time, the time of a rebuild (what
a process does after a write) and the index search speed.
"""

from __future__ import annotations

import time

import numpy as np
from django.core.management.base import BaseCommand
from django.db import transaction

from core.index.holder import build_index
from face_engine.bench.search import synthetic_gallery
from people.engine import embedding_model_id
from people.models import Face, Person


class _Rollback(Exception):
    pass


class Command(BaseCommand):
    help = "Time loading N face embeddings from the database into the gallery index (rolled back)."

    def add_arguments(self, parser):
        parser.add_argument("--faces", type=int, default=1_000_000)
        parser.add_argument("--chunk", type=int, default=10_000)

    def handle(self, *args, faces, chunk, **options):
        _, vectors, person_ids = synthetic_gallery(faces)
        model = embedding_model_id()
        try:
            with transaction.atomic():
                start = time.perf_counter()
                people = Person.objects.bulk_create(
                    [Person(name=f"p{i}") for i in range(int(person_ids.max()) + 1)], batch_size=chunk)
                pks = np.array([p.pk for p in people], dtype=np.int64)
                for begin in range(0, faces, chunk):
                    Face.objects.bulk_create([
                        Face(person_id=int(pks[person_ids[i]]), image=f"bench/{i}.jpg", sha256=f"{i:064x}",
                             status=Face.Status.ENCODED, model=model, embedding=vectors[i].astype("<f4").tobytes())
                        for i in range(begin, min(faces, begin + chunk))
                    ], batch_size=chunk)
                written = time.perf_counter() - start
                self.stdout.write(f"wrote {faces:,} faces of {len(people):,} people in {written:.1f} s")
                start = time.perf_counter()
                index = build_index()
                loaded = time.perf_counter() - start
                self.stdout.write(f"loaded {len(index):,} embeddings from the database into the index "
                                  f"({'exact' if index.exact else 'IVF'}) in {loaded:.2f} s")
                start = time.perf_counter()
                index = build_index(index)
                self.stdout.write(f"rebuilt it after a write (the IVF cells reused) in "
                                  f"{time.perf_counter() - start:.2f} s")
                queries = vectors[:1000]
                start = time.perf_counter()
                index.search(queries, 1)
                self.stdout.write(f"searched 1,000 queries in one batch: "
                                  f"{1000 / (time.perf_counter() - start):,.0f} queries/s")
                raise _Rollback
        except _Rollback:
            self.stdout.write("rolled back: the database is unchanged")
