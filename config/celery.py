"""Celery app; only used when CELERY_BROKER_URL is set (otherwise jobs run in-process)."""

import os

from celery import Celery
from celery.signals import celeryd_init, setup_logging

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")

app = Celery("facerec")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@celeryd_init.connect
def _set_django_up_first(**kwargs) -> None:
    """A worker logs through Django's LOGGING (JSON lines in production) from its first record on,
    warnings included: set Django up before the worker says anything."""
    import django

    django.setup()


@setup_logging.connect
def _keep_django_logging(**kwargs) -> None:
    """Connected, so that Celery installs no handlers of its own over Django's."""
