"""Series completion: when a series has stopped arriving and can be analysed.

A series is complete after ``completion.quiet_seconds`` without a new instance, or as
soon as the association that sent it is released if its slice positions are contiguous
with no gap. Either way the change is a conditional UPDATE (only a series still
receiving, and with the arrival time we looked at), so a late instance, another process
or a second sweep can never complete a series twice or complete it under a newer
instance. An instance that arrives later reopens the series (see assistant/intake/ingest.py).

``on_complete`` is the one place where completed series leave this module: the job
queue subscribes there.
"""

from __future__ import annotations

import itertools
import logging
import statistics
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, select, update

from assistant.db import CompletionReason, Database, Instance, Series, SeriesState, utcnow
from assistant.settings import CompletionSettings

LOGGER = logging.getLogger(__name__)

#: Largest spacing allowed between neighbouring slices, relative to the median spacing,
#: for a series to count as gap-free (one missing slice doubles a gap).
GAP_TOLERANCE = 1.25
#: Fewer slices than this never complete early: two points are always "contiguous".
MIN_SLICES_FOR_EARLY_COMPLETION = 3


@dataclass(frozen=True)
class CompletedSeries:
    series_pk: int
    series_instance_uid: str
    reason: CompletionReason
    instance_count: int


def is_contiguous(positions: Sequence[float | None]) -> bool:
    """True when every slice has a position along the normal and no slice is missing.

    Duplicate positions (two stacks in one series) and spacings more than 25% above
    the median count as gaps; irregularly spaced series then wait for the quiet period.
    """
    if len(positions) < MIN_SLICES_FOR_EARLY_COMPLETION or any(p is None for p in positions):
        return False
    ordered = sorted(float(p) for p in positions if p is not None)
    spacings = [b - a for a, b in itertools.pairwise(ordered)]
    if min(spacings) <= 1e-3:
        return False
    return max(spacings) <= GAP_TOLERANCE * statistics.median(spacings)


def main_stack_positions(rows: Iterable[tuple[float | None, str]]) -> list[float | None]:
    """The positions of the instances in the series' most common orientation: a
    localizer or a reformat in another orientation does not hold the stack back."""
    listed = list(rows)
    counts = Counter(orientation for _, orientation in listed)
    if not counts:
        return []
    main = counts.most_common(1)[0][0]
    return [position for position, orientation in listed if orientation == main]


def _log_completion(series: CompletedSeries) -> None:
    LOGGER.info(
        "series %d complete (%s, %d instances)",
        series.series_pk,
        series.reason.value,
        series.instance_count,
    )


class SeriesCompletion:
    """Decides completion; a background thread sweeps for quiet series."""

    def __init__(
        self,
        db: Database,
        settings: CompletionSettings,
        on_complete: Callable[[CompletedSeries], None] = _log_completion,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._sessions = db.sessions
        self._write_lock = db.write_lock
        self._settings = settings
        self._on_complete = on_complete
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._listening_since: datetime | None = None

    def association_released(self, series_uids: Iterable[str]) -> list[CompletedSeries]:
        """Complete, now, each series whose slices are contiguous with no gap."""
        completed = []
        for uid in series_uids:
            done = self._complete_if_contiguous(uid)
            if done is not None:
                completed.append(done)
        self._notify(completed)
        return completed

    def sweep(self) -> list[CompletedSeries]:
        """Complete every series that has been quiet for the quiet period, counted from
        when this node began listening: silence while the node was down (or crashed)
        says nothing, as the senders could not reach it."""
        now = self._clock()
        cutoff = now - timedelta(seconds=self._settings.quiet_seconds)
        if self._listening_since is not None and self._listening_since > cutoff:
            return []
        with self._write_lock, self._sessions() as session, session.begin():
            rows = session.execute(
                update(Series)
                .where(Series.state == SeriesState.RECEIVING, Series.last_received_at <= cutoff)
                .values(
                    state=SeriesState.COMPLETE,
                    completed_at=now,
                    completion_reason=CompletionReason.QUIET_PERIOD,
                )
                .returning(Series.id, Series.series_instance_uid, Series.instance_count)
            ).all()
        completed = [
            CompletedSeries(
                row.id, row.series_instance_uid, CompletionReason.QUIET_PERIOD, row.instance_count
            )
            for row in rows
        ]
        self._notify(completed)
        return completed

    def _complete_if_contiguous(self, series_uid: str) -> CompletedSeries | None:
        with self._write_lock, self._sessions() as session, session.begin():
            series = session.execute(
                select(
                    Series.id, Series.state, Series.last_received_at, Series.instance_count
                ).where(Series.series_instance_uid == series_uid)
            ).first()
            if series is None or series.state is not SeriesState.RECEIVING:
                return None
            rows = session.execute(
                select(Instance.slice_position, Instance.image_orientation).where(
                    Instance.series_pk == series.id
                )
            ).all()
            if not is_contiguous(main_stack_positions(rows)):
                return None
            # An UPDATE executes to a CursorResult (which has rowcount); Session.execute
            # is typed as returning the general Result.
            result = cast(
                CursorResult[Any],
                session.execute(
                    update(Series)
                    .where(
                        Series.id == series.id,
                        Series.state == SeriesState.RECEIVING,
                        Series.last_received_at == series.last_received_at,
                    )
                    .values(
                        state=SeriesState.COMPLETE,
                        completed_at=self._clock(),
                        completion_reason=CompletionReason.CONTIGUOUS_AFTER_RELEASE,
                    )
                ),
            )
            if result.rowcount != 1:
                return None
        return CompletedSeries(
            series.id, series_uid, CompletionReason.CONTIGUOUS_AFTER_RELEASE, series.instance_count
        )

    def _notify(self, completed: Iterable[CompletedSeries]) -> None:
        for series in completed:
            try:
                self._on_complete(series)
            except Exception:  # the state is already in the database; a sweep won't redo it
                LOGGER.exception("on_complete failed for series %d", series.series_pk)

    # -- background sweeping -----------------------------------------------------------

    def start(self) -> None:
        """Sweep every ``check_interval_seconds`` in a daemon thread until stop()."""
        self._listening_since = self._clock()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="series-completion", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self._settings.check_interval_seconds):
            try:
                self.sweep()
            except Exception:  # a locked or restarting database must not end the sweeps
                LOGGER.exception("completion sweep failed; trying again")
