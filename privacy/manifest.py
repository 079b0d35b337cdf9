"""The gallery archive's manifest (manifest.json), format "facerec-gallery" version 1, and its strict
reading: every key known, every type exact, every reference resolvable. See docs/api.md, "Gallery
export and import", for the format."""

from __future__ import annotations

import base64
import binascii
import math
import re
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from rest_framework.exceptions import ValidationError

from core.errors import ServiceError
from core.parsers import loads_checked
from face_engine.types import EMBEDDING_BYTES, EMBEDDING_DIM

FORMAT = "facerec-gallery"
VERSION = 1
MANIFEST = "manifest.json"
PHOTO_PATH = re.compile(r"photos/[A-Za-z0-9_-]{1,64}\.(jpg|jpeg|png|webp|bmp|gif)")
THUMBNAIL_PATH = re.compile(r"thumbnails/[A-Za-z0-9_-]{1,64}\.jpg")
SLUG = re.compile(r"[-a-zA-Z0-9_]{1,100}")
SHA256 = re.compile(r"[0-9a-f]{64}")
BOX_MAX = 1_000_000

TOP_KEYS = {"format", "version", "model_id", "exported_at", "galleries", "people"}
GALLERY_KEYS = {"slug", "name", "description"}
PERSON_KEYS = {"ref", "name", "external_id", "metadata", "galleries", "faces"}
FACE_KEYS = {"photo", "sha256", "box", "detection_score", "embedding"}
FACE_OPTIONAL = {"thumbnail", "thumbnail_sha256", "quality"}
BOX_KEYS = ("top", "right", "bottom", "left")


@dataclass
class GalleryDef:
    slug: str
    name: str
    description: str


@dataclass
class FaceDef:
    photo: str
    sha256: str
    box: dict | None
    detection_score: float | None
    embedding: bytes | None
    thumbnail: str | None = None
    thumbnail_sha256: str | None = None
    quality: dict = field(default_factory=dict)  # checked against Face's quality_* fields on import


@dataclass
class PersonDef:
    ref: str
    name: str
    external_id: str | None
    metadata: dict
    galleries: list[str]
    faces: list[FaceDef] = field(default_factory=list)


@dataclass
class Manifest:
    model_id: str
    exported_at: str
    galleries: list[GalleryDef]
    people: list[PersonDef]

    def files(self) -> dict[str, str]:
        """Every archive path the manifest names → the sha256 its bytes must have."""
        found = {}
        for person in self.people:
            for face in person.faces:
                found[face.photo] = face.sha256
                if face.thumbnail:
                    found[face.thumbnail] = face.thumbnail_sha256
        return found


def embedding_text(blob: bytes) -> str:
    return base64.b64encode(bytes(blob)).decode("ascii")


def refused(where: str, message: str) -> ServiceError:
    return ServiceError("invalid_manifest", f"manifest.json, {where}: {message}", status_code=400,
                        details={"where": where})


def _keys(value, where: str, required: set[str], optional: set[str] = frozenset()) -> dict:
    if not isinstance(value, dict):
        raise refused(where, "must be a JSON object.")
    missing = sorted(required - value.keys())
    if missing:
        raise refused(where, f"missing {', '.join(missing)}.")
    unknown = sorted(value.keys() - required - optional)
    if unknown:
        raise refused(where, f"unknown key {unknown[0][:100]!r}.")
    return value


def _text(value, where: str, *, max_length: int, blank: bool = False) -> str:
    if not isinstance(value, str):
        raise refused(where, "must be a string.")
    if len(value) > max_length or (not blank and not value.strip()):
        raise refused(where, f"must be {'' if blank else 'non-blank, '}at most {max_length} characters.")
    return value


def _list(value, where: str) -> list:
    if not isinstance(value, list):
        raise refused(where, "must be a list.")
    return value


def _int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _box(value, where: str) -> dict | None:
    if value is None:
        return None
    box = _keys(value, where, set(BOX_KEYS))
    if not all(_int(box[key]) and 0 <= box[key] <= BOX_MAX for key in BOX_KEYS):
        raise refused(where, f"top, right, bottom and left must be whole numbers from 0 to {BOX_MAX}.")
    if box["right"] <= box["left"] or box["bottom"] <= box["top"]:
        raise refused(where, "right must be past left and bottom below top.")
    return {key: box[key] for key in BOX_KEYS}


def _embedding(value, where: str) -> bytes | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise refused(where, "must be a base64 string or null.")
    try:
        blob = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise refused(where, "is not valid base64.") from None
    if len(blob) != EMBEDDING_BYTES:
        raise refused(where, f"must decode to {EMBEDDING_BYTES} bytes ({EMBEDDING_DIM} little-endian float32), "
                             f"not {len(blob)}.")
    if not np.isfinite(np.frombuffer(blob, dtype="<f4")).all():
        raise refused(where, "holds a NaN or an infinity.")
    return blob


