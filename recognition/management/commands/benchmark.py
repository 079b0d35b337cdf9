"""manage.py benchmark [DIR ...] [options]: the engine benchmark (python -m face_engine.bench)."""

import argparse

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Fast pipeline vs the dlib reference on the same photos: per-stage figures and ratios."

    def add_arguments(self, parser):
        parser.add_argument("args", nargs=argparse.REMAINDER, help="see python -m face_engine.bench --help")

    def handle(self, *args, **options):
        from face_engine.bench.pipeline import main

        main(list(args))
