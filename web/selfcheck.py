"""Does each page the demo prints answer? Asked over HTTP as a browser would, logged in.

`make demo` prints addresses for a new user to click; one that answers 404 (as the viewer
once did, from a relative data folder) is the first thing that user sees. The demo
therefore requests each address it is about to print and says what is wrong instead of
printing a dead link.
"""

from __future__ import annotations

import html
import http.cookiejar
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

_TOKEN = re.compile(r'<meta name="csrf-token" content="([^"]+)">')
#: The study page's "Open in viewer" link (the first link into the viewer).
_VIEWER_LINK = re.compile(r'href="(/viewer/[^"]+)"')
_TIMEOUT = 30


@dataclass(frozen=True)
class PageCheck:
    """One address and what it answered."""

    what: str
    url: str
    #: The HTTP status, or None when no answer came.
    status: int | None
    problem: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 200 and not self.problem


class _Browser:
    """A cookie-keeping HTTP client logged in to the dashboard."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )

    def get(self, path: str) -> tuple[int | None, str, str]:
        """(status, body, problem) of a GET."""
        try:
            with self._opener.open(self.base_url + path, timeout=_TIMEOUT) as response:
                return response.status, response.read().decode("utf-8", "replace"), ""
        except urllib.error.HTTPError as exc:
            return exc.code, "", f"answered {exc.code} {exc.reason}"
        except OSError as exc:
            return None, "", f"no answer ({exc})"

    def log_in(self, username: str, password: str) -> str:
        """ "" when logged in, else what went wrong."""
        status, body, problem = self.get("/login")
        token = _TOKEN.search(body)
        if status != 200 or token is None:
            return problem or "the login page has no form"
        form = urllib.parse.urlencode(
            {"username": username, "password": password, "csrf_token": token.group(1)}
        ).encode()
        request = urllib.request.Request(self.base_url + "/login", data=form, method="POST")
        try:
            with self._opener.open(request, timeout=_TIMEOUT) as response:
                landed = response.geturl()
        except (urllib.error.HTTPError, OSError) as exc:
            return f"logging in failed ({exc})"
        return "" if not landed.rstrip("/").endswith("/login") else "the demo login was refused"


def check_pages(
    base_url: str,
    login: tuple[str, str],
    study_uid: str,
    viewer_installed: bool,
) -> list[PageCheck]:
    """Log in as the demo user and request the dashboard, the demo study's page and,
    when installed, the viewer, its configuration and the study page's viewer link."""
    browser = _Browser(base_url)
    refused = browser.log_in(*login)
    pages = [("Dashboard", "/"), ("Demo study", f"/studies/{study_uid}")]
    if viewer_installed:
        pages += [("Image viewer (OHIF)", "/viewer/"), ("Viewer settings", "/viewer/app-config.js")]
    pages.sort(key=lambda page: page[0] == "Demo study")  # the study (and its link) last
    checks = []
    for what, path in pages:
        url = browser.base_url + path
        if refused:
            checks.append(PageCheck(what, url, None, refused))
            continue
        status, body, problem = browser.get(path)
        if status == 200 and 'type="password"' in body:
            problem = "shows the login form: the demo login did not hold"
        checks.append(PageCheck(what, url, status, problem))
        if what == "Demo study" and viewer_installed and status == 200:
            link = _VIEWER_LINK.search(body)
            if link is None:
                checks.append(PageCheck("Demo study in the viewer", url, 200, "no viewer link"))
            else:
                target = html.unescape(link.group(1))
                status, _, problem = browser.get(target)
                checks.append(
                    PageCheck(
                        "Demo study in the viewer", browser.base_url + target, status, problem
                    )
                )
    return checks
