from __future__ import annotations

import re

from django.db.models import Count, Q, QuerySet

from core.errors import ServiceError
from core.ids import parse_id
from people.models import Face, Gallery, Person

_SLUG = re.compile(r"[-a-zA-Z0-9_]{1,100}")


def gallery_by_ref(value: object) -> Gallery | None:
    """A gallery by its id or its slug (None when there is none)."""
    text = str(value).strip()
    pk = parse_id(text)
    if pk is not None:
        return Gallery.objects.filter(pk=pk).first()
    # Not a slug (a NUL, which PostgreSQL refuses in any query, or any other character a slug
    # cannot hold): no such gallery, without asking the database.
    if not _SLUG.fullmatch(text):
        return None
    return Gallery.objects.filter(slug=text).first()


def gallery_resolve(value: str | int | None) -> Gallery | None:
    """A gallery from its id or slug (None for no value); a clear 400 when there is no such gallery."""
    if value in (None, ""):
        return None
    gallery = gallery_by_ref(value)
    if gallery is None:
        raise ServiceError("unknown_gallery", f"No gallery with id or slug {str(value).strip()!r}.", status_code=400)
    return gallery


def gallery_list(*, search: str = "") -> QuerySet[Gallery]:
    queryset = Gallery.objects.annotate(person_count=Count("people")).order_by("name", "id")
    if search:
        queryset = queryset.filter(Q(name__icontains=search) | Q(slug__icontains=search))
    return queryset


def person_list(*, search: str = "", gallery: Gallery | None = None) -> QuerySet[Person]:
    queryset = Person.objects.prefetch_related("galleries").annotate(
        face_count=Count("faces", distinct=True),
        encoded_count=Count("faces", filter=Q(faces__status=Face.Status.ENCODED), distinct=True),
    ).order_by("name", "id")
    if search:
        queryset = queryset.filter(Q(name__icontains=search) | Q(external_id__icontains=search))
    if gallery is not None:
        queryset = queryset.filter(galleries=gallery)
    return queryset


def face_list(*, person: Person | None = None, status: str = "") -> QuerySet[Face]:
    queryset = Face.objects.all()
    if person is not None:
        queryset = queryset.filter(person=person)
    if status:
        queryset = queryset.filter(status=status)
    return queryset