def _face(value, where: str) -> FaceDef:
    face = _keys(value, where, FACE_KEYS, FACE_OPTIONAL)
    photo = face["photo"]
    if not isinstance(photo, str) or not PHOTO_PATH.fullmatch(photo):
        raise refused(f"{where}.photo", "must be photos/<name>.<jpg|jpeg|png|webp|bmp|gif>.")
    if not isinstance(face["sha256"], str) or not SHA256.fullmatch(face["sha256"]):
        raise refused(f"{where}.sha256", "must be 64 lowercase hexadecimal digits.")
    score = face["detection_score"]
    if score is not None and not ((_int(score) or isinstance(score, float)) and math.isfinite(score)):
        raise refused(f"{where}.detection_score", "must be a finite number or null.")
    thumbnail = face.get("thumbnail")
    thumb_sha = face.get("thumbnail_sha256")
    if (thumbnail is None) != (thumb_sha is None):
        raise refused(where, "thumbnail and thumbnail_sha256 go together.")
    if thumbnail is not None:
        if not isinstance(thumbnail, str) or not THUMBNAIL_PATH.fullmatch(thumbnail):
            raise refused(f"{where}.thumbnail", "must be thumbnails/<name>.jpg.")
        if not isinstance(thumb_sha, str) or not SHA256.fullmatch(thumb_sha):
            raise refused(f"{where}.thumbnail_sha256", "must be 64 lowercase hexadecimal digits.")
    quality = face.get("quality", {})
    if not isinstance(quality, dict):
        raise refused(f"{where}.quality", "must be a JSON object.")
    return FaceDef(photo=photo, sha256=face["sha256"], box=_box(face["box"], f"{where}.box"),
                   detection_score=None if score is None else float(score),
                   embedding=_embedding(face["embedding"], f"{where}.embedding"),
                   thumbnail=thumbnail, thumbnail_sha256=thumb_sha, quality=quality)


def _person(value, where: str, slugs: set[str]) -> PersonDef:
    person = _keys(value, where, PERSON_KEYS)
    external_id = person["external_id"]
    if external_id is not None:
        external_id = _text(external_id, f"{where}.external_id", max_length=100) or None
    if not isinstance(person["metadata"], dict):
        raise refused(f"{where}.metadata", "must be a JSON object.")
    galleries = [_text(slug, f"{where}.galleries[{i}]", max_length=100)
                 for i, slug in enumerate(_list(person["galleries"], f"{where}.galleries"))]
    for i, slug in enumerate(galleries):
        if slug not in slugs:
            raise refused(f"{where}.galleries[{i}]", f"{slug[:100]!r} is not one of the manifest's galleries.")
    if len(set(galleries)) != len(galleries):
        raise refused(f"{where}.galleries", "a gallery is listed twice.")
    faces = [_face(face, f"{where}.faces[{i}]") for i, face in enumerate(_list(person["faces"], f"{where}.faces"))]
    if len({face.sha256 for face in faces}) != len(faces):
        raise refused(f"{where}.faces", "the same photo (sha256) is listed twice for one person.")
    return PersonDef(ref=_text(person["ref"], f"{where}.ref", max_length=100),
                     name=_text(person["name"], f"{where}.name", max_length=200),
                     external_id=external_id, metadata=person["metadata"], galleries=galleries, faces=faces)


def manifest_parse(data: bytes) -> Manifest:
    """The manifest's bytes, checked: strict JSON (no repeated keys, NaN, NUL, lone surrogates, bounded
    depth), the format and version, then every field. A refusal names where (``details.where``)."""
    try:
        value = loads_checked(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise refused("body", "is not UTF-8.") from None
    except ValueError as exc:
        raise refused("body", f"is not valid JSON: {exc}") from None
    except ValidationError as exc:
        where, messages = next(iter(exc.detail.items())) if isinstance(exc.detail, dict) else ("body", exc.detail)
        raise refused(str(where), str(messages[0] if isinstance(messages, list) else messages)) from None
    if not isinstance(value, dict) or value.get("format") != FORMAT:
        raise refused("format", f"must be {FORMAT!r}: this is not a gallery archive's manifest.")
    version = value.get("version")
    if not _int(version) or version != VERSION:
        raise ServiceError("unsupported_version", f"Gallery archive version {version!r} is not supported "
                           f"(this service reads version {VERSION}).", status_code=400,
                           details={"version": version if _int(version) else None, "supported": [VERSION]})
    top = _keys(value, "manifest", TOP_KEYS)
    model_id = _text(top["model_id"], "model_id", max_length=200)
    exported_at = _text(top["exported_at"], "exported_at", max_length=64)
    try:
        datetime.fromisoformat(exported_at)
    except ValueError:
        raise refused("exported_at", "must be an ISO 8601 date and time.") from None
    galleries = []
    for i, item in enumerate(_list(top["galleries"], "galleries")):
        where = f"galleries[{i}]"
        gallery = _keys(item, where, GALLERY_KEYS)
        slug = gallery["slug"]
        if not isinstance(slug, str) or not SLUG.fullmatch(slug):
            raise refused(f"{where}.slug", "must be letters, digits, '-' or '_', at most 100.")
        galleries.append(GalleryDef(slug=slug, name=_text(gallery["name"], f"{where}.name", max_length=200),
                                    description=_text(gallery["description"], f"{where}.description",
                                                      max_length=10000, blank=True)))
    slugs = {g.slug for g in galleries}
    if len(slugs) != len(galleries):
        raise refused("galleries", "a slug is listed twice.")
    people = [_person(item, f"people[{i}]", slugs) for i, item in enumerate(_list(top["people"], "people"))]
    _check_unique(people)
    return Manifest(model_id=model_id, exported_at=exported_at, galleries=galleries, people=people)


def _check_unique(people: list[PersonDef]) -> None:
    refs, external_ids, paths = set(), set(), set()
    for i, person in enumerate(people):
        if person.ref in refs:
            raise refused(f"people[{i}].ref", f"{person.ref[:100]!r} is used twice.")
        refs.add(person.ref)
        if person.external_id is not None:
            if person.external_id in external_ids:
                raise refused(f"people[{i}].external_id", f"{person.external_id[:100]!r} is used twice.")
            external_ids.add(person.external_id)
        for j, face in enumerate(person.faces):
            for path in filter(None, (face.photo, face.thumbnail)):
                if path in paths:
                    raise refused(f"people[{i}].faces[{j}]", f"{path!r} is named twice.")
                paths.add(path)
