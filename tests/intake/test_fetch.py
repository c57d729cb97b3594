"""Pull a study on demand from Orthanc (C-FIND, then C-MOVE to the node), by the command
line and by the dashboard's admin action."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import dcmread

from assistant.access.users import add_user
from assistant.analysis.imaging.synthetic import write_demo_series
from assistant.cli import main
from tests.helpers import NODE_AE, csrf_token, instance_count, login
from tests.peers.tools import wait_until
from web import create_app

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def pacs_with_a_study(start_node, start_orthanc, tmp_path: Path):  # type: ignore[no-untyped-def]
    node = start_node()
    orthanc = start_orthanc({"radassist": (NODE_AE, "127.0.0.1", node.scp.port)})
    files = write_demo_series(tmp_path / "study", count=6, seed=811)
    for path in files:
        orthanc.upload(path)
    config = tmp_path / "radassist.toml"
    config.write_text(
        f'[node]\nae_title = "{NODE_AE}"\n[storage]\ndata_dir = "{tmp_path / "cli-var"}"\n'
        f'[[destinations]]\nname = "pacs"\nkind = "dimse"\nhost = "127.0.0.1"\n'
        f'port = {orthanc.dicom_port}\nae_title = "ORTHANC"\n'
    )
    return node, orthanc, dcmread(files[0]), config


def test_fetch_by_accession_from_the_command_line(pacs_with_a_study, capsys) -> None:  # type: ignore[no-untyped-def]
    node, _orthanc, source, config = pacs_with_a_study
    assert (
        main(
            [
                "fetch",
                "--accession",
                str(source.AccessionNumber),
                "--from",
                "pacs",
                "--config",
                str(config),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert source.StudyInstanceUID in out and "6 sent, 0 failed" in out
    assert wait_until(lambda: instance_count(node) == 6, timeout=10)


def test_fetch_errors(pacs_with_a_study, capsys) -> None:  # type: ignore[no-untyped-def]
    _node, _orthanc, _source, config = pacs_with_a_study
    assert main(["fetch", "--accession", "NOPE", "--from", "pacs", "--config", str(config)]) == 1
    assert "no study matching" in capsys.readouterr().err
    assert main(["fetch", "--accession", "X", "--from", "elsewhere", "--config", str(config)]) == 1
    assert "no DIMSE PACS named 'elsewhere'" in capsys.readouterr().err


def test_fetch_from_the_dashboard(pacs_with_a_study, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import dataclasses

    from assistant.settings import load_settings

    node, _orthanc, source, config = pacs_with_a_study
    settings = dataclasses.replace(load_settings(str(config)), storage=node.settings.storage)
    add_user(node.db, "admin", "a passphrase for the operator", "admin")
    add_user(node.db, "viewer", "a passphrase for the reader", "viewer")
    app = create_app(settings, node.db)

    def logged_in(name: str, password: str):  # type: ignore[no-untyped-def]
        client = app.test_client()
        login(client, (name, password))
        return client, csrf_token(client, "/")  # the session starts afresh at login

    viewer, token = logged_in("viewer", "a passphrase for the reader")
    assert viewer.get("/admin/fetch").status_code == 403
    admin, token = logged_in("admin", "a passphrase for the operator")
    assert "pacs" in admin.get("/admin/fetch").get_data(as_text=True)
    response = admin.post(
        "/admin/fetch",
        data={
            "source": "pacs",
            "key": "study",
            "value": str(source.StudyInstanceUID),
            "csrf_token": token,
        },
        follow_redirects=True,
    )
    assert "6 instance(s) received from pacs" in response.get_data(as_text=True)
    assert wait_until(lambda: instance_count(node) == 6, timeout=10)
