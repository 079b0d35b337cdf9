"""manage.py recognize FILE... [--gallery SLUG] [--json]."""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from core.errors import ServiceError
from face_engine.types import ImageError
from people.selectors import gallery_resolve
from recognition.services import RecognizeOptions, recognize_images


class Command(BaseCommand):
    help = "Recognise every face in each FILE: boxes and names."

    def add_arguments(self, parser):
        parser.add_argument("files", nargs="+")
        parser.add_argument("--gallery", help="Gallery id or slug to search in.")
        parser.add_argument("--threshold", type=float, help="Match threshold (default 0.6).")
        parser.add_argument("--json", action="store_true", help="Print JSON instead of text.")

    def handle(self, *args, files, gallery=None, threshold=None, **options):
        try:
            options_ = RecognizeOptions(match_count=1, threshold=threshold,
                                        gallery=gallery_resolve(gallery))
        except ServiceError as exc:
            raise CommandError(exc.message) from exc
        blobs = []
        for name in files:
            path = Path(name)
            if not path.is_file():
                raise CommandError(f"{path}: no such file")
            blobs.append(path.read_bytes())
        action = "recognition.batch" if len(blobs) > 1 else "recognition.recognize"
        results = recognize_images(blobs, options_, action=action)
        report = []
        for name, result in zip(files, results, strict=True):
            if isinstance(result, ImageError):
                report.append({"file": name, "success": False,
                               "error": {"code": result.code, "message": result.message}})
                continue
            report.append({"file": name, "success": True, "faces": [
                {"box": f["box"], "name": f["label"],
                 "person_id": f["top_match"]["person_id"] if f["top_match"] else None,
                 "distance": f["top_match"]["distance"] if f["top_match"] else None}
                for f in result["faces"]]})
        if options["json"]:
            self.stdout.write(json.dumps(report, indent=2))
            return
        for entry in report:
            if not entry["success"]:
                self.stdout.write(f"{entry['file']}: error: {entry['error']['message']}")
                continue
            self.stdout.write(f"{entry['file']}: {len(entry['faces'])} face(s)")
            for face in entry["faces"]:
                box = face["box"]
                where = f"top={box['top']} right={box['right']} bottom={box['bottom']} left={box['left']}"
                distance = f" (distance {face['distance']:.3f})" if face["distance"] is not None else ""
                self.stdout.write(f"  {face['name']}{distance} at {where}")
