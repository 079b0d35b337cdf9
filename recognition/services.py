"""Recognise and verify: engine results joined with the gallery index and people's names."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from core.audit.services import audit_record
from core.errors import ServiceError
from core.index.holder import index_cache
from core.metrics import metrics
from face_engine.matching import confidence, distance, is_match
from face_engine.types import Face as EngineFace
from face_engine.types import ImageError, ImageFaces, Match
from people.engine import analyze_for_request, checked_distance_threshold, pipeline
from people.models import Face, Gallery, Person, embedding_matrix
from unknowns.recognition import KeptFace, keep_faces

UNKNOWN = "unknown"


def checked_threshold(value: float | None) -> float:
    """The threshold to use: ``value`` or FACE_MATCH_THRESHOLD. The confidence divides by it, so
    anything but a finite number in (0, 2] is refused here too, whoever the caller (the API's
    serializers refuse it first, with the same words)."""
    return checked_distance_threshold(value, default=pipeline().settings.match_threshold)


def safe_confidence(d: float, threshold: float) -> float:
    """face_engine's confidence, never dividing by zero nor answering NaN (JSON has no NaN)."""
    if not (threshold > 0 and math.isfinite(d)):
        return 1.0 if d <= 0 else 0.0
    return confidence(d, threshold)


@dataclass(frozen=True)
class RecognizeOptions:
    match_count: int = 5
    threshold: float | None = None
    return_all_matches: bool = False
    gallery: Gallery | None = None
    keep: str = "none"  # "none" | "unknown" | "all": faces kept as sightings (unknowns.recognition)

    def resolved_threshold(self) -> float:
        return checked_threshold(self.threshold)


def _match_dict(match: Match, names: dict[int, str], threshold: float) -> dict:
    return {
        "face_id": match.face_id,
        "person_id": match.person_id,
        "person_name": names.get(match.person_id, ""),
        "distance": round(match.distance, 6),
        "is_match": is_match(match.distance, threshold),
        "confidence": round(safe_confidence(match.distance, threshold), 6),
    }


def _face_dict(face: EngineFace, matches: list[Match], names: dict[int, str],
               options: RecognizeOptions, threshold: float) -> dict:
    entries = [_match_dict(m, names, threshold) for m in matches]
    accepted = [e for e in entries if e["is_match"]]
    shown = entries if options.return_all_matches else accepted
    top = accepted[0] if accepted else None
    box = face.box.as_dict()
    return {
        "box": box,  # the name every other answer uses (enrolment, the WebSockets)
        "bbox": box,  # the seed's documented name, kept for the clients that read it

        "detection_score": round(face.score, 4),
        "landmarks": [[round(x, 1), round(y, 1)] for x, y in face.landmarks],
        "label": top["person_name"] if top else UNKNOWN,
        "top_match": top,
        "matches": shown,
        "total_matches_found": len(accepted),
    }


def recognize_images(
    blobs: Sequence[bytes], options: RecognizeOptions, *, action: str = "recognition.recognize",
    actor=None, request_id: str = "",
) -> list[dict | ImageError]:
    """Recognise every face of every image, as one engine batch; a bad image fails alone.

    Leaves one audit record, ``action`` ("recognition.recognize" or "recognition.batch"), naming
    the people recognised.
    """
    threshold = options.resolved_threshold()
    results = analyze_for_request(blobs)  # batched with other requests' images; 503 when overloaded
    index = index_cache.get()
    good = [r for r in results if isinstance(r, ImageFaces)]
    queries = [face.embedding for r in good for face in r.faces]
    start = time.perf_counter()
    found = index.search(np.asarray(queries, dtype=np.float32), options.match_count,
                         gallery_id=options.gallery.pk if options.gallery else None) if queries else []
    search_ms = (time.perf_counter() - start) * 1000.0
    person_ids = {m.person_id for matches in found for m in matches}
    names = dict(Person.objects.filter(pk__in=person_ids).values_list("id", "name"))

    out: list[dict | ImageError] = []
    kept: list[KeptFace] = []
    cursor = 0
    for image_index, result in enumerate(results):
        if isinstance(result, ImageError):
            out.append(result)
            continue
        share = search_ms * len(result.faces) / len(queries) if queries else 0.0
        timings = {**result.timings_ms, "search": share}
        metrics.record(timings)
        faces = []
        for face in result.faces:
            faces.append(_face_dict(face, found[cursor], names, options, threshold))
            if options.keep != "none":
                nearest = found[cursor][0].distance if found[cursor] else None
                kept.append(KeptFace(image=image_index, face=face, answer=faces[-1], distance=nearest))
            cursor += 1
        out.append(_image_response(faces, timings))
    if options.keep != "none":
        keep_faces(blobs, kept, keep=options.keep, actor=actor)
    _audit_recognition(out, options, threshold, action=action, actor=actor, request_id=request_id)
    return out


