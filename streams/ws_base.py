"""What every WebSocket of the service shares (``ws/live/``, ``ws/events/``): its own dispatch loop,
sends with a deadline, refusals and closes.

Every send goes through ``_send_json`` with a deadline (``LIVE_SEND_TIMEOUT``): uvicorn makes a
send wait while the client does not read, and a client that stops reading is closed with 4408
instead of the server queueing messages for it without bound."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from channels.consumer import AsyncConsumer
from channels.exceptions import StopConsumer
from channels.utils import await_many_dispatch
from django.conf import settings
from django.db import DatabaseError

logger = logging.getLogger(__name__)

CLOSE_AUTH, CLOSE_PARAMS, CLOSE_SLOW_READER, CLOSE_ERROR = 4401, 4400, 4408, 1011
# How long a close waits for a client that does not read: one that reads again within it still
# learns why it was closed (4408); after it the connection is dropped without a close frame.
CLOSE_WAIT_SECONDS = 30.0


def json_object(text: str, max_chars: int) -> dict | None:
    """A client's text message as a JSON object, or None: too long to be worth parsing, not JSON,
    nested past the interpreter's stack, or not an object."""
    if len(text) > max_chars:
        return None
    try:
        message = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return message if isinstance(message, dict) else None


class BoundedConsumer(AsyncConsumer):
    """A consumer whose dispatch is ours: no channel layer (nothing is sent to a connection from
    elsewhere) and no database round trip per message. Subclasses implement ``_connect`` (accept or
    refuse; set ``self.ready`` once the connection works) and ``_receive`` (a client message once
    ready), and may set ``self.worker`` (the connection's own task, cancelled when it closes) and
    ``cleanup``."""

    name = "websocket"  # for the logs

    async def __call__(self, scope, receive, send):
        self.scope, self.base_send = scope, send
        self.user = scope.get("user")
        self.send_timeout = float(settings.LIVE_SEND_TIMEOUT)
        self.closing = self.ready = False
        self.gone = asyncio.Event()
        self.send_lock = asyncio.Lock()
        self.worker: asyncio.Task | None = None
        self.closer: asyncio.Task | None = None
        self.setup()

        async def receive_until_gone():
            # Once we have given up on a connection, stop waiting for its client (it may never
            # send or read again): a made-up disconnect ends the consumer.
            if self.gone.is_set():
                return {"type": "websocket.disconnect", "code": CLOSE_SLOW_READER}
            getter, stopper = asyncio.ensure_future(receive()), asyncio.ensure_future(self.gone.wait())
            done, _ = await asyncio.wait({getter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if getter in done:
                stopper.cancel()
                return getter.result()
            getter.cancel()
            return {"type": "websocket.disconnect", "code": CLOSE_SLOW_READER}

        try:
            await await_many_dispatch([receive_until_gone], self.dispatch)
        except StopConsumer:
            pass
        finally:
            self.closing = True
            for task in (self.worker, self.closer):
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task
            await self.cleanup()

    async def dispatch(self, message):
        kind = message.get("type")
        if kind == "websocket.disconnect":
            raise StopConsumer
        try:
            if kind == "websocket.connect":
                await self._connect()
            elif kind == "websocket.receive" and self.closing:
                # Nothing more is read from a connection being closed: while this waits, uvicorn
                # stops reading its socket, so a client that floods us is held back by TCP.
                await self.gone.wait()
            elif kind == "websocket.receive" and self.ready:
                await self._receive(message)
        except StopConsumer:
            raise
        except Exception as exc:  # noqa: BLE001 - one message's failure must not end the connection or leak a traceback
            logger.exception("%s of %s: a message could not be handled", self.name, self._who())
            if isinstance(exc, DatabaseError):
                await self._send_error("database_unavailable", "The database is unavailable; try again.")
            else:
                await self._send_error("internal_error", "The server could not handle this message.")
            if not self.ready:  # the connect itself failed: there is nothing to go on with
                self._shut(CLOSE_ERROR)

    async def _connect(self) -> None:
        raise NotImplementedError

    async def _receive(self, message: dict) -> None:
        raise NotImplementedError

    def setup(self) -> None:
        """Per-connection state (called before the first message)."""

    async def cleanup(self) -> None:
        """The connection is over (its task is stopped); must not raise."""

    def authenticated(self) -> tuple[str, str] | None:
        """None when the connection has a user; else the error code and message to refuse it with."""
        if self.scope.get("auth_error"):
            return "authentication_failed", self.scope["auth_error"]
        if self.user is None or not self.user.is_authenticated:
            return "not_authenticated", "Sign in, or give an API token as ?token=."
        return None

    async def _refuse(self, code: str, message: str, close_code: int) -> None:
        await self._send_error(code, message)
        self._shut(close_code)

    async def _send_error(self, code: str, message: str, **extra) -> None:
        await self._send_json({"type": "error", "code": code, "message": message, **extra})

    async def _send_json(self, payload: dict) -> bool:
        return await self._send_text(json.dumps(payload, allow_nan=False))

    async def _send_text(self, text: str) -> bool:
        """Send one message within LIVE_SEND_TIMEOUT; a client that does not take it in time is
        closed with 4408 (uvicorn holds a send while the client's socket is full)."""
        if self.closing:
            return False
        try:
            async with asyncio.timeout(self.send_timeout):
                async with self.send_lock:
                    await self.base_send({"type": "websocket.send", "text": text})
            return True
        except TimeoutError:
            logger.warning("%s of %s: the client read nothing for %.1f s: closing (4408)", self.name, self._who(),
                           self.send_timeout)
            self._shut(CLOSE_SLOW_READER)
        except Exception as exc:  # noqa: BLE001 - the server closed it (client gone, keepalive timeout): we end too
            logger.info("%s of %s: send failed (%s): closing", self.name, self._who(), exc.__class__.__name__)
            self._shut(CLOSE_ERROR)
        return False

    def _shut(self, code: int) -> None:
        """Stop the connection's task and close with ``code`` (from a task of its own: the caller
        may be that task, which this cancels)."""
        if self.closing:
            return
        self.closing = True
        if self.worker is not None:
            self.worker.cancel()
        self.closer = asyncio.ensure_future(self._close(code))

    async def _close(self, code: int) -> None:
        try:
            async with asyncio.timeout(max(self.send_timeout, CLOSE_WAIT_SECONDS)):
                async with self.send_lock:
                    await self.base_send({"type": "websocket.close", "code": code})
        except Exception:  # noqa: BLE001, S110 - not read in time, or already closed by the server: nothing to add
            pass
        finally:
            self.gone.set()

    def _who(self) -> str:
        user = self.user
        return user.get_username() if user is not None and user.is_authenticated else "anonymous"
