"""Load and crash: 8 dcmtk storescu processes push at once into `radassist serve`, which
is killed with SIGKILL mid-way and restarted; the senders push again, as a PACS retries.
Every instance answered Success before the kill is on disk and in the database, and every
series ends with exactly one SR at the destination. `make soak` runs the long version
(SOAK=1: 8 x 300 instances, three kills)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydicom import dcmread
from sqlalchemy import create_engine, func, select

from assistant.analysis.imaging.synthetic import write_demo_series
from assistant.db import Delivery, DeliveryState, Instance, Job, JobState, Series
from tests.helpers import NODE_AE
from tests.peers.dcmtk import StoreSCP, echoscu
from tests.peers.tools import free_port, require_tool, wait_until

SOAK = os.environ.get("SOAK", "") not in ("", "0")
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(3600 if SOAK else 600)]
SENDERS = 8
PER_SERIES = 300 if SOAK else 30
KILLS = 3 if SOAK else 1
_SENT = re.compile(r"Sending file: (.+)$")


class Serve:
    """`radassist serve` in its own process, killable."""

    def __init__(self, root: Path, pacs_port: int) -> None:
        self.port = free_port()
        self.data = root / "var"
        self.config = root / "radassist.toml"
        self.config.write_text(
            f'[node]\nae_title = "{NODE_AE}"\nhost = "127.0.0.1"\nport = {self.port}\n'
            "processes = 2\n"
            f'[web]\nport = 0\n[storage]\ndata_dir = "{self.data}"\n'
            "[completion]\nquiet_seconds = 3\ncheck_interval_seconds = 0.2\n"
            "[delivery]\nbackoff_seconds = 0.5\nmax_backoff_seconds = 2\npoll_seconds = 0.2\n"
            f'[[destinations]]\nname = "pacs"\nkind = "dimse"\nhost = "127.0.0.1"\n'
            f'port = {pacs_port}\nae_title = "PACS"\n'
        )
        self.log = root / "serve.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("a") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "assistant.cli", "serve", "--config", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until(lambda: echoscu(self.port), timeout=60, interval=0.2)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def push(port: int, folders: list[Path], logs: Path) -> list[subprocess.Popen[bytes]]:
    binary = require_tool("/usr/bin/storescu")
    logs.mkdir(exist_ok=True)
    senders = []
    for n, folder in enumerate(folders):
        with (logs / f"push{n}.log").open("w") as log:  # the child keeps its own copy
            senders.append(
                subprocess.Popen(
                    [binary, "-v", "-aec", NODE_AE, "-aet", f"PUSH{n}", "127.0.0.1", str(port)]
                    + [str(p) for p in sorted(folder.iterdir())],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, "TCP_NODELAY": "1"},
                )
            )
    return senders


def acknowledged(logs: Path) -> set[Path]:
    """Files each storescu saw answered with Success."""
    done: set[Path] = set()
    for log in logs.glob("push*.log"):
        current: Path | None = None
        for line in log.read_text(errors="replace").splitlines():
            if match := _SENT.search(line):
                current = Path(match.group(1).strip())
            elif "Received Store Response (Success)" in line and current is not None:
                done.add(current)
                current = None
    return done


def test_nothing_answered_success_is_lost(tmp_path: Path) -> None:
    all_files = [
        path
        for n in range(SENDERS)
        for path in write_demo_series(tmp_path / f"series{n}", PER_SERIES, seed=7000 + n)
    ]
    folders = [tmp_path / f"series{n}" for n in range(SENDERS)]
    total = SENDERS * PER_SERIES
    pacs = StoreSCP(tmp_path / "pacs")
    pacs.start()
    node = Serve(tmp_path, pacs.port)
    node.start()
    engine = create_engine(f"sqlite:///{node.data / 'radassist.db'}")

    def stored() -> int:
        with engine.connect() as connection:
            return connection.scalar(select(func.count(Instance.id))) or 0

    senders: list[subprocess.Popen[bytes]] = []
    try:
        confirmed: set[Path] = set()
        uids = {
            path: str(dcmread(path, stop_before_pixels=True).SOPInstanceUID) for path in all_files
        }
        logs = tmp_path / "round0"
        senders = push(node.port, folders, logs)
        for kill in range(KILLS):
            target = min(total - 1, stored() + total * 0.4)
            wait_until(lambda goal=target: stored() >= goal, timeout=600, interval=0.02)
            node.kill()
            for sender in senders:
                sender.wait(timeout=60)
            confirmed |= acknowledged(logs)
            assert confirmed, "no instance was acknowledged before the kill"
            node.start()
            # The senders push everything again at once, as a PACS retries a failed
            # transfer; meanwhile, check what was acknowledged before the kill.
            logs = tmp_path / ("final" if kill == KILLS - 1 else f"round{kill + 1}")
            senders = push(node.port, folders, logs)
            with engine.connect() as connection:
                recorded = set(connection.scalars(select(Instance.sop_instance_uid)))
            lost = [path.name for path in confirmed if uids[path] not in recorded]
            assert lost == [], f"answered Success but not recorded: {lost[:5]}"
            on_disk = {p.stem for p in (node.data / "instances").rglob("*.dcm")}
            assert {uids[path] for path in confirmed} <= on_disk
        assert all(sender.wait(timeout=900) == 0 for sender in senders)
        assert stored() == total

        def finished() -> bool:
            with engine.connect() as connection:
                jobs = connection.execute(select(Job.state)).scalars().all()
                complete = connection.scalar(
                    select(func.count(Series.id)).where(Series.state == "complete")
                )
                sent = connection.scalar(
                    select(func.count(Delivery.id)).where(Delivery.state == DeliveryState.SENT)
                )
                pending = connection.scalar(
                    select(func.count(Delivery.id)).where(Delivery.state != DeliveryState.SENT)
                )
            return (
                complete == SENDERS
                and jobs
                and all(
                    state in (JobState.DONE, JobState.SKIPPED, JobState.FAILED) for state in jobs
                )
                and sent >= SENDERS
                and pending == 0
            )

        wait_until(finished, timeout=600, interval=0.5)
        time.sleep(1.0)  # let storescp finish writing the last object
        reports = [
            dcmread(p, stop_before_pixels=True) for p in pacs.folder.iterdir() if p.is_file()
        ]
        srs = [r for r in reports if r.Modality == "SR"]
        sources = {
            str(
                r.CurrentRequestedProcedureEvidenceSequence[0]
                .ReferencedSeriesSequence[0]
                .SeriesInstanceUID
            )
            for r in srs
        }
        assert len(sources) == SENDERS  # every series reported
        assert len(srs) == SENDERS  # once
        assert len({str(r.SOPInstanceUID) for r in reports}) == len(reports)  # no duplicates
        print(
            f"\nreliability: {total} instances x {KILLS + 1} pushes by {SENDERS} senders, "
            f"{KILLS} SIGKILL(s), {len(confirmed)} acknowledged before a kill, 0 lost, "
            f"{len(srs)} SRs for {SENDERS} series, 0 duplicates"
        )
    finally:
        for sender in senders:
            if sender.poll() is None:
                sender.kill()
            sender.wait()
        node.stop()
        engine.dispose()
        pacs.stop()


def test_a_job_killed_mid_run_is_picked_up_again(tmp_path: Path) -> None:
    files = write_demo_series(tmp_path / "series", 200, seed=7100)
    pacs = StoreSCP(tmp_path / "pacs")
    pacs.start()
    node = Serve(tmp_path, pacs.port)
    node.start()
    engine = create_engine(f"sqlite:///{node.data / 'radassist.db'}")

    def job_state() -> JobState | None:
        with engine.connect() as connection:
            return connection.scalar(select(Job.state))

    try:
        senders = push(node.port, [tmp_path / "series"], tmp_path / "push")
        assert senders[0].wait(timeout=300) == 0
        wait_until(lambda: job_state() == JobState.RUNNING, timeout=120, interval=0.01)
        node.kill()  # in the middle of the analysis
        assert job_state() == JobState.RUNNING
        node.start()
        wait_until(lambda: job_state() == JobState.DONE, timeout=300, interval=0.2)

        def delivered() -> bool:
            with engine.connect() as connection:
                states = connection.scalars(select(Delivery.state)).all()
            return bool(states) and all(s is DeliveryState.SENT for s in states)

        wait_until(delivered, timeout=60, interval=0.2)
        time.sleep(1.0)
        reports = [dcmread(p, stop_before_pixels=True) for p in pacs.folder.iterdir()]
        assert [r.Modality for r in reports].count("SR") == 1
        with engine.connect() as connection:
            assert connection.scalar(select(func.count(Job.id))) == 1
        assert len(files) == 200
    finally:
        node.stop()
        engine.dispose()
        pacs.stop()
