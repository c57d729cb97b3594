"""Receiver processes sharing the node's DICOM port, and their supervisor.

One Python process serves its associations under one GIL, so a second core sits idle
while several modalities send at once. With node.processes > 1 the process that
`radassist serve` or `scp` started supervises that many receiver processes, each with
its own SCP bound to the same port with SO_REUSEPORT (the kernel spreads connections
over them) and its own database connections. It starts them and waits until each
listens, starts again one that dies, and stops them all on SIGTERM or SIGINT.

What stays correct across processes is kept by the database, not by this module:
an instance row is unique by SOP Instance UID, a series completes by one conditional
UPDATE (only one process sees it change), and a job is made by the process that
completed the series. The supervisor itself keeps the start-up recovery and the quiet
period's sweeps (assistant/intake/receiver.py); node.max_associations is a total over
all the processes (dicom_node.guard.AssociationSlots).
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime
from multiprocessing.context import SpawnProcess
from multiprocessing.synchronize import Event
from typing import Any

from assistant.db import utcnow
from assistant.settings import Settings

LOGGER = logging.getLogger(__name__)

#: Seconds a receiver process may take to import, open its database and listen.
START_SECONDS = 60.0
#: Seconds a receiver process has to end its associations after SIGTERM before SIGKILL.
STOP_SECONDS = 15.0
#: How often the supervisor looks for a receiver process that died.
WATCH_SECONDS = 0.2
#: Seconds after a receiver died before the supervisor looks for what it left half done
#: (a series it completed but had not yet submitted): long enough for every living
#: receiver to have submitted what it completed before then.
RECOVER_AFTER_SECONDS = 10.0
#: The least time between two starts of one receiver process (one that dies at once,
#: say on a broken setting, is not started again in a tight loop).
RESTART_SECONDS = 1.0

#: prctl(2) option: the signal a process gets when its parent dies.
PR_SET_PDEATHSIG = 1

#: What a receiver process runs: (settings, index, port, association counts, ready,
#: the supervisor's pid).
ReceiverMain = Callable[[Settings, int, int, Any, Event, int], None]


def die_with_parent(supervisor: int) -> None:
    """Have the kernel SIGKILL this process when its parent, the supervisor (pid
    `supervisor`), dies, however it dies (a SIGKILLed supervisor runs no clean-up): no
    orphan keeps the port (Linux; elsewhere nothing). The supervisor creates receivers
    from one thread that lives until they are stopped (PR_SET_PDEATHSIG follows the
    creating thread)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() != supervisor:  # it was gone before the request took hold
        os._exit(1)


