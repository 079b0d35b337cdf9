"""The service's ASGI application with one header added, `X-Worker-PID`, so that the load test can
tell which gunicorn worker answered each request (it checks that every worker sees every write).
Used by loadtest/run.py only; production serves config.asgi:application."""

import os

from config.asgi import application as service

PID_HEADER = (b"x-worker-pid", str(os.getpid()).encode())


async def application(scope, receive, send):
    if scope["type"] != "http":
        return await service(scope, receive, send)

    async def send_with_pid(message):
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), PID_HEADER]}
        await send(message)

    return await service(scope, receive, send_with_pid)
