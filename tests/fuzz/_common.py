"""What every harness shares: the repository on sys.path, seeds written into a corpus folder, and
libFuzzer started on it.

    python tests/fuzz/fuzz_decode.py -max_total_time=300          # seeds in a fresh temporary corpus
    python tests/fuzz/fuzz_decode.py -runs=0 var/fuzz/decode      # replay a kept corpus once

A harness answers every input with one of the refusals the service documents, or an accepted
result; anything else (another exception, a 5xx, a wrong shape) is raised, and libFuzzer stops and
writes the input to ``crash-<sha1>`` (``-artifact_prefix=`` chooses the folder).
"""

from __future__ import annotations

import hashlib
import io
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DATA = ROOT / "tests" / "data"
# Small real photos: seeds that decode quickly (large ones only slow every mutation down).
SEED_PHOTOS = [DATA / "misc" / "obama_small.jpg", DATA / "misc" / "obama-240p.jpg"]


class Finding(AssertionError):
    """An answer outside the documented ones: libFuzzer reports the input as a crash."""


def small_images() -> list[bytes]:
    """One tiny image per accepted format and mode family, plus the real seed photos."""
    from PIL import Image

    images = [path.read_bytes() for path in SEED_PHOTOS]
    for fmt, mode in (("PNG", "RGBA"), ("PNG", "P"), ("PNG", "I;16"), ("GIF", "P"), ("BMP", "RGB"),
                      ("WEBP", "RGB"), ("JPEG", "CMYK"), ("JPEG", "L"), ("PNG", "LA")):
        buffer = io.BytesIO()
        Image.new(mode, (17, 9)).save(buffer, format=fmt)
        images.append(buffer.getvalue())
    return images


def run(test_one_input: Callable[[bytes], None], seeds: Iterable[bytes], *, max_len: int | None = None) -> None:
    """Start libFuzzer on ``test_one_input``. The seeds are written into the corpus folder (the
    first folder among the arguments, or a fresh temporary one) when it is empty; libFuzzer adds
    what it finds there. ``max_len``:
    the longest input when the arguments do not say (libFuzzer's default is the longest seed)."""
    import atheris

    argv = list(sys.argv)
    if max_len is not None and not any(arg.startswith("-max_len=") for arg in argv):
        argv.append(f"-max_len={max_len}")
    folders = [arg for arg in argv[1:] if not arg.startswith("-")]
    if not folders:
        folders = [tempfile.mkdtemp(prefix=f"fuzz-{Path(argv[0]).stem}-")]
        argv.append(folders[0])
    corpus = Path(folders[0])
    if corpus.is_dir() and not any(corpus.iterdir()):  # an empty corpus starts from the seeds
        for seed in seeds:
            (corpus / hashlib.sha1(seed).hexdigest()).write_bytes(seed)
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


# Packages of the service whose Python is instrumented in the Django harnesses, with the request
# parsing of Django and DRF they go through.
SERVICE_PACKAGES = ["core", "people", "recognition", "jobs", "audit", "streams", "events", "webhooks",
                    "attendance", "django.http.multipartparser", "django.http.request", "rest_framework.parsers",
                    "rest_framework.request", "rest_framework.fields"]


def django_setup() -> dict:
    """Django on a throw-away SQLite file (migrated), test settings (in-process cache, channel
    layer and jobs; throttling out of the way), quiet logs; a staff user, a plain user, a person.
    Returns their ids and API tokens. Call it inside ``atheris.instrument_imports``."""
    import logging
    import os

    # FUZZ_TMP: where the database and media go (the CI test points it into its tmp_path).
    folder = Path(tempfile.mkdtemp(prefix="fuzz-django-", dir=os.environ.get("FUZZ_TMP")))
    os.environ.update(DJANGO_SETTINGS_MODULE="config.settings.test", DATABASE_URL="", REDIS_URL="",
                      SQLITE_PATH=str(folder / "db.sqlite3"), MEDIA_ROOT=str(folder / "media"))
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    settings.MEDIA_ROOT = str(folder / "media")
    call_command("migrate", verbosity=0)
    logging.disable(logging.CRITICAL)  # each refused request logs a line: millions of them

    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    from people.services import person_create

    users = get_user_model().objects
    staff = users.create_user("fuzz-staff", password="fuzz-staff-pass", is_staff=True)
    reader = users.create_user("fuzz-reader", password="fuzz-reader-pass")
    person = person_create(name="Fuzz Target")
    return {"staff": Token.objects.get_or_create(user=staff)[0].key,
            "user": Token.objects.get_or_create(user=reader)[0].key, "person_id": person.pk}


def error_shape(body: bytes) -> str:
    """The error code of a refusal in the project's error shape, or Finding."""
    import json

    try:
        payload = json.loads(body)
        code = payload["error"]["code"]
    except (ValueError, KeyError, TypeError) as exc:
        raise Finding(f"a refusal outside the error shape: {body[:300]!r}") from exc
    if payload.get("success") is not False or not isinstance(code, str) or not code:
        raise Finding(f"a refusal outside the error shape: {body[:300]!r}")
    return code
