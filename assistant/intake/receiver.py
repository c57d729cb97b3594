"""The receiving side of the node at run time: start-up recovery, the SCP, completion.

Built by the composition root (`assistant.cli.build_receiver`); `radassist scp` and
`radassist serve` run one, the tests start one on a free port.
"""

from __future__ import annotations

import logging
import sys

from assistant.db import Database
from assistant.intake.completion import SeriesCompletion
from assistant.intake.ingest import Ingest
from assistant.intake.processes import ReceiverProcesses
from assistant.intake.submit import JobSubmitter
from assistant.settings import Settings
from assistant.storage import InstanceStore
from dicom_node import StorageSCP

LOGGER = logging.getLogger(__name__)


class Receiver:
    """Everything that takes instances in and decides when series are complete."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        store: InstanceStore,
        ingest: Ingest,
        completion: SeriesCompletion,
        scp: StorageSCP | ReceiverProcesses,
        submitter: JobSubmitter | None = None,
    ) -> None:
        """`scp`: the SCP, or the receiver processes that each run one (node.processes).
        `submitter`: the completion hook that queues jobs, when this process has one
        (it submits series a crash left complete without a job, at start-up)."""
        self.settings = settings
        self.db = db
        self.store = store
        self.ingest = ingest
        self.completion = completion
        self.scp = scp
        self._submitter = submitter
        #: Present while a receiver runs; found at start-up, it means the last one crashed.
        self._running_marker = settings.storage.data_dir / "receiver.running"

    def start(self) -> None:
        # pynetdicom hands each C-STORE between its network and association threads
        # many times; with CPython's default 5 ms GIL switch interval the handler's
        # median time was 7.1 ms, with 1 ms 4.2 ms (300 slices, this 2-core machine,
        # noisy). Process-wide, but mild.
        sys.setswitchinterval(0.001)
        removed = self.store.remove_partial_files()
        if removed:
            LOGGER.warning("removed %d partial file(s) left by an earlier crash", removed)
        if self._running_marker.exists():  # the last run did not stop cleanly
            recorded = self.ingest.record_unrecorded_files()
            LOGGER.warning("unclean stop before: %d stored file(s) re-recorded", recorded)
        # Replacements are made by the SCP and by STOW-RS (in the web process): a kill of
        # either between the file swap and its row is looked for at every start.
        replaced = self.ingest.record_unrecorded_replacements()
        if replaced:
            LOGGER.warning("%d replaced instance(s) recorded after an interrupted change", replaced)
        self._running_marker.parent.mkdir(parents=True, exist_ok=True)
        self._running_marker.touch()
        # Complete series that never got a job get one.
        if self._submitter is not None:
            self._submitter.submit_unjobbed()
        self.scp.start()
        # Series left receiving by a stop complete after a quiet period counted from now,
        # once the port is open (senders retry once we are back): receiver processes take
        # seconds to start, and that silence says nothing.
        self.completion.start()

    def stop(self) -> None:
        self.scp.stop()
        self.completion.stop()
        self.db.dispose()
        self._running_marker.unlink(missing_ok=True)
