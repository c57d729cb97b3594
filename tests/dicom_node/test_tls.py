"""DICOM over TLS: the node accepts a TLS client and refuses a plain one."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from pydicom.uid import CTImageStorage
from pynetdicom import AE

from assistant.db.migrate import upgrade
from assistant.intake.receiver import Receiver
from assistant.settings import NodeSettings, Settings
from tests.helpers import NODE_AE, instance_count
from tests.peers.tools import require_tool
from tests.support.ct import dicom_files, shared_ct

pytestmark = pytest.mark.integration


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    openssl = require_tool("openssl")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            "/CN=127.0.0.1",
            "-days",
            "1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return key, cert


@pytest.fixture(params=[1, 2], ids=["one-process", "two-receiver-processes"])
def tls_node(request, start_node, certificate: tuple[Path, Path]) -> Receiver:  # type: ignore[no-untyped-def]
    """A node that speaks DICOM over TLS only (its SCP in its own process, or in two
    receiver processes sharing the port)."""
    key, cert = certificate
    return start_node(
        node=NodeSettings(
            processes=request.param,
            ae_title=NODE_AE,
            host="127.0.0.1",
            port=0,
            tls_cert=str(cert),
            tls_key=str(key),
        )
    )


def test_tls_association_stores_and_plain_one_is_refused(
    tls_node: Receiver, certificate: tuple[Path, Path]
) -> None:
    from pydicom import dcmread

    _, cert = certificate
    dataset = dcmread(dicom_files(shared_ct("philips_brain_phantom_5mm"))[0])
    client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cert))
    ae = AE(ae_title="TLSCLIENT")
    ae.add_requested_context(CTImageStorage, dataset.file_meta.TransferSyntaxUID)
    assoc = ae.associate(
        "127.0.0.1", tls_node.scp.port, ae_title=NODE_AE, tls_args=(client, "127.0.0.1")
    )
    assert assoc.is_established
    assert assoc.send_c_store(dataset).Status == 0x0000
    assoc.release()

    plain = ae.associate("127.0.0.1", tls_node.scp.port, ae_title=NODE_AE)
    assert not plain.is_established
    assert instance_count(tls_node) == 1


def test_a_silent_client_does_not_stall_the_tls_handshakes_of_others(
    tls_node: Receiver, certificate: tuple[Path, Path]
) -> None:
    """pynetdicom does the handshake in the thread that accepts connections: one client
    that connects and says nothing stopped every other from connecting. Now each
    handshake runs in its connection's thread, within the ARTIM time."""
    import socket
    import time

    _, cert = certificate
    silent = [socket.create_connection(("127.0.0.1", tls_node.scp.port)) for _ in range(3)]
    try:
        client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cert))
        ae = AE(ae_title="TLSCLIENT")
        ae.add_requested_context("1.2.840.10008.1.1")
        started = time.monotonic()
        assoc = ae.associate(
            "127.0.0.1", tls_node.scp.port, ae_title=NODE_AE, tls_args=(client, "127.0.0.1")
        )
        assert assoc.is_established
        assert time.monotonic() - started < 3
        assoc.release()
        for sock in silent:  # and the silent ones are closed after the ARTIM time
            sock.settimeout(10)
            assert sock.recv(1) == b""
    finally:
        for sock in silent:
            sock.close()


def test_dcmtk_storescu_over_tls(tls_node: Receiver, certificate: tuple[Path, Path]) -> None:
    """dcmtk's own TLS client (storescu +tla +cf) against the node's TLS listener."""
    _, cert = certificate
    port = str(tls_node.scp.port)
    files = dicom_files(shared_ct("philips_brain_phantom_5mm"))[:3]
    storescu = require_tool("/usr/bin/storescu")
    secure = subprocess.run(
        [storescu, "+tla", "+cf", str(cert), "-aec", NODE_AE, "127.0.0.1", port]
        + [str(f) for f in files],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert secure.returncode == 0, secure.stdout + secure.stderr
    assert instance_count(tls_node) == 3
    plain = subprocess.run(
        [storescu, "-aec", NODE_AE, "127.0.0.1", port, str(files[0])],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert plain.returncode != 0


def test_results_go_to_a_tls_pacs(
    make_settings: Callable[..., Settings], certificate: tuple[Path, Path], tmp_path: Path
) -> None:
    """The outbox as a TLS client (pynetdicom SCU) to dcmtk's storescp +tls."""
    import os

    from assistant.db import Database, utcnow
    from assistant.delivery.outbox import Outbox
    from assistant.delivery.senders import make_senders
    from assistant.settings import DeliverySettings, Destination
    from tests.peers.tools import free_port, wait_until
    from tests.support.results import queue_results

    key, cert = certificate
    port = free_port()
    received = tmp_path / "received"
    received.mkdir()
    pacs = subprocess.Popen(
        [
            require_tool("/usr/bin/storescp"),
            "+tls",
            str(key),
            str(cert),
            "-ic",
            "-aet",
            "PACS",
            "-od",
            str(received),
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "TCP_NODELAY": "1"},
    )
    try:
        settings = make_settings()
        upgrade(settings.database_url)
        from assistant.db.migrate import migrated_engine

        db = Database(migrated_engine(settings.database_url))
        sessions = db.sessions
        destination = Destination(
            "secure", host="127.0.0.1", port=port, ae_title="PACS", tls=True, tls_ca=str(cert)
        )
        outbox = Outbox(
            db, [destination], DeliverySettings(), settings.storage.data_dir, make_senders(NODE_AE)
        )
        queue_results(sessions, outbox, settings.storage.data_dir, utcnow(), count=2)
        wait_until(lambda: outbox.deliver_due() == 2, timeout=20, interval=0.5)
        assert len(list(received.iterdir())) == 2
        db.dispose()
    finally:
        pacs.terminate()
        pacs.wait(timeout=10)
