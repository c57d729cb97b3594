"""A real webhook receiver for tests: an HTTP server on a free loopback port that checks
each request the way docs/notifications.md tells a site to, and remembers what came.

It refuses a bad or missing signature and a timestamp more than `tolerance` seconds from
its clock (401), a body that is not JSON or an Idempotency-Key that is not the body's
message_id (400), a body that breaks NOTICE_SCHEMA (422). It keeps each message once
(by Idempotency-Key) and counts the duplicates, answering them 200 as a receiver should.
Tests make it answer a given status for the next requests (`answer`) and stop and start
it on the same port to play a receiver that is down, then up.

The signature is checked here with hmac directly, not with the sender's `signature()`,
so a fault shared by signing and checking cannot hide.
"""

from __future__ import annotations

import email.message
import hashlib
import hmac
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from jsonschema import Draft202012Validator

from assistant.delivery.notice import NOTICE_SCHEMA

#: How far a request's timestamp may be from the receiver's clock (docs: 5 minutes).
TOLERANCE_SECONDS = 300.0

_VALIDATOR = Draft202012Validator(NOTICE_SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER)


class SignatureError(ValueError):
    """Why a request's signature does not hold."""


def verify(
    secret: bytes,
    timestamp: str,
    signature: str,
    body: bytes,
    *,
    now: float,
    tolerance: float = TOLERANCE_SECONDS,
) -> None:
    """Check X-Radassist-Timestamp and X-Radassist-Signature for `body`; SignatureError
    says why they fail. A signature header may list several ``v1=`` values (a key being
    rotated): one that matches is enough."""
    if not (timestamp.isascii() and timestamp.isdigit()):
        raise SignatureError(f"timestamp {timestamp!r} is not unix seconds")
    age = now - int(timestamp)
    if abs(age) > tolerance:
        raise SignatureError(f"timestamp is {age:.0f} s old (a replay?)")
    expected = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    given = [value.strip()[3:] for value in signature.split(",") if value.strip().startswith("v1=")]
    if not given:
        raise SignatureError("no v1= signature")
    if not any(hmac.compare_digest(expected, value) for value in given):
        raise SignatureError("signature does not match")


@dataclass(frozen=True)
class Received:
    """One message kept (the first request with its Idempotency-Key)."""

    message_id: str
    body: bytes
    headers: dict[str, str]
    notice: dict[str, Any]


@dataclass
class _Answer:
    status: int
    times: int
    body: bytes
    headers: dict[str, str]
    delay: float


@dataclass(eq=False)
class WebhookReceiver:
    """The receiver (see the module's docstring). Use as a context manager, or call
    `start` and `stop`; `url` is where to POST. `attempts` counts every request,
    `refusals` lists (status, why) of those it refused by its checks."""

    secret: bytes
    path: str = "/hooks/radassist"
    tolerance: float = TOLERANCE_SECONDS
    clock: Callable[[], float] = time.time
    received: list[Received] = field(default_factory=list)
    duplicates: int = 0
    attempts: int = 0
    refusals: list[tuple[int, str]] = field(default_factory=list)
    port: int = 0
    _answers: deque[_Answer] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _server: _Server | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    def start(self) -> None:
        """Listen (again) on `port`, or on a free port the first time."""
        self._stopping.clear()
        self._server = _Server(("127.0.0.1", self.port), _Handler)
        self._server.receiver = self
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop listening: connections are refused until `start`. What it received stays."""
        if self._server is None:
            return
        self._stopping.set()  # a delayed answer ends now
        self._server.shutdown()
        self._server.server_close()  # waits for the requests being answered
        if self._thread is not None:
            self._thread.join()
        self._server = self._thread = None

    def __enter__(self) -> WebhookReceiver:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def answer(
        self,
        status: int,
        times: int = 1,
        body: str = "",
        headers: dict[str, str] | None = None,
        delay: float = 0.0,
    ) -> None:
        """Answer the next `times` requests with `status` (after `delay` seconds),
        without looking at them."""
        with self._lock:
            self._answers.append(_Answer(status, times, body.encode(), headers or {}, delay))

    def handle(
        self, path: str, headers: email.message.Message, body: bytes
    ) -> tuple[int, bytes, dict[str, str]]:
        """(status, body, headers) of the answer to one POST."""
        with self._lock:
            self.attempts += 1
            forced = self._answers[0] if self._answers else None
            if forced is not None:
                forced.times -= 1
                if forced.times <= 0:
                    self._answers.popleft()
        if forced is not None:
            self._stopping.wait(forced.delay)
            return forced.status, forced.body, forced.headers
        status, why, notice = self._check(path, headers, body)
        with self._lock:
            if status != 200:
                self.refusals.append((status, why))
                return status, json.dumps({"error": why}).encode(), {}
            message_id = notice["message_id"]
            if any(r.message_id == message_id for r in self.received):
                self.duplicates += 1
                return 200, b'{"duplicate":true}', {}
            self.received.append(Received(message_id, body, dict(headers.items()), notice))
            return 200, b'{"received":true}', {}

    def _check(
        self, path: str, headers: email.message.Message, body: bytes
    ) -> tuple[int, str, dict[str, Any]]:
        """(200, "", the notice), or the status of a refusal and why."""
        if path.split("?")[0] != self.path:
            return 404, f"no webhook at {path}", {}
        if headers.get("Content-Type", "").split(";")[0].strip() != "application/json":
            return 415, "not application/json", {}
        try:
            verify(
                self.secret,
                headers.get("X-Radassist-Timestamp", ""),
                headers.get("X-Radassist-Signature", ""),
                body,
                now=self.clock(),
                tolerance=self.tolerance,
            )
        except SignatureError as exc:
            return 401, str(exc), {}
        try:
            notice = json.loads(body)
        except ValueError as exc:
            return 400, f"not JSON: {exc}", {}
        errors = sorted(_VALIDATOR.iter_errors(notice), key=lambda e: list(e.path))
        if errors:
            where = "/".join(str(part) for part in errors[0].path)
            return 422, f"not a notice: {where}: {errors[0].message}", {}
        if headers.get("Idempotency-Key") != notice["message_id"]:
            return 400, "Idempotency-Key is not the message_id", {}
        return 200, "", notice


class _Server(ThreadingHTTPServer):
    # Wait for the requests being answered when closed, so a test ends with no thread.
    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True
    receiver: WebhookReceiver

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (the sender's timeout) is no fault of the receiver."""


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        status, reply, headers = self.server.receiver.handle(self.path, self.headers, body)
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **headers}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: pytest shows the test's own output."""
