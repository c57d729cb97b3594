"""Receiver processes sharing the port (node.processes): eight modalities at once spread
over two processes, each instance stored and recorded once, each series completed once
with one job; a receiver process killed with SIGKILL mid-push is started again and the
senders' retries complete their series; SIGTERM, or even SIGKILL, of the supervising
`radassist scp` leaves no receiver process behind; node.max_associations is a total
over the processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from sqlalchemy import delete, func, select

from assistant.analysis.imaging.synthetic import write_demo_series
from assistant.db import Instance, Job, Series, SeriesState
from assistant.intake import processes as processes_module
from assistant.intake.processes import ReceiverProcesses
from assistant.intake.receiver import Receiver
from assistant.settings import NodeSettings
from tests.helpers import NODE_AE
from tests.peers.dcmtk import echoscu, storescu
from tests.peers.tools import free_port, wait_until

pytestmark = [pytest.mark.integration]

SENDERS = 8


def _series(root: Path, count: int, per_series: int) -> list[list[Path]]:
    return [
        write_demo_series(root / f"series-{i}", count=per_series, seed=7000 + i)
        for i in range(count)
    ]


def _start(start_node: Callable[..., Receiver], **node: object) -> Receiver:
    settings = {"ae_title": NODE_AE, "host": "127.0.0.1", "port": 0, "processes": 2, **node}
    return start_node(node=NodeSettings(**settings), quiet_seconds=30.0)  # type: ignore[arg-type]


def _processes(receiver: Receiver) -> ReceiverProcesses:
    assert isinstance(receiver.scp, ReceiverProcesses)
    return receiver.scp


def _stored_once_completed_once_one_job(receiver: Receiver, series: list[list[Path]]) -> None:
    """Every instance recorded once with its file on disk; every series complete, with
    all its instances and exactly one job."""
    total = sum(len(files) for files in series)
    with receiver.db.sessions() as session:
        paths = session.scalars(select(Instance.path)).all()
        assert len(paths) == len(set(paths)) == total
        data = receiver.settings.storage.data_dir
        assert all((data / path).is_file() for path in paths)
        rows = session.execute(select(Series.id, Series.state, Series.instance_count)).all()
        assert len(rows) == len(series)
        assert all(row.state is SeriesState.COMPLETE for row in rows), rows
        assert sorted(row.instance_count for row in rows) == sorted(map(len, series))
        jobs = session.execute(select(Job.series_pk, func.count()).group_by(Job.series_pk)).all()
        assert sorted(jobs) == sorted((row.id, 1) for row in rows)


def test_eight_senders_spread_over_two_processes(
    start_node: Callable[..., Receiver], tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    receiver = _start(start_node)
    processes = _processes(receiver)
    assert len(processes.pids()) == 2 and os.getpid() not in processes.pids()
    series = _series(tmp_path, SENDERS, 12)
    # Two rounds of eight associations: the kernel's spreading is by connection hash.
    for _ in range(2):
        with ThreadPoolExecutor(SENDERS) as pool:
            results = list(pool.map(lambda files: storescu(processes.port, files), series))
        assert all(r.returncode == 0 for r in results), [r.stderr[-300:] for r in results]
    wait_until(lambda: _settled(receiver, len(series)), timeout=30)
    _stored_once_completed_once_one_job(receiver, series)
    log = capfd.readouterr().err
    served = {
        f"receiver-{i}" for i in (1, 2) if f"[receiver-{i}] dicom_node.scp: association" in log
    }
    assert served == {"receiver-1", "receiver-2"}, (
        "the kernel gave every association to one process"
    )


def _settled(receiver: Receiver, count: int) -> bool:
    """Every series complete and each with a job: the completing process records the
    job just after it marks the series complete, so the first alone is read too early."""
    with receiver.db.sessions() as session:
        with_jobs = session.scalar(select(func.count(func.distinct(Job.series_pk))))
    return _states(receiver) == {SeriesState.COMPLETE} and with_jobs == count


def _states(receiver: Receiver) -> set[SeriesState]:
    with receiver.db.sessions() as session:
        return set(session.scalars(select(Series.state)).all())


def test_a_killed_receiver_process_is_started_again_and_retries_complete(
    start_node: Callable[..., Receiver], tmp_path: Path
) -> None:
    receiver = _start(start_node)
    processes = _processes(receiver)
    series = _series(tmp_path, SENDERS, 40)
    with ThreadPoolExecutor(SENDERS) as pool:
        pushes = [pool.submit(storescu, processes.port, files) for files in series]
        wait_until(lambda: _instances(receiver) >= 60, timeout=60, interval=0.01)
        victim = processes.pids()[0]
        os.kill(victim, signal.SIGKILL)
        first = [push.result() for push in pushes]
    wait_until(lambda: processes.restarts == 1 and len(processes.pids()) == 2, timeout=30)
    assert victim not in processes.pids()
    # Each sender whose association was cut sends its series again, as a PACS retries.
    for files, result in zip(series, first, strict=True):
        if result.returncode != 0:
            again = storescu(processes.port, files)
            assert again.returncode == 0, again.stderr[-300:]
    wait_until(lambda: _settled(receiver, len(series)), timeout=60)
    _stored_once_completed_once_one_job(receiver, series)


def test_what_a_killed_receiver_left_unsubmitted_is_submitted(
    start_node: Callable[..., Receiver], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A receiver killed between completing a series and submitting it leaves a complete
    series with no job: once the others have had time to submit their own, the
    supervisor submits it, without waiting for the next start."""
    monkeypatch.setattr(processes_module, "RECOVER_AFTER_SECONDS", 0.5)
    receiver = _start(start_node)
    processes = _processes(receiver)
    [files] = _series(tmp_path, 1, 6)
    assert storescu(processes.port, files).returncode == 0
    wait_until(lambda: _states(receiver) == {SeriesState.COMPLETE}, timeout=30)
    with receiver.db.sessions() as session, session.begin():  # as if killed before submit
        session.execute(delete(Job))
    os.kill(processes.pids()[0], signal.SIGKILL)
    wait_until(lambda: processes.restarts == 1, timeout=30)
    wait_until(lambda: _jobs(receiver) == 1, timeout=30)
    time.sleep(1.0)
    assert _jobs(receiver) == 1  # once


