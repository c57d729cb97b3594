"""A node that analyses and delivers to a PACS (Orthanc), with a config file for the
command line: the fixture of the end-to-end model and learning tests."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from assistant.cli import build_worker
from assistant.db import Job, Series
from assistant.intake.receiver import Receiver
from assistant.settings import DeliverySettings, Destination
from tests.peers.orthanc import Orthanc


@contextmanager
def analysing_node(
    start_node: Callable[..., Receiver],
    start_orthanc: Callable[..., Orthanc],
    tmp_path: Path,
    modalities: Callable[[Receiver], dict[str, tuple[str, str, int]]] = lambda _: {},
) -> Iterator[tuple[Receiver, Orthanc, Path]]:
    """A started node (receiver and worker) whose results go to a started Orthanc (told
    `modalities(receiver)`), and `radassist.toml` naming its data folder and database."""
    receiver = start_node(quiet_seconds=1.0)
    orthanc = start_orthanc(modalities(receiver))
    settings = dataclasses.replace(
        receiver.settings,
        destinations=(
            Destination("pacs", host="127.0.0.1", port=orthanc.dicom_port, ae_title="ORTHANC"),
        ),
        delivery=DeliverySettings(backoff_seconds=1.0, max_backoff_seconds=2.0, poll_seconds=0.2),
    )
    config = tmp_path / "radassist.toml"
    config.write_text(
        f'[storage]\ndata_dir = "{settings.storage.data_dir}"\n'
        f'[database]\nurl = "{settings.database_url}"\n'
    )
    worker = build_worker(settings, receiver.db)
    worker.start()
    try:
        yield receiver, orthanc, config
    finally:
        worker.stop()


def series_jobs(session: Session, series_uid: str) -> list[Job]:
    """A series' jobs, live ones first, each in the order made."""
    return list(
        session.scalars(
            select(Job)
            .join(Series, Series.id == Job.series_pk)
            .where(Series.series_instance_uid == series_uid)
            .order_by(Job.shadow, Job.id)
        )
    )
