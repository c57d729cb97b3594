"""The outbox: every result object goes to every destination, once.

One row per (object, destination). A sender claims due rows with a conditional UPDATE
(pending → sending), sends, and records the peer's status: sent, or pending again with
an exponential back-off, or failed after ``delivery.max_attempts``. A sender that dies
mid-send leaves rows "sending"; they are due again after ``CLAIM_TIMEOUT``. Sending an
object twice can only happen then, and sends the same SOP Instance UID, which a PACS
stores once.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from assistant.db import Database, Delivery, DeliveryState, ResultKind, ResultObject, utcnow
from assistant.delivery.rules import wants
from assistant.delivery.senders import Sender
from assistant.settings import DeliverySettings, Destination

LOGGER = logging.getLogger(__name__)

#: A claim older than this is taken to belong to a sender that died.
CLAIM_TIMEOUT = timedelta(minutes=10)
#: Most rows one pass sends to one destination (one association).
BATCH = 64


def _told_of(session: Session, message_id: str | None) -> set[str]:
    """The destinations the notice `message_id` was queued for (none for None)."""
    if not message_id:
        return set()
    return set(
        session.scalars(
            select(Delivery.destination)
            .join(ResultObject, ResultObject.id == Delivery.result_pk)
            .where(ResultObject.sop_instance_uid == message_id)
        )
    )


def backoff(attempts: int, settings: DeliverySettings) -> timedelta:
    """The wait after the `attempts`-th failure: doubling from backoff_seconds."""
    seconds = settings.backoff_seconds * 2 ** max(attempts - 1, 0)
    return timedelta(seconds=min(seconds, settings.max_backoff_seconds))


class Outbox:
    def __init__(
        self,
        db: Database,
        destinations: Sequence[Destination],
        settings: DeliverySettings,
        data_dir: Path,
        senders: Mapping[str, Sender],
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        """`senders`: the sender of each destination kind (see `senders.make_senders`)."""
        missing = sorted({d.kind for d in destinations} - set(senders))
        if missing:
            raise ValueError(f"no sender for destination kind(s) {', '.join(missing)}")
        self._db = db
        self._sessions = db.sessions
        self._settings = settings
        self._data_dir = data_dir
        self._write_lock = db.write_lock
        self._clock = clock
        self._senders = dict(senders)
        self._destinations = {d.name: d for d in destinations}
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def destination_names(self) -> list[str]:
        return list(self._destinations)

    def add(
        self, session: Session, result: ResultObject, notice: dict[str, Any] | None = None
    ) -> None:
        """Queue `result` for its destinations, in the caller's transaction: a DICOM
        object for every DICOM destination; a notice (`notice`, the document of a NOTICE
        result) for each notification destination whose rule it meets, and for every
        one the notice it corrects was queued for. A row that exists already (the same
        object written before) is left as it is."""
        known = set(
            session.scalars(select(Delivery.destination).where(Delivery.result_pk == result.id))
        )
        if result.kind is ResultKind.NOTICE:
            told = _told_of(session, notice["replaces"] if notice else None)
            wanted = [
                name
                for name, destination in self._destinations.items()
                if destination.notifies
                and (name in told or (notice is not None and wants(destination, notice)))
            ]
        else:
            wanted = [name for name, d in self._destinations.items() if not d.notifies]
        for name in wanted:
            if name not in known:
                session.add(
                    Delivery(
                        result_pk=result.id,
                        destination=name,
                        state=DeliveryState.PENDING,
                        attempts=0,
                        next_attempt_at=self._clock(),
                        last_error="",
                    )
                )

    def retry(self, delivery_id: int) -> bool:
        """Make a failed (or pending) delivery due now; False if it was already sent."""
        return make_due(self._db, delivery_id, self._clock())

    def deliver_due(self) -> int:
        """Send every due row; returns how many were acknowledged."""
        claimed = self._claim()
        if not claimed:
            return 0
        by_destination: dict[str, list[tuple[int, int, Path]]] = defaultdict(list)
        for delivery_id, destination, attempts, path in claimed:
            by_destination[destination].append((delivery_id, attempts, self._data_dir / path))
        acknowledged = 0
        # Notifications first: a reader is told no later than the PACS gets the SR.
        for name in sorted(by_destination, key=lambda n: not self._destinations[n].notifies):
            acknowledged += self._deliver(self._destinations[name], by_destination[name])
        return acknowledged

    def _claim(self) -> list[tuple[int, str, int, str]]:
        now = self._clock()
        with self._write_lock, self._sessions() as session, session.begin():
            due = session.execute(
                select(
                    Delivery.id,
                    Delivery.destination,
                    Delivery.attempts,
                    Delivery.state,
                    Delivery.claimed_at,
                    ResultObject.path,
                )
                .join(ResultObject, ResultObject.id == Delivery.result_pk)
                .where(
                    Delivery.destination.in_(list(self._destinations)),
                    ((Delivery.state == DeliveryState.PENDING) & (Delivery.next_attempt_at <= now))
                    | (
                        (Delivery.state == DeliveryState.SENDING)
                        & (Delivery.claimed_at <= now - CLAIM_TIMEOUT)
                    ),
                )
                .order_by(Delivery.next_attempt_at, Delivery.id)
                .limit(BATCH * max(len(self._destinations), 1))
            ).all()
            claimed = []
            for row in due:
                # Only if nobody claimed it since we looked (another sender or process).
                unchanged = (
                    Delivery.claimed_at.is_(None)
                    if row.claimed_at is None
                    else Delivery.claimed_at == row.claimed_at
                )
                # An UPDATE executes to a CursorResult (which has rowcount);
                # Session.execute is typed as returning the general Result.
                result = cast(
                    CursorResult[Any],
                    session.execute(
                        update(Delivery)
                        .where(Delivery.id == row.id, Delivery.state == row.state, unchanged)
                        .values(state=DeliveryState.SENDING, claimed_at=now)
                    ),
                )
                if result.rowcount == 1:
                    claimed.append((row.id, row.destination, row.attempts, row.path))
        return claimed

    def _deliver(self, destination: Destination, rows: list[tuple[int, int, Path]]) -> int:
        give_up = False
        try:
            results = self._senders[destination.kind]([path for _, _, path in rows], destination)
            by_path = {result.path: result for result in results}
        except OSError as exc:  # the network, the peer, a TLS file: retried like any failure
            LOGGER.warning("sending to %s failed: %s", destination.name, exc)
            by_path = {}
            error = str(exc) or type(exc).__name__
        except Exception as exc:  # a fault of ours: retrying would only repeat it
            LOGGER.exception("sending to %s failed with an internal error", destination.name)
            by_path = {}
            error = f"internal error: {type(exc).__name__}: {exc} (see the log; retry once fixed)"
            give_up = True
        else:
            error = "no result from the sender"
        now = self._clock()
        acknowledged = 0
        with self._write_lock, self._sessions() as session, session.begin():
            for delivery_id, attempts, path in rows:
                result = by_path.get(path)
                if result is not None and result.outcome in ("sent", "warning"):
                    values = {
                        "state": DeliveryState.SENT,
                        "peer_status": result.status,
                        "sent_at": now,
                        "attempts": attempts + 1,
                        "last_error": result.detail,
                    }
                    acknowledged += 1
                else:
                    tries = attempts + 1
                    detail = (result.detail or result.outcome) if result is not None else error
                    # "rejected": the peer refused it for good (an HTTP 4xx other than
                    # 408/429, an HL7 AR): sending it again would be refused again
                    rejected = result is not None and result.outcome == "rejected"
                    failed = give_up or rejected or tries >= self._settings.max_attempts
                    values = {
                        "state": DeliveryState.FAILED if failed else DeliveryState.PENDING,
                        "peer_status": result.status if result is not None else None,
                        "attempts": tries,
                        "last_error": detail[:2000],
                        "next_attempt_at": now + backoff(tries, self._settings),
                    }
                    log = LOGGER.error if failed else LOGGER.warning
                    log(
                        "delivery %d to %s: attempt %d failed (%s)%s",
                        delivery_id,
                        destination.name,
                        tries,
                        detail,
                        "; giving up" if failed else "",
                    )
                session.execute(
                    update(Delivery)
                    .where(Delivery.id == delivery_id, Delivery.state == DeliveryState.SENDING)
                    .values(**values)
                )
        if acknowledged:
            LOGGER.info("%d result object(s) delivered to %s", acknowledged, destination.name)
        return acknowledged

    # -- background sending --------------------------------------------------------------

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="outbox", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Send what is due now rather than at the next poll (new rows were added)."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._settings.poll_seconds)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self.deliver_due()
            except Exception:  # a locked database or a bad row must not end the sender
                LOGGER.exception("outbox pass failed; trying again")


def make_due(db: Database, delivery_id: int, now: datetime) -> bool:
    """Make a failed (or pending) delivery due at `now` with a fresh count of attempts;
    False if there is no such row or it was sent (a sent result is never sent again).
    Any process may call it: the outbox that owns the destination picks the row up."""
    with db.writing() as session:
        # An UPDATE executes to a CursorResult (which has rowcount); Session.execute
        # is typed as returning the general Result.
        result = cast(
            CursorResult[Any],
            session.execute(
                update(Delivery)
                .where(
                    Delivery.id == delivery_id,
                    Delivery.state.in_([DeliveryState.FAILED, DeliveryState.PENDING]),
                )
                .values(state=DeliveryState.PENDING, next_attempt_at=now, attempts=0)
            ),
        )
    return result.rowcount == 1
