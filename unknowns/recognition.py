"""Faces of a recognition request kept as sightings (the request's ``keep``): "unknown" keeps the
faces nobody was named for and clusters them; "all" keeps every face (a named one is not
clustered, unless a correction says it was nobody). Each kept face's answer gets "sighting_id",
and an unknown one "cluster"."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image

from core.errors import ServiceError
from face_engine.live.appearances import crop_around, sharpness
from face_engine.types import Face as EngineFace
from people.engine import pipeline
from unknowns.models import UnknownCluster
from unknowns.services import sighting_cluster, sighting_record

KEEP_CHOICES = ("none", "unknown", "all")


@dataclass(frozen=True)
class KeptFace:
    image: int  # which of the request's images
    face: EngineFace
    answer: dict  # the face's part of the answer: completed in place
    distance: float | None  # to the nearest person's face (None: empty gallery)


def cluster_summary(cluster: UnknownCluster | None) -> dict | None:
    if cluster is None:
        return None
    return {"id": cluster.pk, "number": cluster.number, "name": str(cluster), "state": cluster.state}


def _jpeg(image) -> bytes:
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="JPEG", quality=90)
    return out.getvalue()


def keep_faces(blobs: Sequence[bytes], faces: Sequence[KeptFace], *, keep: str, actor=None) -> None:
    if keep not in KEEP_CHOICES:
        raise ServiceError("invalid", f"keep: must be one of {', '.join(KEEP_CHOICES)}.",
                           details={"keep": [f"Must be one of {', '.join(KEEP_CHOICES)}."]})
    wanted = [f for f in faces if keep == "all" or f.answer["top_match"] is None]
    if not wanted:
        return
    user = actor.get_username() if actor is not None and getattr(actor, "is_authenticated", False) else ""
    source_name = f"api:{user}" if user else "api"
    engine = pipeline()
    decoded: tuple[int, object] | None = None  # one image at a time: decoded again, only when kept
    for kept in sorted(wanted, key=lambda f: f.image):
        if decoded is None or decoded[0] != kept.image:
            decoded = (kept.image, engine.decode(blobs[kept.image]))
        top = kept.answer["top_match"]
        face = kept.face
        sighting = sighting_record(
            embedding=face.embedding, crop_jpeg=_jpeg(crop_around(decoded[1], face.box)),  # type: ignore[arg-type]
            box=face.box.as_dict(), face_size=int(round(math.sqrt(max(1, face.box.area)))),
            sharpness=round(sharpness(face.chip), 2), source_name=source_name,
            matched_person_id=top["person_id"] if top else None,
            distance=top["distance"] if top else kept.distance,
        )
        kept.answer["sighting_id"] = sighting.pk
        if top is None:
            kept.answer["cluster"] = cluster_summary(sighting_cluster(sighting))