def reserve_port(host: str, port: int) -> socket.socket:
    """A socket bound to (host, port) with SO_REUSEPORT and never listening: it holds the
    port (a free one for port 0) for the receiver processes to bind beside it, and is
    given no connection (the kernel spreads them over listening sockets only).

    The port is first bound without SO_REUSEPORT, so that a port another program (or
    another node's receivers) holds fails with EADDRINUSE, as a single SCP would,
    instead of being shared with it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
        port = int(probe.getsockname()[1])
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


class ReceiverProcesses:
    """node.processes receiver processes on one port, supervised. Has the StorageSCP's
    `start`, `stop` and `port`, so the Receiver runs either."""

    def __init__(
        self,
        settings: Settings,
        target: ReceiverMain,
        recover: Callable[[datetime], object] | None = None,
    ) -> None:
        """`target`: a module-level function (it is imported again in each process).
        `recover(died_at)`: called RECOVER_AFTER_SECONDS after a receiver died, to
        finish what it left half done before `died_at`."""
        self._recover = recover
        self._settings = settings
        self._target = target
        self._count = settings.node.processes
        self._context = multiprocessing.get_context("spawn")  # no threads forked
        #: Connections each process holds now (one cell each; see AssociationSlots).
        self._counts = self._context.Array("i", self._count)
        self._children: list[SpawnProcess] = []
        self._started_at: list[float] = []
        self._reserved: socket.socket | None = None
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None
        self._lock = threading.Lock()
        #: Receiver processes started again after they died.
        self.restarts = 0

    @property
    def port(self) -> int:
        if self._reserved is None:
            raise RuntimeError("the receiver processes are not running")
        return int(self._reserved.getsockname()[1])

    def pids(self) -> list[int]:
        """The receiver processes' PIDs now."""
        with self._lock:
            return [child.pid for child in self._children if child.pid is not None]

    def start(self) -> None:
        """Start every receiver process; returns once each listens."""
        node = self._settings.node
        self._reserved = reserve_port(node.host, node.port)
        self._stopping.clear()
        starting = [self._spawn(index) for index in range(self._count)]
        with self._lock:
            self._children = [child for child, _ready in starting]
            self._started_at = [time.monotonic()] * self._count
        try:
            for child, ready in starting:
                self._wait_ready(child, ready)
        except BaseException:  # Ctrl-C while starting too: no receiver left behind
            self.stop()
            raise
        self._watcher = threading.Thread(target=self._watch, name="receiver-watch", daemon=True)
        self._watcher.start()
        LOGGER.info(
            "DICOM node %s: %d receiver processes listening on %s:%d (pids %s)",
            node.ae_title,
            self._count,
            node.host,
            self.port,
            ", ".join(map(str, self.pids())),
        )

    def stop(self) -> None:
        """SIGTERM every receiver process (each ends its associations), SIGKILL those
        still there after STOP_SECONDS, then let the port go. The watcher ends last:
        receivers it started again die with it (PR_SET_PDEATHSIG), so they are stopped
        first, cleanly."""
        self._stopping.set()
        with self._lock:  # the watcher starts none after this
            children, self._children = self._children, []
        for child in children:
            if child.is_alive():
                child.terminate()
        deadline = time.monotonic() + STOP_SECONDS
        for child in children:
            child.join(timeout=max(0.0, deadline - time.monotonic()))
            if child.is_alive():
                LOGGER.warning("receiver process %s did not stop: killed", child.pid)
                child.kill()
                child.join(timeout=5)
        if self._watcher is not None:
            self._watcher.join(timeout=10)
            self._watcher = None
        if self._reserved is not None:
            self._reserved.close()
            self._reserved = None

    def _spawn(self, index: int) -> tuple[SpawnProcess, Event]:
        ready = self._context.Event()
        child = self._context.Process(
            target=self._target,
            args=(self._settings, index, self.port, self._counts, ready, os.getpid()),
            name=f"receiver-{index + 1}",
        )
        child.start()
        return child, ready

    def _wait_ready(self, child: SpawnProcess, ready: Event) -> None:
        deadline = time.monotonic() + START_SECONDS
        while not ready.wait(0.1):
            if self._stopping.is_set():
                return  # stopping while a receiver starts: stop() ends it
            if not child.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(
                    f"receiver process {child.name} did not start (exit code {child.exitcode}):"
                    " its log says why"
                )

    def _watch(self) -> None:
        while not self._stopping.wait(WATCH_SECONDS):
            try:
                self._restart_the_dead()
            except Exception:  # the watcher must outlive any one failure (see stop)
                LOGGER.exception("watching the receiver processes failed; watching on")

    def _schedule_recovery(self, recover: Callable[[datetime], object], died_at: datetime) -> None:
        def run() -> None:
            if self._stopping.is_set():
                return  # the next start's recovery does it
            try:
                recover(died_at)
            except Exception:
                LOGGER.exception("recovery after a receiver process died failed")

        timer = threading.Timer(RECOVER_AFTER_SECONDS, run)
        timer.daemon = True
        timer.start()

    def _restart_the_dead(self) -> None:
        """Start again each receiver that died (a non-zero exit: killed, crashed). One
        that exited 0 was stopped by SIGTERM from outside, as a service manager stops
        the whole group: the supervisor is being stopped too, so it is left stopped."""
        for index in range(self._count):
            with self._lock:
                if self._stopping.is_set() or index >= len(self._children):
                    return
                child = self._children[index]
                if child.is_alive() or child.exitcode == 0:
                    continue
                if time.monotonic() - self._started_at[index] < RESTART_SECONDS:
                    continue
                LOGGER.error(
                    "receiver process %s (pid %s) ended with exit code %s: starting it again",
                    child.name,
                    child.pid,
                    child.exitcode,
                )
                with self._counts.get_lock():  # its connections died with it
                    self._counts[index] = 0
                if self._recover is not None:
                    self._schedule_recovery(self._recover, utcnow())
                replacement, ready = self._spawn(index)
                self._children[index] = replacement
                self._started_at[index] = time.monotonic()
                self.restarts += 1
            try:
                self._wait_ready(replacement, ready)
            except RuntimeError as exc:
                LOGGER.error("%s", exc)
