"""manage.py benchmark [DIR ...]: the engine benchmark (python -m face_engine.bench) from Django."""

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Fast pipeline vs the dlib reference on the same photos: per-stage figures and ratios."

    def add_arguments(self, parser):
        parser.add_argument("args", nargs="*", help="arguments of python -m face_engine.bench")

    def run_from_argv(self, argv):
        # Hand everything after the command name to the engine's own parser (--help included).
        from face_engine.bench.pipeline import main

        main(argv[2:])