def _jobs(receiver: Receiver) -> int:
    with receiver.db.sessions() as session:
        return int(session.scalar(select(func.count(Job.id))) or 0)


def _instances(receiver: Receiver) -> int:
    with receiver.db.sessions() as session:
        return int(session.scalar(select(func.count(Instance.id))) or 0)


def test_max_associations_is_a_total_over_the_processes(
    start_node: Callable[..., Receiver], tmp_path: Path
) -> None:
    """Two processes, a total of two: a third association is refused whichever
    process the kernel hands it to, and accepted again once one ends."""
    receiver = _start(start_node, max_associations=2, max_associations_per_address=0)
    port = _processes(receiver).port
    files = write_demo_series(tmp_path / "s", count=1)
    ae = AE(ae_title="HOLDER")
    ae.add_requested_context(Verification)
    holders = [ae.associate("127.0.0.1", port, ae_title=NODE_AE) for _ in range(2)]
    try:
        assert all(holder.is_established for holder in holders)
        refused = [storescu(port, files) for _ in range(4)]
        assert all(r.returncode != 0 for r in refused), [r.stdout for r in refused]
    finally:
        for holder in holders:
            holder.release()
    wait_until(lambda: storescu(port, files).returncode == 0, timeout=20, interval=0.3)


def test_the_calling_ae_allow_list_holds_in_every_process(
    start_node: Callable[..., Receiver], tmp_path: Path
) -> None:
    receiver = _start(start_node, allowed_callers=("CT1",))
    port = _processes(receiver).port
    files = write_demo_series(tmp_path / "s", count=1)
    for _ in range(4):  # whichever process the kernel picks
        assert storescu(port, files, aet="INTRUDER").returncode != 0
    assert storescu(port, files, aet="CT1").returncode == 0
    assert _instances(receiver) == 1


def test_a_port_another_node_holds_is_refused_not_shared(
    start_node: Callable[..., Receiver],
) -> None:
    """SO_REUSEPORT would let a second node's receivers share the port with the first,
    splitting associations between two databases: the port is refused instead."""
    with socket.socket() as other:  # another node's receiver: listening, sharing allowed
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", 0))
        other.listen()
        with pytest.raises(OSError):
            _start(start_node, port=other.getsockname()[1])


def _children(pid: int) -> set[int]:
    """Processes whose parent is `pid`, from the process table."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.add(pid)
    return alive


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_stopping_the_supervisor_leaves_no_receiver_process(
    tmp_path: Path, how: signal.Signals
) -> None:
    port = free_port()
    config = tmp_path / "radassist.toml"
    config.write_text(
        f'[node]\nae_title = "{NODE_AE}"\nhost = "127.0.0.1"\nport = {port}\nprocesses = 2\n'
        f'[storage]\ndata_dir = "{tmp_path / "var"}"\n'
    )
    subprocess.run(
        [sys.executable, "-m", "assistant.cli", "db", "--config", str(config), "upgrade"],
        check=True,
        capture_output=True,
    )
    log = tmp_path / "scp.log"
    with log.open("w") as out:
        scp = subprocess.Popen(
            [sys.executable, "-m", "assistant.cli", "scp", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        # Started: every receiver listens (one answering C-ECHO is not yet all of them).
        wait_until(lambda: "receiver processes listening" in log.read_text(), timeout=60)
        time.sleep(0.5)  # and the supervisor waits for its signal
        assert echoscu(port)
        children = _children(scp.pid)
        assert len(children) >= 2  # two receivers (and multiprocessing's resource tracker)
        scp.send_signal(how)
        assert scp.wait(timeout=30) == (0 if how is signal.SIGTERM else -signal.SIGKILL)
        wait_until(lambda: not _alive(children), timeout=15)
        assert not echoscu(port)
    finally:
        if scp.poll() is None:
            scp.kill()
            scp.wait()
