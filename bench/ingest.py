"""Ingest benchmark: dcmtk's storescu pushes a 300-slice 512² CT series over 1, 4 and 8
associations at once into our node, into Orthanc with its defaults and into dcmtk's
storescp --fork, alternating, and prints median images/s and the ratios.

    .venv/bin/python bench/ingest.py [--runs 3] [--slices 300] [--processes N]

Orthanc with its defaults makes the promise our node makes: Success once the file is
fsynced (SyncStorageArea, on by default since 1.7.4) and its SQLite index committed.
storescp never fsyncs (its Success means "in the page cache"): it is the ceiling of
the disk and the network, not a peer. Each run gets fresh folders and databases (a
resend would only hit the duplicate path). Our node runs node.processes receiver
processes (default: one per core), as it does in production.
"""

from __future__ import annotations

import argparse
import json
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

STORESCU, STORESCP, ORTHANC = "/usr/bin/storescu", "/usr/bin/storescp", "/usr/sbin/Orthanc"
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
def our_node(root: Path, processes: int) -> Iterator[int]:
    settings = Settings(
        node=NodeSettings(ae_title="RADASSIST", host="127.0.0.1", port=0, processes=processes),
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
def orthanc(root: Path) -> Iterator[int]:
    """Orthanc with its default storage settings (fsync on, SQLite index), on free ports."""
    root.mkdir(parents=True)
    port, http = free_port(), free_port()
    config = {
        "Name": "BENCH",
        "StorageDirectory": str(root / "storage"),
        "IndexDirectory": str(root / "index"),
        "HttpPort": http,
        "DicomPort": port,
        "DicomAet": "ORTHANC",
        "RemoteAccessAllowed": False,
    }
    (root / "orthanc.json").write_text(json.dumps(config))
    with (root / "orthanc.log").open("w") as log:
        proc = subprocess.Popen(
            [ORTHANC, str(root / "orthanc.json")], stdout=log, stderr=log, env=ENV
        )
    try:
        wait_for_port(port, timeout=30)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@contextmanager
def dcmtk_storescp(root: Path) -> Iterator[int]:
    port = free_port()
    root.mkdir(parents=True)
    args = [STORESCP, "-od", str(root), "--fork", str(port)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    try:
        wait_for_port(port)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def split(files: list[Path], n: int) -> list[list[Path]]:
    return [files[i::n] for i in range(n)]


#: What is measured: our node, Orthanc, storescp, and our node with one process.
PEERS = ("radassist", "orthanc", "storescp", "radassist-1")


def measure(
    files: list[Path], associations: int, runs: int, scratch: Path, processes: int
) -> dict[str, list[float]]:
    """Images/s of each peer, runs alternating so drift in the machine hits all alike."""
    rates: dict[str, list[float]] = {name: [] for name in PEERS}
    groups = split(files, associations)
    for run in range(runs):
        folder = scratch / f"{associations}-{run}"
        with our_node(folder / "radassist", processes) as port:
            rates["radassist"].append(len(files) / push(port, groups, "RADASSIST"))
        with orthanc(folder / "orthanc") as port:
            rates["orthanc"].append(len(files) / push(port, groups, "ORTHANC"))
        with dcmtk_storescp(folder / "storescp") as port:
            rates["storescp"].append(len(files) / push(port, groups, "STORESCP"))
        with our_node(folder / "radassist-1", 1) as port:  # the SCP in the node's process
            rates["radassist-1"].append(len(files) / push(port, groups, "RADASSIST"))
        shutil.rmtree(folder, ignore_errors=True)
    return rates


#: Targets on a 2-core machine: radassist / Orthanc (8 associations: no slower than 4).
TARGETS = {1: 1.25, 4: 1.5}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument(
        "--processes", type=int, default=0, help="our receiver processes (0: one per core)"
    )
    args = parser.parse_args(argv)
    for tool in (STORESCU, STORESCP, ORTHANC):
        if not os.access(tool, os.X_OK):
            print(f"{tool} is missing: make system-deps installs it", file=sys.stderr)
            return 2
    processes = NodeSettings(processes=args.processes).processes
    scratch = Path(tempfile.mkdtemp(prefix="radassist-bench-"))
    try:
        files = write_demo_series(scratch / "series", count=args.slices)
        size_mb = sum(f.stat().st_size for f in files) / 1e6
        print(
            f"{len(files)} CT slices 512x512, {size_mb:.0f} MB, {args.runs} runs each, "
            f"alternating; radassist with {processes} receiver process(es), "
            f"{os.cpu_count()} CPU cores\n"
        )
        header = (
            f"{'associations':>12} {'radassist':>10} {'1 process':>10} {'orthanc':>8}"
            f" {'storescp':>9} {'vs orthanc':>11} {'vs storescp':>12} {'target':>9}"
        )
        print(header + "\n" + "-" * len(header))
        medians: dict[int, float] = {}
        for associations in (1, 4, 8):
            rates = measure(files, associations, args.runs, scratch, processes)
            ours, theirs, ceiling, single = (statistics.median(rates[name]) for name in PEERS)
            medians[associations] = ours
            target = (
                f">= {TARGETS[associations]}"
                if associations in TARGETS
                else f">= {medians[4]:.0f}/s"
            )
            print(
                f"{associations:>12} {ours:>10.0f} {single:>10.0f} {theirs:>8.0f} {ceiling:>9.0f}"
                f" {ours / theirs:>11.2f} {ours / ceiling:>12.2f} {target:>9}",
                flush=True,
            )
        print(
            "\nimages/s, medians of the runs; vs = radassist / peer; 1 process = radassist "
            "with node.processes = 1"
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
