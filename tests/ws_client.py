"""A WebSocket client of an ASGI app in the test's own process."""

from __future__ import annotations

import json

from asgiref.testing import ApplicationCommunicator


class Communicator(ApplicationCommunicator):
    """A WebSocket client of an ASGI app in this process: what channels.testing's
    WebsocketCommunicator does (that package cannot be imported without daphne)."""

    def __init__(self, application, path: str, headers=()) -> None:
        path, _, query = path.partition("?")
        super().__init__(application, {"type": "websocket", "path": path, "query_string": query.encode(),
                                       "headers": list(headers), "subprotocols": []})

    async def connect(self, timeout: float = 10) -> bool:
        await self.send_input({"type": "websocket.connect"})
        return (await self.receive_output(timeout))["type"] == "websocket.accept"

    async def send_to(self, *, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        await self.send_input({"type": "websocket.receive", **({"bytes": bytes_data} if bytes_data is not None
                                                                 else {"text": text_data})})

    async def receive_json_from(self, timeout: float = 60) -> dict:
        message = await self.receive_output(timeout)
        assert message["type"] == "websocket.send" and "text" in message, message
        return json.loads(message["text"])

    async def disconnect(self, code: int = 1000, timeout: float = 30) -> None:
        await self.send_input({"type": "websocket.disconnect", "code": code})
        await self.wait(timeout)
