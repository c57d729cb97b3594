"""OHIF served by the node at /viewer, proven in Debian's Chromium.

A synthetic head with a lesion and a clean series go in through the SCP and are
analysed; OHIF (the pinned @ohif/app from the npm registry, installed by our own code)
opens each study from the dashboard, lists our SR, KOS and SEG beside the images, opens
on the SR's measurement drawn with its values on the key slice without a click and
without its guided tour, shows the KOS as the key images it selects, and lists the
negative study's SR too. Screenshots go to test-artifacts/screenshots/.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from pydicom import dcmread
from sqlalchemy import select

from assistant.analysis.imaging.synthetic import write_demo_series
from assistant.db import Database, Instance, Job, JobState, ResultKind
from assistant.findings import Findings
from assistant.findings.wording import place_words
from assistant.settings import Settings, StorageSettings
from assistant.training.demo import write_demo_head
from tests.helpers import login
from tests.peers.chromium import SCREENSHOTS
from tests.peers.dcmtk import storescu
from tests.peers.tools import require_tool, wait_until
from tests.support.site import VIEWER, add_test_users, running_node, site_settings
from web import create_app
from web.server import WebServer
from web.viewer_install import (
    ViewerInstallError,
    _check_integrity,
    app_config,
    install_viewer,
    rebase,
    viewer_dir,
)

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.slow]


@dataclass
class ReadingRoom:
    settings: Settings
    db: Database
    web: WebServer
    #: Study Instance UID → the model's verdict.
    verdicts: dict[str, bool]

    def study(self, positive: bool) -> str:
        return next(uid for uid, verdict in self.verdicts.items() if verdict is positive)


@pytest.fixture(scope="module")
def room(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReadingRoom]:
    require_tool("npm")
    root = tmp_path_factory.mktemp("reading-room")
    settings = site_settings(root)
    install_viewer(settings.storage.data_dir)
    with running_node(settings) as receiver:
        storescu(receiver.scp.port, write_demo_head(root / "positive"))
        storescu(receiver.scp.port, write_demo_series(root / "negative"))
        sessions = receiver.db.sessions

        def analysed() -> dict[str, bool] | None:
            with sessions() as session:
                jobs = list(session.scalars(select(Job)))
                if len(jobs) < 2 or any(job.state is not JobState.DONE for job in jobs):
                    return None
                return {j.series.study.study_instance_uid: bool(j.positive) for j in jobs}

        verdicts = wait_until(analysed, timeout=180)
        assert sorted(verdicts.values()) == [False, True], "need one positive, one negative"
        add_test_users(receiver)
        web = WebServer(settings, receiver.db, port=0)
        web.start()
        try:
            yield ReadingRoom(settings, receiver.db, web, verdicts)
        finally:
            web.stop()


def _log_in(page, url: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(url + "login")
    page.fill("input[name=username]", VIEWER[0])
    page.fill("input[name=password]", VIEWER[1])
    page.click("button[type=submit]")
    page.wait_for_url(url)


def _open_in_viewer(context, room: ReadingRoom, study_uid: str):  # type: ignore[no-untyped-def]
    """The study page's "Open in viewer" link, followed into OHIF's new tab."""
    page = context.new_page()
    _log_in(page, room.web.url)
    page.goto(f"{room.web.url}studies/{study_uid}")
    with context.expect_page() as opened:
        page.click("#open-in-viewer")
    viewer = opened.value
    page.close()  # the reader is in OHIF now; only its tab is left to draw
    viewer.bring_to_front()
    viewer.wait_for_load_state()
    return viewer


@dataclass(frozen=True)
class Report:
    """What the positive study's analysis wrote, as the viewer should show it."""

    sr_series_uid: str
    #: Instance Number of the lesion's key slice: OHIF's "I:" in the viewport.
    key_instance_number: int
    #: Images the KOS selects.
    key_images: int
    #: Where the first lesion lies, as its measurement's label says: "right frontal".
    lesion_place: str


def _report(room: ReadingRoom, study_uid: str) -> Report:
    with room.db.sessions() as session:
        job = next(
            j
            for j in session.scalars(select(Job))
            if j.series.study.study_instance_uid == study_uid
        )
        results = {r.kind: r for r in job.results}
        lesion = Findings.from_dict(json.loads(job.findings_json)).lesions[0]
        number = session.scalar(
            select(Instance.instance_number).where(
                Instance.sop_instance_uid == lesion.key_sop_instance_uid
            )
        )
        kos = dcmread(room.settings.storage.data_dir / results[ResultKind.KOS].path)
        selected = {
            item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
            for item in kos.ContentSequence
            if "ReferencedSOPSequence" in item
        }
        assert number is not None and lesion.place is not None
        return Report(
            results[ResultKind.SR].series_instance_uid,
            number,
            len(selected),
            place_words(lesion.place),
        )


