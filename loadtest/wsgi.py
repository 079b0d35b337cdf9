"""The service's WSGI application with one header added, `X-Worker-PID`, so that the load test can
tell which gunicorn worker answered each request (it checks that every worker sees every write).
Used by loadtest/run.py only; production serves config.wsgi:application."""

import os

from config.wsgi import application as django_application


def application(environ, start_response):
    def start_with_pid(status, headers, exc_info=None):
        return start_response(status, [*headers, ("X-Worker-PID", str(os.getpid()))], exc_info)

    return django_application(environ, start_with_pid)
