"""/viewer serves the files of the installed viewer and nothing else: a path leading out
of its folder (encoded slashes or dots, backslashes, absolute paths, links) answers the
same 404 whether or not its target exists, so it tells nothing about the server's files.

A fake installed viewer (a few files and the installer's marker) stands in for OHIF."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from assistant.access.users import add_user
from assistant.db import Database, make_engine
from assistant.db.migrate import upgrade
from assistant.settings import DatabaseSettings, Settings, StorageSettings
from tests.helpers import login
from web import create_app
from web.viewer_install import COMPLETE_MARKER, is_installed, viewer_dir

USER = ("victor", "staple fifteen words")
INDEX = b"<!doctype html><title>fake OHIF</title>"
PASSWD = Path("/etc/passwd")


@dataclass
class Viewer:
    client: FlaskClient
    data_dir: Path
    folder: Path


@pytest.fixture
def installed(tmp_path: Path) -> Iterator[Viewer]:
    data_dir = tmp_path / "var"
    folder = viewer_dir(data_dir)
    (folder / "assets").mkdir(parents=True)
    (folder / COMPLETE_MARKER).write_text("@ohif/app@fake\n")
    (folder / "index.html").write_bytes(INDEX)
    (folder / "app-config.js").write_text("window.config = {};\n")
    (folder / "assets" / "app.bundle.js").write_text("/* app */\n")
    # Beside the viewer, in the data folder: files that must never be served.
    (data_dir / "viewer" / "SECRET").write_text("beside the viewer\n")
    (data_dir / "notes").write_text("patient notes\n")
    # Links inside the viewer that lead out of it, to a file that exists and to one that
    # does not.
    (folder / "leak").symlink_to(data_dir / "notes")
    (folder / "leak.db").symlink_to(data_dir / "radassist.db")
    (folder / "dangling").symlink_to(data_dir / "no-such-notes")
    (folder / "dangling.db").symlink_to(data_dir / "no-such.db")
    url = f"sqlite:///{data_dir / 'radassist.db'}"
    upgrade(url)
    settings = Settings(
        storage=StorageSettings(data_dir=data_dir), database=DatabaseSettings(url=url)
    )
    assert is_installed(data_dir)
    db = Database(make_engine(url))
    try:
        add_user(db, USER[0], USER[1], "viewer")
        client = create_app(settings, db).test_client()
        login(client, USER)
        yield Viewer(client, data_dir, folder)
    finally:
        db.dispose()


_TOKEN = re.compile(rb'(name="csrf-token" content|name="csrf_token" value)="[^"]*"')


def answer(client: FlaskClient, path: str) -> tuple[int, bytes]:
    """Status and body; the session's CSRF token (signed with the time) left out."""
    response = client.get(path)
    try:
        return response.status_code, _TOKEN.sub(rb"\1=TOKEN", response.get_data())
    finally:
        response.close()


def test_the_installed_files_are_served(installed: Viewer) -> None:
    client = installed.client
    assert answer(client, "/viewer/app-config.js") == (200, b"window.config = {};\n")
    assert answer(client, "/viewer/assets/app.bundle.js") == (200, b"/* app */\n")
    # OHIF routes its own paths in the page; a missing file is a 404.
    assert answer(client, "/viewer/") == (200, INDEX)
    assert answer(client, "/viewer/viewer?StudyInstanceUIDs=1.2.3") == (200, INDEX)
    assert answer(client, "/viewer/no-such-file.js")[0] == 404


def _relative(viewer: Viewer, target: Path) -> str:
    """`target` named from the viewer's folder with `..` parts."""
    ups = len(viewer.folder.relative_to(viewer.data_dir.parent).parts)
    return "../" * ups + target.relative_to(viewer.data_dir.parent).as_posix()


def _encodings(relative: str) -> list[str]:
    """The ways a client may write a path that climbs out of /viewer/."""
    return [
        relative.replace("/", "%2F"),
        relative.replace("..", "%2e%2e"),
        relative.replace("..", "%2E%2E").replace("/", "%2f"),
        relative.replace("../", "..%2F"),
        "assets/" + "../" + relative.replace("/", "%2F"),
        relative.replace("/", "%5C"),
        relative.replace("/", "\\"),
        relative.replace("..", ".%2e").replace("/", "%2F"),
        "./" + relative.replace("/", "%2F"),
    ]


def _pairs(viewer: Viewer) -> list[tuple[str, str]]:
    """(a path to a file that exists, the same path to one that does not)."""
    data = viewer.data_dir
    targets = [
        (data / "radassist.db", data / "no-such.db"),  # the database
        (data / "secret_key", data / "no-such-key"),  # no extension: once index.html
        (data / "notes", data / "no-such-notes"),
        (data / "viewer" / "SECRET", data / "viewer" / "NO-SUCH"),  # beside the viewer
    ]
    pairs = []
    for there, missing in targets:
        assert there.is_file() and not missing.exists()
        for there_path, missing_path in zip(
            _encodings(_relative(viewer, there)),
            _encodings(_relative(viewer, missing)),
            strict=True,
        ):
            pairs.append((there_path, missing_path))
    depth = "../" * 40
    pairs += [
        (f"{depth}etc/passwd", f"{depth}etc/no-such-passwd"),
        ((depth + "etc/passwd").replace("/", "%2F"), (depth + "etc/nosuch").replace("/", "%2F")),
        (str(PASSWD), "/etc/no-such-passwd"),  # /viewer//etc/passwd
        (str(PASSWD).replace("/", "%2F"), "%2Fetc%2Fno-such-passwd"),
        (
            str(data / "radassist.db").replace("/", "%2F"),
            str(data / "no-such.db").replace("/", "%2F"),
        ),
        (
            "%5C" + str(data / "notes").lstrip("/").replace("/", "%5C"),
            "%5C" + str(data / "no-such-notes").lstrip("/").replace("/", "%5C"),
        ),
        ("leak", "dangling"),  # links out of the viewer
        ("leak.db", "dangling.db"),
    ]
    return pairs


def test_paths_out_of_the_viewer_answer_alike_whether_the_target_exists_or_not(
    installed: Viewer,
) -> None:
    assert PASSWD.is_file()
    client = installed.client
    not_found = answer(client, "/viewer/no-such-file.js")
    assert not_found[0] == 404
    secrets = [
        (installed.data_dir / "radassist.db").read_bytes()[:16],
        (installed.data_dir / "secret_key").read_bytes(),
        b"patient notes",
        b"beside the viewer",
        b"root:",
    ]
    for there, missing in _pairs(installed):
        found, absent = answer(client, f"/viewer/{there}"), answer(client, f"/viewer/{missing}")
        assert found == absent, f"{there!r} and {missing!r} answer differently"
        assert not any(secret in found[1] for secret in secrets), there
        if found[0] != 200:  # a link's name inside the viewer may be one of OHIF's routes
            assert found == not_found, there
        else:
            assert found[1] == INDEX and there in ("leak", "dangling"), there


@pytest.mark.parametrize(
    "path",
    [
        "..%2F..%2F..%2Fradassist.db",
        "%2e%2e/%2e%2e/%2e%2e/secret_key",
        "..%5C..%5Csecret_key",
        "%2Fetc%2Fpasswd",
        "assets/..%2F..%2F..%2F..%2Fnotes",
        "a/%2e/b",
    ],
)
def test_a_path_out_of_the_viewer_is_a_404(installed: Viewer, path: str) -> None:
    assert answer(installed.client, f"/viewer/{path}") == answer(
        installed.client, "/viewer/no-such-file.js"
    )