def _report_of(room: ReadingRoom) -> str:
    """The positive study's lesions as the node found them, for a failure message."""
    with room.db.sessions() as session:
        jobs = [job for job in session.scalars(select(Job)) if job.positive]
        return "; ".join(f"{job.summary!r}" for job in jobs)


def _shown(locator, timeout_ms: int) -> bool:  # type: ignore[no-untyped-def]
    try:
        locator.wait_for(timeout=timeout_ms)
    except PlaywrightTimeout:
        return False
    return True


def _bright_fraction(png: bytes) -> float:
    """Share of the viewport's pixels that are not near-black: an image was drawn."""
    grey = Image.open(io.BytesIO(png)).convert("L")
    histogram = grey.histogram()
    return sum(histogram[40:]) / max(1, sum(histogram))


def test_the_study_link_opens_our_sr_on_its_key_slice_without_a_click(  # type: ignore[no-untyped-def]
    room: ReadingRoom, browser
) -> None:
    """Following "Open in viewer" is all a reader does: OHIF opens on the SR's
    measurement, drawn with its values (HU, not the UCUM code) on the key slice, with no
    guided tour over it; the KOS is listed without OHIF's "unsupported" warning and
    opens as the key images it selects."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    study_uid = room.study(positive=True)
    expected = _report(room, study_uid)
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    errors: list[str] = []
    console: list[str] = []
    viewer = _open_in_viewer(context, room, study_uid)
    viewer.on("pageerror", lambda error: errors.append(str(error)))
    viewer.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    assert "/viewer/viewer?StudyInstanceUIDs=" in viewer.url
    assert f"initialSeriesInstanceUID={expected.sr_series_uid}" in viewer.url

    # where the lesion lies first (its tracking identifier), then its sizes: OHIF draws
    # five of a measurement's labels
    label = viewer.get_by_text(re.compile(rf"Lesion 1: {expected.lesion_place}")).first
    if not _shown(label, 90_000):
        viewer.screenshot(path=str(SCREENSHOTS / "ohif-sr-not-shown.png"))
        shown = viewer.locator("body").inner_text()
        pytest.fail(
            "OHIF did not open on the SR's measurement label.\n"
            f"page text: {shown[:2000]!r}\nerrors: {errors}\n"
            f"console (last 40): {console[-40:]}\nreport: {_report_of(room)}"
        )
    for value in (
        r"Volume: \d+\.\d+ ml",
        r"ABC/2: \d+\.\d+ ml",
        r"Probability: \d+(\.\d+)? ?%",
        r"Mean Attenuation Coefficient: -?\d+\.\d+ HU",
    ):
        viewer.get_by_text(re.compile(value)).first.wait_for(timeout=5_000)
    viewer.wait_for_timeout(1_000)
    text = viewer.locator("body").inner_text()
    assert "[hnsf'U]" not in text
    assert re.search(rf"I:\s*{expected.key_instance_number} \(", text), text[-300:]
    assert not viewer.locator(".shepherd-element").count(), "OHIF's guided tour is shown"
    assert not viewer.get_by_text("Skip all").count()
    viewport = viewer.locator(".cornerstone-viewport-element").first
    assert _bright_fraction(viewport.screenshot()) > 0.05  # the CT slice is drawn
    viewer.screenshot(path=str(SCREENSHOTS / "ohif-sr-positive.png"))

    for listed in ("AI report", "AI lesion masks", "HEAD SYNTHETIC PHANTOM"):
        assert viewer.get_by_text(listed).count()
    key_images = viewer.locator('[data-cy^="study-browser-thumbnail"]', has_text="AI key images")
    assert key_images.count() == 1
    assert not key_images.locator('[id^="display-set-tooltip-"]').count(), "KOS flagged"
    # OHIF ignores a double click on a thumbnail while it still fetches the first series.
    viewer.wait_for_load_state("networkidle", timeout=60_000)
    stack = viewer.get_by_text(f"(1/{expected.key_images})").first
    for _ in range(2):
        key_images.first.dblclick()
        if _shown(stack, 20_000):
            break
    else:
        pytest.fail(f"the key images did not open: {viewer.locator('body').inner_text()!r}")
    viewer.wait_for_timeout(1_000)
    assert _bright_fraction(viewport.screenshot()) > 0.05
    viewer.screenshot(path=str(SCREENSHOTS / "ohif-key-images.png"))
    assert not viewer.get_by_text("Something went wrong").count()
    assert errors == []
    context.close()


def test_ohif_lists_the_negative_studys_sr(room: ReadingRoom, browser) -> None:  # type: ignore[no-untyped-def]
    """A negative report is listed beside the images it speaks of. (OHIF 3.13 opens an
    SR in its viewport only when it holds a measurement with an image region, so a
    report that says "no finding" is read on our study page; see the README.)"""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    errors: list[str] = []
    viewer = _open_in_viewer(context, room, room.study(positive=False))
    viewer.on("pageerror", lambda error: errors.append(str(error)))
    assert "initialSeriesInstanceUID" not in viewer.url  # no finding to open on
    viewer.get_by_text("AI report").first.wait_for(timeout=30_000)
    assert not viewer.get_by_text("AI key images").count()  # no flagged slice, no KOS
    viewport = viewer.locator(".cornerstone-viewport-element").first
    viewport.wait_for(timeout=30_000)
    viewer.wait_for_timeout(1_000)
    assert _bright_fraction(viewport.screenshot()) > 0.05
    assert not viewer.locator(".shepherd-element").count(), "OHIF's guided tour is shown"
    viewer.screenshot(path=str(SCREENSHOTS / "ohif-sr-negative.png"))
    assert not viewer.get_by_text("Something went wrong").count()
    assert errors == []
    context.close()


def test_viewer_is_behind_the_login(room: ReadingRoom) -> None:
    app = create_app(room.settings, room.db)
    client = app.test_client()
    response = client.get("/viewer/viewer?StudyInstanceUIDs=1.2.3")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    login(client, VIEWER)
    page = client.get("/viewer/viewer?StudyInstanceUIDs=1.2.3")
    assert page.status_code == 200 and b'src="/viewer/app-config.js"' in page.data
    assert "'unsafe-inline'" not in page.headers["Content-Security-Policy"].split("script-src")[1]
    config = client.get("/viewer/app-config.js")
    assert b"routerBasename: '/viewer'" in config.data
    assert client.get("/viewer/no-such-file.js").status_code == 404
    for response in (page, config):
        response.close()


def test_without_the_viewer_the_study_page_says_how_to_enable_it(
    room: ReadingRoom, tmp_path: Path
) -> None:
    bare = replace(room.settings, storage=StorageSettings(data_dir=tmp_path / "var"))
    client = create_app(bare, room.db).test_client()
    login(client, VIEWER)
    study = client.get(f"/studies/{room.study(positive=True)}")
    assert study.status_code == 200
    assert b"open-in-viewer" not in study.data and b"make viewer" in study.data
    missing = client.get("/viewer/")
    assert missing.status_code == 404 and b"radassist viewer install" in missing.data


def _tarball(path: Path, files: dict[str, bytes]) -> Path:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    path.write_bytes(gzip.compress(raw.getvalue()))
    return path


def test_a_tarball_other_than_the_pinned_one_is_refused(tmp_path: Path) -> None:
    fake = _tarball(tmp_path / "app.tgz", {"package/dist/index.html": b"<html></html>"})
    with pytest.raises(ViewerInstallError, match="not the pinned"):
        _check_integrity(fake)


def test_rebase_moves_a_root_built_app_under_viewer(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text(
        '<script>console.time("x"),window.PUBLIC_URL="/"</script>'
        '<script rel="preload" as="script" src="/app-config.js"></script>'
        "<script>function browserImportFunction(n){return import(n)}</script>"
        '<script defer src="/app.bundle.js"></script><link href="/app.bundle.css">'
    )
    (tmp_path / "app.bundle.js").write_text('__webpack_require__.p = "/";')
    (tmp_path / "app.bundle.css").write_text("@font-face{src:url(/font.woff2)}")
    rebase(tmp_path)
    html = (tmp_path / "index.html").read_text()
    assert "<script>" not in html and 'src="/viewer/app.bundle.js"' in html
    assert 'src="/viewer/radassist-init.js"' in html
    assert '"/viewer/"' in (tmp_path / "app.bundle.js").read_text()
    assert "url(/viewer/font.woff2)" in (tmp_path / "app.bundle.css").read_text()
    assert "window.location.origin + '/dicomweb'" in app_config()
    assert "@MOUNT@" not in app_config() and "routerBasename: '/viewer'" in app_config()
    (tmp_path / "index.html").write_text("<html>nothing like OHIF</html>")
    with pytest.raises(ViewerInstallError):
        rebase(tmp_path)


def test_the_app_config_is_javascript_node_can_parse(tmp_path: Path) -> None:
    node = require_tool("node")
    config = tmp_path / "app-config.js"
    config.write_text(app_config(), encoding="utf-8")
    checked = subprocess.run([node, "--check", str(config)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr


def test_install_is_idempotent(room: ReadingRoom) -> None:
    folder = viewer_dir(room.settings.storage.data_dir)
    marker = folder / ".radassist-installed"
    before = marker.stat().st_mtime_ns
    assert install_viewer(room.settings.storage.data_dir) == folder
    assert marker.stat().st_mtime_ns == before
    # An install made by an older radassist gets this one's configuration.
    config = folder / "app-config.js"
    config.write_text("/* an older radassist's config */")
    assert install_viewer(room.settings.storage.data_dir) == folder
    assert config.read_text() == app_config() and marker.stat().st_mtime_ns == before
