"""The audit trail: who did what, when, from where (the IHE ATNA events a hospital asks
for: logins, study views, queries, retrievals, uploads, changes).

Rows are written in batches by a background thread once `start()` has run, so that a
busy viewer (hundreds of frame retrievals a study) or a flood of wrong passwords costs
one short transaction a second, not one per request; events of one kind, user, address
target and detail within `coalesce_seconds` become one row that counts them. Before `start()`
(command-line tools, tests) each event is written at once. At most the last second of
events (or one coalescing window) is lost if the process is killed.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from assistant.db import AuditEvent, Database, utcnow

LOGGER = logging.getLogger(__name__)

#: Seconds between batch writes.
FLUSH_SECONDS = 1.0
#: Rows a transaction writes at most.
BATCH_ROWS = 500
#: Distinct coalescing events held at most before they are written as they are.
MAX_PENDING = 5_000


@dataclass
class _Pending:
    action: str
    username: str
    target: str
    remote_addr: str
    detail: str
    at: object = field(default_factory=utcnow)
    count: int = 1
    first_seen: float = field(default_factory=time.monotonic)


class AuditTrail:
    """Appends audit rows; thread-safe."""

    def __init__(self, db: Database, coalesce_seconds: float = 60.0) -> None:
        self._db = db
        self._coalesce_seconds = coalesce_seconds
        self._lock = threading.Lock()
        self._queue: list[_Pending] = []
        self._coalescing: dict[tuple[str, str, str, str, str], _Pending] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def record(
        self,
        action: str,
        *,
        username: str = "",
        target: str = "",
        remote_addr: str = "",
        detail: str = "",
        coalesce: bool = False,
    ) -> None:
        """One event. `coalesce`: count repeats (same action, user, address, target and
        detail) within the coalescing window into one row instead of a row each."""
        event = _Pending(action, username[:64], target[:128], remote_addr[:64], detail)
        if self._thread is None:  # not started: write now
            self._write([event])
            return
        with self._lock:
            if coalesce:
                key = (event.action, event.username, event.remote_addr, event.target, detail)
                pending = self._coalescing.get(key)
                if pending is not None:
                    pending.count += 1
                    return
                self._coalescing[key] = event
                if len(self._coalescing) > MAX_PENDING:  # many distinct events: write now
                    self._queue.extend(self._coalescing.values())
                    self._coalescing.clear()
            else:
                self._queue.append(event)

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="audit", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Write everything pending, then stop."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.flush(everything=True)

    def flush(self, everything: bool = False) -> int:
        """Write what is due (every plain event, coalesced ones whose window closed, or
        all with `everything`); returns how many rows."""
        now = time.monotonic()
        with self._lock:
            due, self._queue = self._queue, []
            for key, event in list(self._coalescing.items()):
                if everything or now - event.first_seen >= self._coalesce_seconds:
                    due.append(self._coalescing.pop(key))
        if due:
            try:
                self._write(due)
            except Exception:
                with self._lock:  # kept for the next pass, in order
                    self._queue[:0] = due
                raise
        return len(due)

    def _run(self) -> None:
        while not self._stop.wait(FLUSH_SECONDS):
            try:
                self.flush()
            except Exception:  # a locked database must not end the audit trail
                LOGGER.exception("writing audit rows failed; trying again")

    def _write(self, events: list[_Pending]) -> None:
        # In short transactions: a backlog never holds the write lock for long.
        for start in range(0, len(events), BATCH_ROWS):
            self._write_batch(events[start : start + BATCH_ROWS])

    def _write_batch(self, events: list[_Pending]) -> None:
        with self._db.writing() as session:
            for event in events:
                detail = event.detail
                if event.count > 1:
                    detail = f"{detail}; {event.count} times".lstrip("; ")
                session.add(
                    AuditEvent(
                        at=event.at,
                        username=event.username,
                        action=event.action,
                        target=event.target,
                        remote_addr=event.remote_addr,
                        detail=detail,
                    )
                )
