"""Celery app; only used when CELERY_BROKER_URL is set (otherwise jobs run in-process)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")

app = Celery("facerec")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
