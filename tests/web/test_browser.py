"""The dashboard in a real browser (Debian's Chromium driven by Playwright): log in, see
the study pushed through the SCP, open it, see the plot and the key image, give feedback,
log out. Screenshots go to test-artifacts/screenshots/ (see the README)."""

from __future__ import annotations

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
    assert "Hyperdense lesion" in page.locator(".summary").first.inner_text()
    page.screenshot(path=str(SCREENSHOTS / "study.png"), full_page=True)

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
