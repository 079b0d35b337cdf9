"""manage.py enroll_folder DIR [--gallery SLUG]: DIR/<person name>/<photos>."""

from __future__ import annotations

from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_slug
from django.db import transaction
from tqdm import tqdm

from core.audit.services import audit_record
from people.models import Gallery, Person
from people.services import face_enroll, gallery_create, person_create, person_delete

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"}


def display_name(folder: str) -> str:
    """'kit_harington' -> 'Kit Harington'. Capitals already there are kept ('McDonald')."""
    words = folder.replace("_", " ").split()
    return " ".join(word[:1].upper() + word[1:] for word in words) or folder


class Command(BaseCommand):
    help = "Enrol every photo of DIR/<person name>/ as that person (created when missing)."

    def add_arguments(self, parser):
        parser.add_argument("directory")
        parser.add_argument("--gallery", help="Gallery slug to put the people in (created if missing).")
        parser.add_argument("--largest", action="store_true",
                            help="Enrol the largest face of photos with several faces.")

    def handle(self, *args, directory, gallery=None, largest=False, **options):
        root = Path(directory)
        if not root.is_dir():
            raise CommandError(f"{root} is not a directory")
        if gallery is not None:
            try:
                validate_slug(gallery)
            except ValidationError as exc:
                raise CommandError(f"--gallery {gallery!r} is not a slug "
                                   "(letters, digits, hyphens and underscores only).") from exc
        folders = sorted(p for p in root.iterdir() if p.is_dir())
        work = [(folder, photo) for folder in folders for photo in sorted(folder.iterdir())
                if photo.is_file() and photo.suffix.lower() in IMAGE_SUFFIXES]
        if not work:
            raise CommandError(f"No photos found in {root}/<person name>/")
        target = self._gallery(gallery) if gallery else None

        enrolled, duplicates, refused = 0, 0, []
        people: dict[str, Person] = {}
        created: set[int] = set()  # people this run created
        kept: set[int] = set()  # people with at least one photo enrolled, now or before
        for folder, photo in tqdm(work, desc="Enrolling", unit="photo", file=self.stderr._out,
                                  disable=options.get("verbosity", 1) == 0):
            person = people.get(folder.name)
            if person is None:
                person, is_new = self._person(folder.name, target)
                people[folder.name] = person
                if is_new:
                    created.add(person.pk)
            try:
                upload = SimpleUploadedFile(photo.name, photo.read_bytes())
            except OSError as exc:
                refused.append((photo.relative_to(root), f"could not read the file: {exc}"))
                continue
            outcome = face_enroll(person=person, uploads=[upload], largest=largest)[0]
            if outcome.error is not None:
                refused.append((photo.relative_to(root), outcome.error.message))
                continue
            kept.add(person.pk)
            if outcome.duplicate:
                duplicates += 1
            else:
                enrolled += 1

        # A person created for a folder none of whose photos could be enrolled is not kept.
        for person in people.values():
            if person.pk in created and person.pk not in kept:
                person_delete(person=person)

        self.stdout.write(self.style.SUCCESS(
            f"Enrolled {enrolled} photo(s) of {len(kept)} people"
            + (f" into gallery '{target.slug}'" if target else "")
            + f"; {duplicates} already enrolled; {len(refused)} refused."))
        for path, reason in refused:
            self.stdout.write(f"  refused {path}: {reason}")

    @staticmethod
    def _gallery(slug: str) -> Gallery:
        existing = Gallery.objects.filter(slug=slug).first()
        return existing or gallery_create(name=slug, slug=slug)

    @staticmethod
    @transaction.atomic
    def _person(folder: str, gallery: Gallery | None) -> tuple[Person, bool]:
        """The person named after ``folder`` (created when missing), in ``gallery``."""
        name = display_name(folder)
        person = Person.objects.filter(name=name).first()
        if person is None:
            return person_create(name=name, galleries=[gallery] if gallery else []), True
        if gallery is not None and not person.galleries.filter(pk=gallery.pk).exists():
            person.galleries.add(gallery)  # logged for the index (people.index_log.memberships_changed)
            audit_record(actor=None, action="person.update", target_type="person", target_ids=[person.pk],
                         details={"fields": ["galleries"], "added_gallery_id": gallery.pk})
        return person, False
