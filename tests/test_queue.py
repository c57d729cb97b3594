"""The job queue on both backends: SQLite in the data folder, and a real Redis server."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from assistant.queue import JobQueue, make_huey
from assistant.settings import QueueSettings, Settings, StorageSettings
from tests.peers.redis import redis_server
from tests.peers.tools import wait_until


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


def _settings(tmp_path: Path, redis_url: str = "") -> Settings:
    return dataclasses.replace(
        Settings(),
        storage=StorageSettings(data_dir=tmp_path / "var"),
        queue=QueueSettings(redis_url=redis_url),
    )


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("redis", marks=pytest.mark.integration)]
)
def test_a_job_enqueued_in_one_process_runs_in_a_worker(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("redis_url") if backend == "redis" else ""
    settings = _settings(tmp_path, url)
    producer = JobQueue(make_huey(settings))  # the SCP side: no runner
    ran: list[int] = []
    consumer = JobQueue(make_huey(settings), run_job=ran.append)
    for job_id in (3, 1, 2):
        producer.enqueue(job_id)
    stop = threading.Event()
    worker = threading.Thread(target=consumer.work, args=(stop,))
    worker.start()
    try:
        wait_until(lambda: len(ran) == 3, timeout=10)
    finally:
        stop.set()
        worker.join(timeout=10)
    assert ran == [3, 1, 2]
    assert consumer.pending() == 0


def test_a_producer_cannot_run_jobs(tmp_path: Path) -> None:
    queue = JobQueue(make_huey(_settings(tmp_path)))
    queue.enqueue(7)
    task = queue.huey.dequeue()
    with pytest.raises(RuntimeError, match="does not run jobs"):
        task.execute()
