"""manage.py enroll_folder DIR [--gallery SLUG]: DIR/<person name>/<photos>."""

from __future__ import annotations

from pathlib import Path

from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from tqdm import tqdm

from people.models import Gallery, Person
from people.services import face_enroll, gallery_create, person_create

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"}


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
        folders = sorted(p for p in root.iterdir() if p.is_dir())
        work = [(folder, photo) for folder in folders for photo in sorted(folder.iterdir())
                if photo.is_file() and photo.suffix.lower() in IMAGE_SUFFIXES]
        if not work:
            raise CommandError(f"No photos found in {root}/<person name>/")
        target = self._gallery(gallery) if gallery else None

        enrolled, duplicates, refused = 0, 0, []
        people: dict[str, Person] = {}
        for folder, photo in tqdm(work, desc="Enrolling", unit="photo", file=self.stderr._out,
                                  disable=options.get("verbosity", 1) == 0):
            person = people.get(folder.name) or self._person(folder.name, target)
            people[folder.name] = person
            upload = SimpleUploadedFile(photo.name, photo.read_bytes())
            outcome = face_enroll(person=person, uploads=[upload], largest=largest)[0]
            if outcome.error is not None:
                refused.append((photo.relative_to(root), outcome.error.message))
            elif outcome.duplicate:
                duplicates += 1
            else:
                enrolled += 1

        self.stdout.write(self.style.SUCCESS(
            f"Enrolled {enrolled} photo(s) of {len(people)} people"
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
    def _person(name: str, gallery: Gallery | None) -> Person:
        display = name.replace("_", " ").title()
        person = Person.objects.filter(name=display).first() or person_create(name=display)
        if gallery is not None:
            person.galleries.add(gallery)
        return person
