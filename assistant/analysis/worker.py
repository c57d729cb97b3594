"""A worker: threads that take jobs from the queue and run them, and the outbox sender.

`radassist worker` runs one alone; `radassist serve` runs one beside the SCP.
"""

from __future__ import annotations

import logging
import threading

from assistant.analysis.pipeline import Analysis
from assistant.delivery.outbox import Outbox
from assistant.queue import JobQueue

LOGGER = logging.getLogger(__name__)


class Worker:
    """Runs jobs from `queue` through `analysis` on `threads` threads, and the outbox.

    Built by the composition root (`assistant.cli.build_worker`) from Settings.
    """

    def __init__(
        self,
        analysis: Analysis,
        queue: JobQueue,
        outbox: Outbox,
        threads: int = 1,
    ) -> None:
        self.analysis = analysis
        self.queue = queue
        self.outbox = outbox
        self.threads = threads
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self._stop.clear()
        # A model or writer that fails on a synthetic series would fail every job: stop
        # here with the reason (WarmUpFailed) instead of taking jobs only to fail them.
        models = self.analysis.warm_up()
        for job_id in self.analysis.recover():
            self.queue.enqueue(job_id)  # a duplicate message finds the job claimed
        for n in range(self.threads):
            thread = threading.Thread(
                target=self.queue.work, args=(self._stop,), name=f"job-worker-{n}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        self.outbox.start()
        LOGGER.info(
            "worker started: models %s, %d thread(s), destinations %s",
            ", ".join(models) or "(none live or in shadow)",
            self.threads,
            ", ".join(self.outbox.destination_names) or "(none)",
        )

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=120)
        self._threads.clear()
        self.outbox.stop()
