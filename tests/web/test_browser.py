"""The dashboard in a real browser (Debian's Chromium driven by Playwright): log in, see
the study pushed through the SCP, open it, see the plot and the key image, give feedback,
log out. Screenshots go to test-artifacts/screenshots/ (see the README)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.peers.chromium import SCREENSHOTS
from tests.support.site import VIEWER, Site
from web.server import WebServer

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def server(site: Site) -> Iterator[WebServer]:
    web = WebServer(site.settings, site.receiver.db, port=0)
    web.start()
    yield web
    web.stop()


def test_radiologist_reads_a_study(site: Site, server: WebServer, browser) -> None:  # type: ignore[no-untyped-def]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

    page.goto(server.url)
    assert "/login" in page.url
    page.fill("input[name=username]", VIEWER[0])
    page.fill("input[name=password]", VIEWER[1])
    page.click("#login")
    row = page.locator(f"tr[data-study='{site.study_uid}']")
    row.wait_for()
    assert "positive" in row.get_attribute("class")
    page.screenshot(path=str(SCREENSHOTS / "worklist.png"), full_page=True)

    row.locator("a").click()
    page.wait_for_url(f"**/studies/{site.study_uid}")
    assert page.locator("svg.curve polyline").count() == 1
    image = page.locator("img.key-image").first
    image.wait_for()
    assert page.evaluate("(img) => img.complete && img.naturalWidth", image.element_handle()) == 512
    assert "hyperdense" in page.locator(".impression-line").first.inner_text().lower()
    assert "hyperdense lesion" in page.locator(".summary").first.inner_text().lower()
    page.screenshot(path=str(SCREENSHOTS / "study.png"), full_page=True)

    # The flagged slices: windowed, zoomed and stepped through in the page.
    flagged = page.locator(".slice-viewer").first
    numbers = flagged.get_attribute("data-slices").split(",")
    assert len(numbers) > 1
    shown = flagged.locator("img")

    def loaded() -> str:
        page.wait_for_function(
            "(img) => img.complete && img.naturalWidth > 0", arg=shown.element_handle()
        )
        return shown.get_attribute("src")

    first = loaded()
    flagged.locator("button[data-window=bone]").click()
    assert loaded().endswith("?window=bone") and f"/slices/{numbers[0]}.png" in first
    flagged.locator("button[data-step='1']").click()
    assert f"/slices/{numbers[1]}.png?window=bone" in loaded()
    assert f"slice {numbers[1]} of " in flagged.locator(".where").inner_text()
    flagged.locator("button[data-zoom='1.5']").click()
    assert "scale(1.5)" in shown.get_attribute("style")

    form = page.locator("article.lesion form.feedback-form").first
    form.locator("input[value=accept]").check()
    form.locator("input[name=comment]").fill("seen in the browser")
    form.locator("button").click()
    page.locator(".flash.info").wait_for()
    assert "Feedback saved." in page.locator(".flash.info").inner_text()
    assert "seen in the browser" in page.locator("table.feedback").inner_text()

    page.click("#logout")
    page.wait_for_url("**/login")
    page.goto(server.url)
    assert "/login" in page.url
    assert errors == []
    context.close()


def test_a_page_elsewhere_cannot_act_with_cached_basic_credentials(
    site: Site, server: WebServer, browser, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """Chromium keeps HTTP Basic credentials once a user typed them (here: for the API)
    and sends them with later requests to the node, whoever's page makes them. A page on
    another origin auto-submits a feedback form to the dashboard, a text/plain "JSON"
    post to the API, and a delivery retry: none of them does anything."""
    import base64
    import http.server
    import threading

    from sqlalchemy import func, select

    from assistant.db import AuditEvent, Feedback
    from tests.support.site import ADMIN

    def counts() -> tuple[int, int]:
        with site.receiver.db.sessions() as session:
            feedback = session.scalar(select(func.count(Feedback.id))) or 0
            retries = session.scalar(
                select(func.count(AuditEvent.id)).where(AuditEvent.action == "delivery_retry")
            )
            return int(feedback), int(retries or 0)

    target = server.url.rstrip("/")
    attack = f"""<!doctype html><html><body>
<iframe name="a"></iframe><iframe name="b"></iframe><iframe name="c"></iframe>
<form id="f1" method="post" target="a"
      action="{target}/studies/{site.study_uid}/jobs/{site.job_id}/feedback">
  <input name="finding" value="study"><input name="verdict" value="reject">
  <input name="comment" value="forged"></form>
<form id="f2" method="post" target="b" enctype="text/plain"
      action="{target}/api/v1/studies/{site.study_uid}/feedback">
  <input name='{{"job_id": {site.job_id}, "finding": "study", "verdict": "reject", "x": "'
         value='"}}'></form>
