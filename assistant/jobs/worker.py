"""A worker: threads that take jobs from the queue and run them, and the outbox sender.

`radassist worker` runs one alone; `radassist serve` runs one beside the SCP.
"""

from __future__ import annotations

import logging
import threading
from contextlib import AbstractContextManager

from sqlalchemy import Engine

from assistant.db import make_session_factory, make_write_lock
from assistant.jobs.outbox import Outbox
from assistant.jobs.queue import JobQueue, make_huey
from assistant.settings import Settings

LOGGER = logging.getLogger(__name__)


class Worker:
    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        write_lock: AbstractContextManager[object] | None = None,
    ) -> None:
        """`write_lock`: the receiver's, when both run in one process (SQLite)."""
        from assistant.jobs.analysis import Analysis  # torch: only where jobs run
        from assistant.model import load_model

        self.settings = settings
        sessions = make_session_factory(engine)
        write_lock = write_lock if write_lock is not None else make_write_lock(engine)
        self.outbox = Outbox(
            sessions,
            settings.destinations,
            settings.delivery,
            settings.storage.data_dir,
            calling_ae=settings.node.ae_title,
            write_lock=write_lock,
        )
        self.model = load_model(settings.model.folder)
        self.analysis = Analysis(settings, sessions, self.model, self.outbox, write_lock)
        self.queue = JobQueue(make_huey(settings), run_job=self.analysis.run)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self._stop.clear()
        try:
            self.analysis.warm_up()
        except Exception:  # a slower first study, nothing worse
            LOGGER.exception("warming up the model and writers failed")
        for job_id in self.analysis.recover():
            self.queue.enqueue(job_id)  # a duplicate message finds the job claimed
        for n in range(self.settings.queue.workers):
            thread = threading.Thread(
                target=self.queue.work, args=(self._stop,), name=f"job-worker-{n}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        self.outbox.start()
        card = self.model.card
        LOGGER.info(
            "worker started: model %s %s, %d thread(s), destinations %s",
            card.name,
            card.version,
            self.settings.queue.workers,
            ", ".join(self.outbox.destination_names) or "(none)",
        )

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=120)
        self._threads.clear()
        self.outbox.stop()