def _audit_recognition(out: list[dict | ImageError], options: RecognizeOptions, threshold: float, *,
                       action: str, actor, request_id: str) -> None:
    faces = [face for result in out if isinstance(result, dict) for face in result["faces"]]
    matched = [face["top_match"]["person_id"] for face in faces if face["top_match"]]
    audit_record(
        actor=actor, action=action, target_type="person", target_ids=sorted(set(matched)),
        request_id=request_id,
        details={
            "images": len(out),
            "failed_images": sum(1 for result in out if isinstance(result, ImageError)),
            "faces": len(faces),
            "matched_person_ids": matched,  # one per recognised face, largest face first
            "unknown": len(faces) - len(matched),
            "gallery_id": options.gallery.pk if options.gallery else None,
            "threshold": threshold,
        },
    )


def _image_response(faces: list[dict], timings: dict[str, float]) -> dict:
    largest = faces[0] if faces else None
    if largest is None:
        message = "No face was found in the image."
    else:
        known = sum(1 for f in faces if f["top_match"])
        message = f"{len(faces)} face(s) found, {known} recognised."
    return {
        "success": True,
        "message": message,
        "top_match": largest["top_match"] if largest else None,
        "top_matches": largest["matches"] if largest else [],
        "total_matches_found": largest["total_matches_found"] if largest else 0,
        "faces": faces,
        "timings_ms": {k: round(v, 3) for k, v in timings.items()},
    }


def _largest_embedding(data: bytes, what: str) -> np.ndarray:
    """The largest face's verify embedding (``probe_embedding``: FACE_VERIFY_JITTERS), on both
    sides of a pair and on the image's side against a person, whose faces were enrolled as jittered
    means already. The extra embeddings are computed here, outside the shared batch, and timed as
    part of the embed stage."""
    result = analyze_for_request([data])[0]
    if isinstance(result, ImageError):
        raise ServiceError(result.code, f"{what}: {result.message}", status_code=result.status)
    if result.largest is None:
        raise ServiceError("no_face", f"{what}: no face was found in the image.", status_code=422)
    start = time.perf_counter()
    embedding = pipeline().probe_embedding(result.largest)
    extra_ms = (time.perf_counter() - start) * 1000.0
    metrics.record({**result.timings_ms, "embed": result.timings_ms.get("embed", 0.0) + extra_ms})
    return embedding


def verify(*, image_a: bytes, image_b: bytes | None = None, person: Person | None = None,
           threshold: float | None = None, actor=None, request_id: str = "") -> dict:
    """Same person? Two images (largest face of each), or an image against a person's faces.

    An answer leaves an audit record; a refusal (no face, nothing to compare with) leaves none.
    """
    limit = checked_threshold(threshold)
    probe = _largest_embedding(image_a, "image_a" if image_b is not None else "image")
    if image_b is not None:
        d = distance(probe, _largest_embedding(image_b, "image_b"))
        face_id = None
    else:
        assert person is not None
        rows = list(Face.objects.filter(person=person, status=Face.Status.ENCODED)
                    .values_list("id", "embedding"))
        if not rows:
            raise ServiceError("no_encoded_faces", f"{person.name} has no encoded face to compare with.",
                               status_code=422)
        matrix = embedding_matrix([e for _, e in rows])
        dists = np.linalg.norm(matrix - probe, axis=1)
        best = int(np.argmin(dists))
        d, face_id = float(dists[best]), rows[best][0]
    body = {
        "success": True,
        "distance": round(d, 6),
        "is_match": is_match(d, limit),
        "confidence": round(safe_confidence(d, limit), 6),
        "threshold": limit,
    }
    if person is not None:
        body.update({"person_id": person.pk, "person_name": person.name, "face_id": face_id})
    audit_record(actor=actor, action="recognition.verify", target_type="person" if person else "",
                 target_ids=[person.pk] if person else [], request_id=request_id,
                 details={"mode": "person" if person else "pair", "is_match": body["is_match"],
                          "face_id": face_id, "threshold": limit})
    return body
