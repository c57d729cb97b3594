"""Ingest benchmark: dcmtk's storescu pushes a 300-slice 512² CT series into our node,
into dcmtk's own storescp and into a bare pynetdicom SCP, alternating, and prints median
images/s and the ratios.

    .venv/bin/python bench/ingest.py [--runs 3] [--slices 300]

Each run gets a fresh data folder and database for our node (a resend would only hit
the duplicate path) and a fresh output folder for storescp. Both receivers write every
file to the same disk; ours also fsyncs each file and commits its database row before
answering, as it does in production. The bare pynetdicom SCP keeps nothing (its
handler answers Success at once) and is tuned as ours is (PDU size, idle sleep, GIL
switch interval): it is the ceiling of the network stack our node is built on.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pydicom.uid import CTImageStorage
from pynetdicom import AE, _config, evt

from assistant.analysis.imaging.synthetic import write_demo_series
from assistant.cli import build_receiver
from assistant.db.migrate import upgrade
from assistant.settings import (
    CompletionSettings,
    DatabaseSettings,
    NodeSettings,
    Settings,
    StorageSettings,
)
from dicom_node.contexts import STORAGE_TRANSFER_SYNTAXES
from dicom_node.scp import DUL_IDLE_SLEEP_SECONDS

STORESCU, STORESCP = "/usr/bin/storescu", "/usr/bin/storescp"
ENV = {**os.environ, "TCP_NODELAY": "1"}  # dcmtk leaves Nagle on otherwise (~40 ms a C-STORE)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def push(port: int, groups: list[list[Path]], aec: str) -> float:
    """Seconds for len(groups) concurrent storescu associations to send their files."""
    start = time.perf_counter()
    procs = [
        subprocess.Popen(
            [STORESCU, "-aec", aec, "127.0.0.1", str(port), *map(str, files)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=ENV,
        )
        for files in groups
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"storescu failed: {err.decode(errors='replace')[-500:]}")
    return time.perf_counter() - start


@contextmanager
def our_node(root: Path) -> Iterator[int]:
    settings = Settings(
        node=NodeSettings(ae_title="RADASSIST", host="127.0.0.1", port=0),
        storage=StorageSettings(data_dir=root),
        database=DatabaseSettings(url=f"sqlite:///{root / 'radassist.db'}"),
        completion=CompletionSettings(quiet_seconds=600),
    )
    upgrade(settings.database_url)
    receiver = build_receiver(settings)
    receiver.start()
    try:
        yield receiver.scp.port
    finally:
        receiver.stop()


@contextmanager
def bare_pynetdicom(_root: Path) -> Iterator[int]:
    """A pynetdicom SCP that accepts CT and answers every C-STORE at once, keeping nothing."""

    def tune(event: evt.Event) -> None:
        event.assoc.dul._run_loop_delay = DUL_IDLE_SLEEP_SECONDS

    _config.LOG_HANDLER_LEVEL = "none"
    ae = AE(ae_title="BARE")
    ae.maximum_pdu_size = NodeSettings().max_pdu_size
    ae.add_supported_context(CTImageStorage, list(STORAGE_TRANSFER_SYNTAXES))
    handlers = [(evt.EVT_C_STORE, lambda _event: 0x0000), (evt.EVT_CONN_OPEN, tune)]
    switch = sys.getswitchinterval()
    sys.setswitchinterval(0.001)  # as Receiver.start does
    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=handlers)
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        sys.setswitchinterval(switch)


@contextmanager
def dcmtk_storescp(root: Path, fork: bool) -> Iterator[int]:
    port = free_port()
    root.mkdir(parents=True)
    args = [STORESCP, "-od", str(root), *(["--fork"] if fork else []), str(port)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    try:
        wait_for_port(port)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def split(files: list[Path], n: int) -> list[list[Path]]:
    return [files[i::n] for i in range(n)]


def measure(
    files: list[Path], associations: int, runs: int, scratch: Path
) -> tuple[list[float], list[float], list[float]]:
    """Images/s of our node, dcmtk's storescp and bare pynetdicom, one list each."""
    ours: list[float] = []
    theirs: list[float] = []
    bare: list[float] = []
    groups = split(files, associations)
    for run in range(runs):  # alternate, so drift in the machine hits all alike
        with our_node(scratch / f"ours-{associations}-{run}") as port:
            ours.append(len(files) / push(port, groups, "RADASSIST"))
        with dcmtk_storescp(scratch / f"dcmtk-{associations}-{run}", fork=associations > 1) as port:
            theirs.append(len(files) / push(port, groups, "STORESCP"))
        with bare_pynetdicom(scratch) as port:
            bare.append(len(files) / push(port, groups, "BARE"))
    return ours, theirs, bare


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--slices", type=int, default=300)
    args = parser.parse_args(argv)
    for tool in (STORESCU, STORESCP):
        if not os.access(tool, os.X_OK):
            print(f"{tool} is missing: make system-deps installs dcmtk", file=sys.stderr)
            return 2

    scratch = Path(tempfile.mkdtemp(prefix="radassist-bench-"))
    try:
        files = write_demo_series(scratch / "series", count=args.slices)
        size_mb = sum(f.stat().st_size for f in files) / 1e6
        print(
            f"{len(files)} CT slices 512x512, {size_mb:.0f} MB, {args.runs} runs each, alternating\n"
        )
        rows: list[tuple[str, float, float, float]] = []
        targets: dict[int, float] = {1: 0.5, 4: 0.8}
        for associations in (1, 4):
            ours, theirs, bare = measure(files, associations, args.runs, scratch)
            rows.append(
                (
                    f"{associations} association(s)",
                    statistics.median(theirs),
                    statistics.median(bare),
                    statistics.median(ours),
                )
            )
        header = (
            f"{'scenario':<18} {'dcmtk':>6} {'bare pynetdicom':>16} {'radassist':>10}"
            f" {'ratio':>6} {'bare/dcmtk':>11} {'target':>7}"
        )
        print(header + "\n" + "-" * len(header))
        for (name, base, bare_rate, mine), target in zip(rows, targets.values(), strict=True):
            print(
                f"{name:<18} {base:>6.0f} {bare_rate:>16.0f} {mine:>10.0f} {mine / base:>6.2f}"
                f" {bare_rate / base:>11.2f} {'>= ' + str(target):>7}"
            )
        print("\nimages/s, medians; ratio = radassist / dcmtk storescp")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