<form id="f3" method="post" target="c" action="{target}/deliveries/{site.delivery_ids[0]}/retry"></form>
<script>for (const f of ["f1", "f2", "f3"]) document.getElementById(f).submit();
setTimeout(() => document.title = "sent", 1500);</script>
</body></html>"""
    (tmp_path / "index.html").write_text(attack)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
            super().__init__(*args, directory=str(tmp_path), **kwargs)

        def log_message(self, *args) -> None:  # type: ignore[no-untyped-def]
            pass

    elsewhere = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=elsewhere.serve_forever, daemon=True).start()
    # What a browser does once a user typed Basic credentials for the node: it sends them
    # with later requests to it, whichever page makes them (as an extra header here).
    credentials = base64.b64encode(f"{ADMIN[0]}:{ADMIN[1]}".encode()).decode()
    context = browser.new_context(extra_http_headers={"Authorization": f"Basic {credentials}"})
    try:
        page = context.new_page()
        assert page.goto(f"{target}/api/v1/studies").status == 200  # credentials cached
        page.goto(f"{target}/login")
        page.fill("input[name=username]", ADMIN[0])  # and a dashboard session beside them
        page.fill("input[name=password]", ADMIN[1])
        page.click("#login")
        page.wait_for_load_state()
        assert page.url.rstrip("/") == target, (page.url, page.content()[:3000])
        before = counts()
        page.goto(f"http://127.0.0.1:{elsewhere.server_address[1]}/index.html")
        page.wait_for_function("document.title === 'sent'", timeout=15000)
        assert counts() == before
    finally:
        context.close()
        elsewhere.shutdown()


#: Wraps the browser's Notification so that the test sees each one the page makes.
NOTIFICATION_SPY = """
(() => {
  const Real = window.Notification;
  if (!Real) return;
  window.notes = [];
  function Spy(title, options) {
    const seen = { title, body: options && options.body, note: null };
    window.notes.push(seen);
    seen.note = new Real(title, options);
    return seen.note;
  }
  Object.defineProperty(Spy, "permission", { get: () => Real.permission });
  Spy.requestPermission = (...args) => Real.requestPermission(...args);
  window.Notification = Spy;
})();
"""


def test_a_new_positive_shows_up_live_highlighted_and_notified(browser, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """With the worklist open and filtered to positives, a study analysed positive
    meanwhile appears without a reload, highlighted, the filter kept; the reader who
    allowed notifications gets one with its impression, which opens the study."""
    from datetime import timedelta

    from sqlalchemy import update

    from assistant.db import Job, JobState, Patient, Series, SeriesState, Study, utcnow
    from assistant.settings import Settings, StorageSettings
    from tests.web.readings import readings_site

    impression = "Acute extradural haematoma, right temporal, 14 mm thick."
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with readings_site(tmp_path) as readings:
        settings = Settings(storage=StorageSettings(data_dir=tmp_path / "var"))  # readings'
        with readings.db.writing() as session:  # analysed yesterday: not news
            session.execute(update(Job).values(finished_at=utcnow() - timedelta(days=1)))
        web = WebServer(settings, readings.db, port=0)
        web.start()
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        try:
            context.grant_permissions(["notifications"], origin=web.url.rstrip("/"))
            context.add_init_script(NOTIFICATION_SPY)
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(f"{web.url}?verdict=positive")
            page.fill("input[name=username]", VIEWER[0])
            page.fill("input[name=password]", VIEWER[1])
            page.click("#login")
            page.locator(f"tr[data-study='{readings.study_uids['located']}']").wait_for()
            assert page.locator("tr.study").count() == 2  # the two positives
            page.check("#notify")  # permission granted already: no prompt
            page.evaluate("window.stayed = true")  # gone if the page reloads

            def arrives(number: int, positive: bool) -> str:
                now = utcnow()
                study_uid = f"1.2.826.0.1.3680043.10.543.7.{number}"
                finding = impression if positive else "No acute intracranial haemorrhage."
                with readings.db.writing() as session:
                    session.add(
                        Job(
                            series=Series(
                                series_instance_uid=f"{study_uid}.1",
                                study=Study(
                                    study_instance_uid=study_uid,
                                    patient=Patient(patient_id=f"LIVE-{number}", created_at=now),
                                    accession_number=f"LIVE{number}",
                                    study_description="CT HEAD",
                                    received_at=now,
                                ),
                                modality="CT",
                                series_number=3,
                                instance_count=30,
                                state=SeriesState.COMPLETE,
                                first_received_at=now,
                                last_received_at=now,
                                completed_at=now,
                            ),
                            model_name="demo-hyperdense",
                            model_version="1.0",
                            input_digest=f"live-{number}",
                            instance_count=30,
                            state=JobState.DONE,
                            attempts=1,
                            created_at=now,
                            started_at=now,
                            finished_at=now,
                            study_probability=0.98 if positive else 0.01,
                            positive=positive,
                            summary=finding,
                            findings_json=json.dumps({"impression": finding}),
                        )
                    )
                return study_uid

            negative = arrives(1, positive=False)
            fresh = arrives(2, positive=True)
            row = page.locator(f"tr[data-study='{fresh}']")
            row.wait_for(timeout=15000)
            assert "new-positive" in row.get_attribute("class")
            assert row.locator(".new-flag").inner_text().strip().lower().startswith("new")
            assert impression[:40] in row.locator("td.finding").inner_text()
            assert page.locator(f"tr[data-study='{negative}']").count() == 0  # filtered out
            assert page.evaluate("window.stayed") is True  # no reload
            assert "verdict=positive" in page.url
            assert page.locator("select[name=verdict]").input_value() == "positive"
            page.wait_for_function("window.notes.length > 0", timeout=5000)
            notes = page.evaluate("window.notes.map((n) => ({title: n.title, body: n.body}))")
            assert notes == [{"title": "New positive study", "body": impression}]
            assert page.locator("tr.study.new-positive").count() == 1  # not the ones there
            page.screenshot(path=str(SCREENSHOTS / "worklist-new-positive.png"), full_page=True)

            page.evaluate("window.notes[0].note.dispatchEvent(new Event('click'))")
            page.wait_for_url(f"**/studies/{fresh}")
            page.go_back()
            page.locator(f"tr[data-study='{fresh}']").wait_for()
            assert page.locator("tr.study.new-positive").count() == 0  # opened: not new
            assert errors == []
        finally:
            context.close()
            web.stop()
