"""The demo: its synthetic series is valid DICOM, and `radassist demo` stores a study."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select

from assistant.analysis.imaging.synthetic import write_demo_series
from assistant.cli import main
from assistant.db import Instance
from assistant.intake.completion import is_contiguous
from assistant.intake.ingest import slice_geometry
from tests.peers.dicom3tools import dciodvfy_errors
from web.viewer_install import COMPLETE_MARKER, viewer_dir


def test_synthetic_demo_series_passes_dciodvfy(tmp_path: Path) -> None:
    for path in write_demo_series(tmp_path, count=4):
        assert dciodvfy_errors(path) == [], path.name


def test_synthetic_demo_series_is_contiguous(tmp_path: Path) -> None:
    from pydicom import dcmread

    paths = write_demo_series(tmp_path, count=6)
    positions = [slice_geometry(dcmread(p, stop_before_pixels=True))[0] for p in paths]
    assert is_contiguous(positions)


@pytest.mark.integration
def test_demo_command_stores_the_demo_study(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("RADASSIST_STORAGE__DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("RADASSIST_NODE__PORT", "0")
    monkeypatch.setenv("RADASSIST_WEB__PORT", "0")
    study = tmp_path / "study"
    write_demo_series(study, count=12)
    assert main(["demo", "--study", str(study), "--exit-after-send"]) == 0
    out = capsys.readouterr().out
    assert "Demo study sent: 12/12" in out
    assert "Dashboard: http://127.0.0.1:" in out and "Log in as 'demo'" in out
    assert "Demo study: http://127.0.0.1:" in out and "NOT WORKING" not in out
    assert (tmp_path / "var" / "demo-login.txt").stat().st_mode & 0o077 == 0
    engine = create_engine(f"sqlite:///{tmp_path / 'var' / 'radassist.db'}")
    with engine.connect() as connection:
        assert connection.scalar(select(func.count(Instance.id))) == 12
    engine.dispose()


def _fake_viewer(data_dir: Path, *, index: bool = True) -> None:
    """An installed viewer as the installer leaves it (its marker), with or without the
    page every viewer address serves."""
    folder = viewer_dir(data_dir)
    folder.mkdir(parents=True)
    (folder / COMPLETE_MARKER).write_text("@ohif/app@fake\n")
    (folder / "app-config.js").write_text("window.config = {};\n")
    if index:
        (folder / "index.html").write_text("<!doctype html><title>fake OHIF</title>")


@pytest.mark.integration
@pytest.mark.parametrize("index", [True, False], ids=["viewer-works", "viewer-broken"])
def test_the_demo_prints_only_addresses_that_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, index: bool
) -> None:
    """As the README runs it: from a folder with no config file, the default relative
    data folder ("var"); every address printed was requested first, logged in."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RADASSIST_CONFIG", raising=False)
    monkeypatch.setenv("RADASSIST_NODE__PORT", "0")
    monkeypatch.setenv("RADASSIST_WEB__PORT", "0")
    _fake_viewer(tmp_path / "var", index=index)
    study = tmp_path / "study"
    write_demo_series(study, count=10)
    code = main(["demo", "--study", str(study), "--exit-after-send"])
    out = capsys.readouterr().out
    if index:
        assert code == 0, out
        assert re.search(r"Image viewer \(OHIF\): http://127\.0\.0\.1:\d+/viewer/\n", out)
        assert re.search(r"Demo study in the viewer: http://\S+/viewer/\S+StudyInstanceUIDs=", out)
        assert "NOT WORKING" not in out
    else:
        assert code == 1
        assert re.search(r"Image viewer \(OHIF\): NOT WORKING, \S+/viewer/ answered 404", out)
        assert "Image viewer (OHIF): http" not in out
