"""Database ids as clients send them."""

from __future__ import annotations

MAX_ID = 2**63 - 1  # the database's bigint: a larger id cannot exist (and overflows SQLite: a 500)


def parse_id(value: object) -> int | None:
    """``value`` as a database id: ASCII digits ("²" is a digit to str.isdigit, not to int) within
    the database's range; None for anything else."""
    text = str(value).strip()
    if text.isascii() and text.isdigit() and int(text) <= MAX_ID:
        return int(text)
    return None
