"""A real ASGI server for WebSocket tests: uvicorn serving ``config.asgi:application`` (HTTP and
``ws/live/``) on a free loopback port, on the calling test's database and media folder.

    server = LiveServer(settings, tmp_path, overrides={"LIVE_SEND_TIMEOUT": 2.0}).wait_ready()
    url = server.ws_url("/ws/live/", token=key)      # ws://127.0.0.1:<port>/ws/live/?token=...
    ...
    server.stop()                                     # or add it to tests.processes.Processes

It runs ``config.settings.base`` (DEBUG off, ALLOWED_HOSTS=127.0.0.1: a WebSocket client must send
``Origin: http://127.0.0.1:<port>``; websocket-client does by default). ``overrides`` are Django
settings written to a throw-away settings module on top of base: settings the environment cannot
set. The caller's test needs ``django_db(transaction=True)``: the server reads what it committed.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlencode

from tests.processes import BIN, ROOT, Process, free_port, service_env, wait_answering


class LiveServer(Process):
    def __init__(self, settings, log_dir: Path, *, overrides: dict | None = None, name: str = "uvicorn",
                 **variables: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.origin = self.base
        module = "live_test_settings"
        folder = Path(log_dir) / f"{name}-settings"
        folder.mkdir(parents=True, exist_ok=True)
        lines = ["from config.settings.base import *  # noqa: F403"]
        lines += [f"{key} = {value!r}" for key, value in (overrides or {}).items()]
        (folder / f"{module}.py").write_text("\n".join(lines) + "\n")
        env = service_env(settings, DJANGO_SETTINGS_MODULE=module, DEBUG="false", ALLOWED_HOSTS="127.0.0.1",
                          LOG_FORMAT="text", PYTHONPATH=os.pathsep.join([str(folder), str(ROOT)]), **variables)
        args = [str(BIN / "uvicorn"), "config.asgi:application", "--host", "127.0.0.1", "--port", str(self.port),
                "--ws-max-size", str(16 * 1024 * 1024)]
        super().__init__(name, args, env, Path(log_dir) / f"{name}.log")

    def wait_ready(self, timeout: float = 120) -> LiveServer:
        return wait_answering(self, timeout)

    def ws_url(self, path: str = "/ws/live/", **query) -> str:
        return f"ws://127.0.0.1:{self.port}{path}" + (f"?{urlencode(query)}" if query else "")

    def rss_kb(self) -> int:
        """The server process's resident memory (VmRSS, kB)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError(f"no VmRSS for pid {self.pid}")
