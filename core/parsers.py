"""How client JSON is read and written: bounded, and only what every store and client can hold.

A JSON body (the JSONParser, installed in REST_FRAMEWORK) or a JSON form field (JSONValueField,
``metadata`` sent as multipart) is refused with a 400 ``invalid`` naming where, when it is:
- nested deeper than MAX_JSON_DEPTH (Python's parser recurses: past its limit a RecursionError,
  a 500, and a walk of such a value recurses again in every serializer);
- carrying NUL anywhere, keys included (PostgreSQL refuses it in text and jsonb: a write that
  fails in the database), or a lone UTF-16 surrogate (``"\\ud800"``: valid JSON text, but no
  UTF-8 encoding exists, so every later answer containing it failed to render: a 500 for everyone
  listing people);
- repeating a key (which value wins is an accident of the parser), or holding NaN/Infinity;
and a body over MAX_JSON_BODY_BYTES is a 413 ``request_too_large`` (read up to the bound only).
"""

from __future__ import annotations

import json
import math
import re

from django.conf import settings
from rest_framework import exceptions, parsers, renderers, serializers
from rest_framework.exceptions import ParseError, ValidationError

# NUL, and the UTF-16 surrogate range (a str holding one is not text: it cannot be encoded).
_FORBIDDEN = re.compile("[\x00\ud800-\udfff]")


def text_problem(text: str) -> str | None:
    """Why a client's string cannot be kept (NUL or a lone surrogate), or None."""
    found = _FORBIDDEN.search(text)
    if found is None:
        return None
    if found.group() == "\x00":
        return "NUL characters are not allowed."
    return f"Lone surrogate characters are not allowed (U+{ord(found.group()):04X})."


class RequestTooLarge(exceptions.APIException):
    # Not core.errors.ServiceError: core.errors imports DRF's views, which import this module.
    status_code = 413
    default_code = "request_too_large"
    default_detail = "The request body is too large."


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict:
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set[str] = set()
        repeated = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise ValueError(f"the key {repeated[:100]!r} is repeated")
    return value


def _where(path: tuple) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part[:100]}" for part in path).lstrip(".") or "body"


def check_value(value, *, max_depth: int, root: tuple = ()) -> None:
    """ValidationError({where: [why]}) for the first thing in a decoded JSON value that is too deep,
    holds a forbidden character (keys too) or a non-finite number. Iterative: no recursion to exhaust."""
    stack = [(value, root, 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth >= max_depth:
                raise ValidationError({_where(path): [f"JSON nested deeper than {max_depth} levels."]})
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            for key, child in pairs:
                if isinstance(key, str) and (problem := text_problem(key)):
                    raise ValidationError({_where(path): [f"A key: {problem}"]})
                stack.append((child, (*path, key), depth + 1))
        elif isinstance(item, str) and (problem := text_problem(item)):
            raise ValidationError({_where(path): [problem]})
        elif isinstance(item, float) and not math.isfinite(item):
            raise ValidationError({_where(path): ["Numbers must be finite."]})


def loads_checked(text: str, *, root: tuple = ()):
    """``text`` decoded as JSON, then checked (check_value); ValueError when it is not JSON."""
    max_depth = settings.MAX_JSON_DEPTH
    try:
        value = json.loads(text, parse_constant=_refuse_constant, object_pairs_hook=_no_duplicate_keys)
    except RecursionError:  # deeper than the interpreter's stack: certainly past max_depth
        raise ValidationError({_where(root): [f"JSON nested deeper than {max_depth} levels."]}) from None
    check_value(value, max_depth=max_depth, root=root)
    return value


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, bounded and checked (see the module's docstring)."""

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.MAX_JSON_BODY_BYTES
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise RequestTooLarge(f"A JSON body is at most {limit} bytes (MAX_JSON_BODY_BYTES).")
        encoding = parsers.get_encoding(parser_context or {})
        try:
            text = raw.decode(encoding)
        except (UnicodeDecodeError, LookupError):  # LookupError: a charset Python does not know
            raise ParseError(f"JSON parse error - the body is not {encoding[:40]} text.") from None
        try:
            return loads_checked(text)
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None


class JSONValueField(serializers.JSONField):
    """A JSON value, sent in a JSON body or as a JSON string in a form field, checked the same way."""

    def to_internal_value(self, data):
        if getattr(data, "is_json_string", False) or isinstance(data, (str, bytes)) and self.binary:
            text = data.decode() if isinstance(data, bytes) else str(data)
            if len(text.encode("utf-8", "surrogatepass")) > settings.MAX_JSON_BODY_BYTES:
                raise ValidationError(f"At most {settings.MAX_JSON_BODY_BYTES} bytes of JSON.")
            try:
                return self._flat(loads_checked, text)
            except ValueError:
                self.fail("invalid")
        # Already decoded (a JSON body): the parser checked it; checked again for any other caller.
        self._flat(check_value, data, max_depth=settings.MAX_JSON_DEPTH)
        return super().to_internal_value(data)

    @staticmethod
    def _flat(check, *args, **kwargs):
        """The check's {where: [why]} as this field's own messages ("At a.b: why")."""
        try:
            return check(*args, **kwargs)
        except ValidationError as exc:
            raise ValidationError([f"At {where}: {why}" if where != "body" else why
                                   for where, whys in exc.detail.items() for why in whys]) from None


class _AsciiJSONRenderer(renderers.JSONRenderer):
    ensure_ascii = True


class JSONRenderer(renderers.JSONRenderer):
    """DRF's renderer; text stored before input was checked (a lone surrogate, which UTF-8 cannot
    encode) is sent \\u-escaped instead of failing the whole answer."""

    def render(self, data, accepted_media_type=None, renderer_context=None):
        try:
            return super().render(data, accepted_media_type, renderer_context)
        except UnicodeEncodeError:
            return _AsciiJSONRenderer().render(data, accepted_media_type, renderer_context)


def refuse_repeated(serializer: serializers.Serializer, data) -> None:
    """A form or query field sent more than once is refused, unless it is a list: which value
    would win is an accident of the parser."""
    if not hasattr(data, "getlist"):
        return
    repeated = {
        name: [f"Sent {len(data.getlist(name))} times; send it once."]
        for name, field in serializer.fields.items()
        if not isinstance(field, (serializers.ListField, serializers.ManyRelatedField))
        and not field.read_only and len(data.getlist(name)) > 1
    }
    if repeated:
        raise ValidationError(repeated)


class OneValuePerField:
    """Serializer mixin, first in the bases: refuse_repeated before anything else reads the data."""

    def to_internal_value(self, data):
        refuse_repeated(self, data)
        return super().to_internal_value(data)
