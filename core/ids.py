"""Database ids as clients send them: one parser, and the serializer fields built on it.

Every id a client sends (a URL, a query parameter, a form field, a JSON body) goes through
``parse_id``: ASCII digits only ("²" and "١" are digits to str.isdigit, and int() takes the second
but not the first), within the database's bigint. Anything else is a 400 naming the field, or a
404 for a URL, never a 500.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

MAX_ID = 2**63 - 1  # the database's bigint: a larger id cannot exist (and overflows SQLite: a 500)
_MAX_DIGITS = len(str(MAX_ID))  # int() of a longer text is refused before it is even read
ID_RULE = f"ids are whole numbers from 1 to {MAX_ID}"


def parse_id(value: object) -> int | None:
    """``value`` as a database id (a positive int within the bigint range); None for anything else,
    booleans and floats included (JSON's ``true`` and ``1.0`` are not ids)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    text = str(value).strip()
    if not (text.isascii() and text.isdigit()):
        return None
    digits = text.lstrip("0") or "0"  # int() counts leading zeros against its 4,300-digit limit
    if len(digits) > _MAX_DIGITS:
        return None
    number = int(digits)
    return number if 1 <= number <= MAX_ID else None


@extend_schema_field({"type": "integer", "minimum": 1, "maximum": MAX_ID})
class IdField(serializers.IntegerField):
    """An id given by a client (not checked against a table: see IdRelatedField)."""

    default_error_messages = {"invalid_id": f"Not an id: {ID_RULE}."}

    def __init__(self, **kwargs):
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", MAX_ID)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        pk = parse_id(data)
        if pk is None:
            self.fail("invalid_id")
        return pk


class IdRelatedField(serializers.PrimaryKeyRelatedField):
    """A row by its id: "²", "-1" or 2**64 are refused as ids (400) before any query is made."""

    default_error_messages = {"invalid_id": f"Not an id: {ID_RULE}."}

    def to_internal_value(self, data):
        pk = parse_id(data)
        if pk is None:
            self.fail("invalid_id")
        return super().to_internal_value(pk)


class IdListField(serializers.ListField):
    """Rows by their ids, in one query; a bounded list (each id a query would let one request run
    thousands, and a long IN list overflows SQLite's parameters)."""

    default_error_messages = {"missing": "No {what} with ids {ids}."}

    def __init__(self, *, queryset, max_length: int = 1000, **kwargs):
        super().__init__(child=IdField(), max_length=max_length, **kwargs)
        self.queryset = queryset

    def to_internal_value(self, data):
        ids = list(dict.fromkeys(super().to_internal_value(data)))
        found = self.queryset.in_bulk(ids)
        missing = [pk for pk in ids if pk not in found]
        if missing:
            shown = ", ".join(str(pk) for pk in missing[:20]) + (", …" if len(missing) > 20 else "")
            self.fail("missing", what=self.queryset.model._meta.verbose_name, ids=shown)
        return [found[pk] for pk in ids]
