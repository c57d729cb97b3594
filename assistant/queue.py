"""The job queue: huey carries "job N is ready" from whoever completed a series to the
workers. SQLite in the data folder by default (one machine, no server), Redis when
``queue.redis_url`` is set (many machines).

The database, not the queue, holds the truth about jobs: a message is only a nudge,
a worker claims the job with a conditional UPDATE, so a message delivered twice or a
job enqueued again after a crash runs once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from huey import Huey, RedisHuey, SqliteHuey

from assistant.db.files import create_private_file, make_private_dirs
from assistant.settings import Settings

LOGGER = logging.getLogger(__name__)

QUEUE_NAME = "radassist"
TASK_NAME = "radassist.analyse_series"
#: Longest sleep between polls of an empty SQLite queue (Redis blocks instead).
_MAX_IDLE_SECONDS = 0.25


def make_huey(settings: Settings) -> Huey:
    if settings.queue.redis_url:
        return RedisHuey(QUEUE_NAME, results=False, url=settings.queue.redis_url, read_timeout=1)
    path = settings.storage.data_dir / "queue.db"
    make_private_dirs(path.parent)
    create_private_file(path)  # 0600 before SQLite opens it; its -wal and -shm follow
    return SqliteHuey(QUEUE_NAME, results=False, filename=str(path))


class JobQueue:
    """Enqueue job ids; in a worker, run them with the callable given."""

    def __init__(self, huey: Huey, run_job: Callable[[int], None] | None = None) -> None:
        self.huey = huey
        self._run_job = run_job
        self._task = huey.task(name=TASK_NAME)(self._execute)

    def _execute(self, job_id: int) -> None:
        if self._run_job is None:  # only a worker's queue is built with a runner
            raise RuntimeError("this process does not run jobs")
        self._run_job(job_id)

    def enqueue(self, job_id: int) -> None:
        self._task(job_id)

    def pending(self) -> int:
        return self.huey.pending_count()

    def work(self, stop: threading.Event) -> None:
        """Take messages and run them until `stop` is set (one worker thread)."""
        idle = 0.01
        while not stop.is_set():
            try:
                task = self.huey.dequeue()
            except Exception:  # a queue that is briefly unavailable must not end the worker
                LOGGER.exception("cannot read the job queue; trying again")
                stop.wait(1.0)
                continue
            if task is None:
                stop.wait(idle)
                idle = min(idle * 2, _MAX_IDLE_SECONDS)
                continue
            idle = 0.01
            try:
                self.huey.execute(task)
            except Exception:  # the job's own state records the failure
                LOGGER.exception("job task %s failed", task.id)
