"""A real HL7 receiver for tests: python-hl7's MLLP server on a free loopback port, in a
thread with its own event loop.

It keeps every message it receives (parsed with hl7) and answers each with an ACK: AA
by default, or the answers queued with `answer_next` (AE or AR, with a text, or an ACK
of another message), or nothing at all after `never_answer` (a receiver that hangs).

    with MllpListener() as receiver:
        receiver.answer_next("AE", text="database busy")
        ...  # send to 127.0.0.1:receiver.port
        assert len(receiver.received) == 1
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from contextlib import suppress
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from hl7.mllp import start_hl7_server  # type: ignore[import-untyped]


@dataclass(frozen=True)
class Answer:
    """How to answer one message: MSA-1 `code`, with `text` in MSA-3 and an ERR row;
    `acknowledges` in MSA-2 instead of the message's own control id."""

    code: str = "AA"
    text: str = ""
    acknowledges: str | None = None


class MllpListener:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="mllp-listener", daemon=True)
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._lock = threading.Lock()
        self._received: list[Any] = []
        self._answers: deque[Answer] = deque()
        self._silent = False
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.Task[None]] = set()

    # -- what a test sees and sets --------------------------------------------------------

    @property
    def received(self) -> list[Any]:
        """Every message received so far (hl7.Message), in order."""
        with self._lock:
            return list(self._received)

    def answer_next(
        self, code: str, count: int = 1, text: str = "", acknowledges: str | None = None
    ) -> None:
        """Answer the next `count` messages with `code` (then AA again)."""
        with self._lock:
            self._answers.extend([Answer(code, text, acknowledges)] * count)

    def never_answer(self) -> None:
        """Keep every message from now on and answer none of them."""
        with self._lock:
            self._silent = True

    # -- start and stop -------------------------------------------------------------------

    def start(self) -> MllpListener:
        self._thread.start()
        if not self._ready.wait(timeout=10):
            raise RuntimeError("the MLLP listener did not start within 10 s")
        if self._failure is not None:
            raise RuntimeError(f"the MLLP listener did not start: {self._failure}")
        return self

    def stop(self) -> None:
        """Close the server and every open connection; join the thread."""
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)

    def __enter__(self) -> MllpListener:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._server = self._loop.run_until_complete(
                start_hl7_server(self._serve, self.host, 0, encoding="utf-8")
            )
            self.port = self._server.sockets[0].getsockname()[1]
        except BaseException as exc:  # reported by start()
            self._failure = exc
        self._ready.set()
        if self._failure is None:
            self._loop.run_forever()
            self._loop.run_until_complete(self._shutdown())
        self._loop.close()

    async def _shutdown(self) -> None:
        assert self._server is not None
        self._server.close()
        for client in list(self._clients):
            client.cancel()
        await asyncio.gather(*self._clients, return_exceptions=True)
        await self._server.wait_closed()

    # -- one connection -------------------------------------------------------------------

    async def _serve(self, reader: Any, writer: Any) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        try:
            while True:
                try:
                    message = await reader.readmessage()
                except (asyncio.IncompleteReadError, ConnectionError):
                    return  # the sender closed the connection
                with self._lock:
                    self._received.append(message)
                    silent = self._silent
                    answer = self._answers.popleft() if self._answers else Answer()
                if silent:
                    continue
                writer.writemessage(_ack(message, answer))
                await writer.drain()
        finally:
            writer.close()
            with suppress(OSError, asyncio.CancelledError):
                await writer.wait_closed()
            self._clients.discard(task)


def _ack(message: Any, answer: Answer) -> Any:
    """The ACK of `message` as `answer` says: MSH, MSA, and for a text an ERR row
    (ERR-3 207 "Application internal error", ERR-4 E, ERR-8 the text)."""
    ack = message.create_ack(ack_code=answer.code, application="TESTRIS", facility="WARD")
    msa = ack.segment("MSA")
    if answer.acknowledges is not None:
        msa.assign_field(answer.acknowledges, 2)
    if answer.text:
        msa.assign_field(ack.escape(answer.text), 3)
        err = ack.create_segment([ack.create_field(["ERR"])])
        err.assign_field("207", 3, 1, 1)
        err.assign_field("Application internal error", 3, 1, 2)
        err.assign_field("HL70357", 3, 1, 3)
        err.assign_field("E", 4)
        err.assign_field(ack.escape(answer.text), 8)
        ack.append(err)
    return ack
