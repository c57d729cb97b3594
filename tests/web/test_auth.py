"""Authentication that holds: sessions end when they should, CSRF cannot be skipped by a
header, HTTP Basic is for machines only, wrong passwords are throttled and lock accounts,
STOW-RS needs the uploader role, and every change to users is audited."""

from __future__ import annotations

import base64
import dataclasses
import io
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from assistant.access.passwords import WeakPassword, check_password_policy
from assistant.access.users import add_user, reset_password, set_active
from assistant.analysis.imaging.synthetic import write_demo_series
from assistant.cli import main
from assistant.db import AuditEvent, Database, User, WebSession, make_engine, utcnow
from assistant.db.migrate import upgrade
from assistant.settings import AuthSettings, Settings, StorageSettings, WebSettings
from tests.helpers import csrf_token, login
from web import create_app

ADMIN = ("ada", "a passphrase for the admin")
VIEWER = ("vic", "a passphrase for the viewer")
UPLOADER = ("ugo", "a passphrase for the uploader")


@dataclasses.dataclass
class App:
    app: Flask
    db: Database
    settings: Settings

    def client(self) -> FlaskClient:
        return self.app.test_client()

    def audit(self, action: str) -> list[AuditEvent]:
        with self.db.sessions() as session:
            return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


def _app(tmp_path: Path, **auth: object) -> App:
    settings = Settings(
        storage=StorageSettings(data_dir=tmp_path / "var"),
        auth=AuthSettings(**auth),  # type: ignore[arg-type]
        web=WebSettings(session_idle_minutes=30, session_hours=2),
    )
    upgrade(settings.database_url)
    db = Database(make_engine(settings.database_url))
    for (name, password), role in ((ADMIN, "admin"), (VIEWER, "viewer"), (UPLOADER, "uploader")):
        add_user(db, name, password, role)
    return App(create_app(settings, db), db, settings)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[App]:
    app = _app(tmp_path, max_failures=3, lockout_minutes=15, address_max_failures=5)
    yield app
    app.db.dispose()


def basic(user: tuple[str, str]) -> dict[str, str]:
    token = base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def _wrong_login(client: FlaskClient, name: str) -> int:
    token = csrf_token(client)
    data = {"username": name, "password": "not the password at all", "csrf_token": token}
    return client.post("/login", data=data).status_code


# -- sessions ---------------------------------------------------------------------------


def test_a_cookie_kept_from_before_logout_no_longer_works(site: App) -> None:
    browser = site.client()
    login(browser, VIEWER)
    cookie = browser.get_cookie("radassist_session")
    assert cookie is not None
    token = csrf_token(browser, "/")
    assert browser.post("/logout", data={"csrf_token": token}).status_code == 302
    thief = site.client()  # another browser, another User-Agent, the old cookie
    thief.set_cookie("radassist_session", cookie.value)
    answer = thief.get("/", headers={"User-Agent": "curl/8"})
    assert answer.status_code == 302 and "/login" in answer.headers["Location"]
    assert thief.get("/api/v1/studies").status_code == 401


def test_a_password_change_or_disabling_ends_every_session(site: App) -> None:
    browser = site.client()
    login(browser, VIEWER)
    assert browser.get("/").status_code == 200
    reset_password(site.db, VIEWER[0], "another long passphrase")
    assert browser.get("/").status_code == 302
    login(browser, (VIEWER[0], "another long passphrase"))
    assert browser.get("/").status_code == 200
    set_active(site.db, VIEWER[0], False)
    assert browser.get("/").status_code == 302


def test_an_idle_or_too_old_session_ends(site: App) -> None:
    browser = site.client()
    login(browser, VIEWER)
    with site.db.writing() as session:
        session.execute(update(WebSession).values(last_seen_at=utcnow() - timedelta(minutes=31)))
    assert browser.get("/").status_code == 302  # idle over web.session_idle_minutes
    login(browser, VIEWER)
    with site.db.writing() as session:
        session.execute(
            update(WebSession)
            .where(WebSession.revoked_at.is_(None))
            .values(created_at=utcnow() - timedelta(hours=3))
        )
    assert browser.get("/").status_code == 302  # older than web.session_hours


# -- machines: Basic per request, no cookie; browsers: CSRF always -----------------------


def test_basic_requests_get_no_cookie_and_ignore_one(site: App) -> None:
    machine = site.client()
    answer = machine.get("/api/v1/studies", headers=basic(VIEWER))
    assert answer.status_code == 200
    assert "Set-Cookie" not in answer.headers
    # A cookie of another (logged-in) user does not change who the Basic request is.
    browser = site.client()
    login(browser, ADMIN)
    cookie = browser.get_cookie("radassist_session")
    assert cookie is not None
    machine.set_cookie("radassist_session", cookie.value)
    answer = machine.get("/api/v1/studies", headers=basic(VIEWER))
    assert answer.status_code == 200 and "Set-Cookie" not in answer.headers
    assert site.audit("study_list")[-1].username == VIEWER[0]


def test_basic_credentials_do_not_open_the_dashboards_pages(site: App) -> None:
    answer = site.client().get("/", headers=basic(ADMIN))
    assert answer.status_code == 302 and "/login" in answer.headers["Location"]


def test_csrf_is_checked_on_a_session_whatever_headers_come_with_it(site: App) -> None:
    """A browser that once sent Basic credentials keeps sending them; with a session
    cookie beside them, a form post without its CSRF token is still refused."""
    browser = site.client()
    login(browser, ADMIN)
    forged = browser.post(
        "/admin/users",
        data={"username": "mallory", "role": "admin", "password": "a passphrase for mallory"},
        headers=basic(ADMIN),
    )
    assert forged.status_code == 400
    with site.db.sessions() as session:
        assert session.scalar(select(User).where(User.username == "mallory")) is None


def test_a_cross_site_request_with_cached_basic_credentials_is_refused(site: App) -> None:
    machine = site.client()
    url = "/api/v1/studies/1.2.3/feedback"
    body = {"job_id": 1, "finding": "study", "verdict": "accept"}
    for headers in ({"Sec-Fetch-Site": "cross-site"}, {"Origin": "http://evil.example"}):
        answer = machine.post(url, json=body, headers={**basic(ADMIN), **headers})
        assert answer.status_code == 403
    assert machine.post(url, json=body, headers=basic(ADMIN)).status_code == 404  # no job 1


def test_a_control_character_in_next_is_a_400(site: App) -> None:
    assert site.client().get("/login?next=/%0d%0aSet-Cookie:x=y").status_code == 400
    assert site.client().get("/login?next=/studies").status_code == 200


# -- wrong passwords ----------------------------------------------------------------------


def test_an_account_is_locked_after_too_many_wrong_passwords(site: App) -> None:
    client = site.client()
    for _ in range(3):  # auth.max_failures
        assert _wrong_login(client, VIEWER[0]) == 401
    token = csrf_token(client)
    data = {"username": VIEWER[0], "password": VIEWER[1], "csrf_token": token}
    assert client.post("/login", data=data).status_code == 401  # right password, locked
    assert site.client().get("/api/v1/studies", headers=basic(VIEWER)).status_code == 401
    [locked] = site.audit("account_locked")
    assert locked.username == VIEWER[0]
    with site.db.sessions() as session:
        user = session.scalars(select(User).where(User.username == VIEWER[0])).one()
        assert user.locked_until is not None and user.locked_until > utcnow()
    set_active(site.db, VIEWER[0], True)  # an admin's "enable" lifts it
    login(site.client(), VIEWER)


def test_an_address_with_many_failures_waits_before_any_check(site: App) -> None:
    client = site.client()
    names = ["nobody1", "nobody2", "nobody3", "nobody4", "nobody5"]
    assert [_wrong_login(client, n) for n in names] == [401] * 5  # auth.address_max_failures
    assert _wrong_login(client, "nobody6") == 401  # the 6th is checked, then a wait begins
    answer = client.post(
        "/login",
        data={"username": ADMIN[0], "password": ADMIN[1], "csrf_token": csrf_token(client)},
    )
    assert answer.status_code == 429 and int(answer.headers["Retry-After"]) >= 1
    machine = site.client().get("/metrics", headers=basic(ADMIN))
    assert machine.status_code == 429 and "Retry-After" in machine.headers
    assert site.audit("login_throttled")
    # Failures are audited, but repeats from one address under one name in one row.
    assert len(site.audit("login_failed")) == 6  # not started: a row each here


def test_failed_logins_are_coalesced_when_the_audit_trail_runs(site: App) -> None:
    trail = site.app.extensions["radassist"].audit
    trail.start()
    try:
        client = site.client()
        for _ in range(2):
            _wrong_login(client, "someone")
    finally:
        trail.stop()
    [row] = site.audit("login_failed")
    assert row.username == "someone" and row.detail.endswith("2 times")


# -- uploads by role ----------------------------------------------------------------------


def _stow(client: FlaskClient, user: tuple[str, str], body: bytes, boundary: str) -> int:
    headers = {
        **basic(user),
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
    }
    return client.post("/dicomweb/studies", data=body, headers=headers).status_code


def test_a_viewer_may_not_upload_and_every_upload_is_audited(site: App, tmp_path: Path) -> None:
    (path,) = write_demo_series(tmp_path / "one", count=1, seed=881)
    boundary = "b0undary"
    body = (
        f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        + path.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    client = site.client()
    assert _stow(client, VIEWER, body, boundary) == 403
    # No STOW intake in this app: the uploader gets past the role check to a 503.
    assert _stow(client, UPLOADER, body, boundary) == 503
    refused, accepted = site.audit("stow")
    assert refused.username == VIEWER[0] and "may not upload" in refused.detail
    assert accepted.username == UPLOADER[0] and "HTTP 503" in accepted.detail


# -- users ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("short pass", "at least 12"),
        ("xvicx-passphrase", "user name"),
        ("password1234", "common"),
        ("123456789012", "simple run"),
        ("aaaaaaaaaaaaaa", "simple run"),
        ("            ", "only spaces"),
    ],
)
def test_the_password_policy(password: str, why: str) -> None:
    with pytest.raises(WeakPassword, match=why):
        check_password_policy("xvicx", password)
    check_password_policy("xvicx", "purple otter under the bridge")


def test_user_commands_list_disable_enable_reset_delete_are_audited(
    site: App, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RADASSIST_STORAGE__DATA_DIR", str(site.settings.storage.data_dir))
    assert main(["user", "list"]) == 0
    listing = capsys.readouterr().out
    assert "vic" in listing and "viewer" in listing and "active" in listing
    assert main(["user", "disable", "vic"]) == 0
    assert main(["user", "list"]) == 0
    assert "disabled" in capsys.readouterr().out
    assert main(["user", "enable", "vic"]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("a brand new passphrase\n"))
    assert main(["user", "reset-password", "vic", "--password-stdin"]) == 0
    login(site.client(), ("vic", "a brand new passphrase"))
    assert main(["user", "set-role", "vic", "--role", "uploader"]) == 0
    assert main(["user", "list"]) == 0
    assert "uploader" in [
        line.split()[1] for line in capsys.readouterr().out.splitlines() if line.startswith("vic ")
    ]
    assert main(["user", "delete", "ugo"]) == 0
    assert main(["user", "delete", "ugo"]) == 1
    assert "no user 'ugo'" in capsys.readouterr().err
    actions = [e.action for e in site.audit("user_disable") + site.audit("user_enable")]
    actions += [e.action for e in site.audit("user_reset_password") + site.audit("user_delete")]
    actions += [e.action for e in site.audit("user_set_role")]
    assert sorted(actions) == [
        "user_delete",
        "user_disable",
        "user_enable",
        "user_reset_password",
        "user_set_role",
    ]


def test_the_admins_users_page(site: App) -> None:
    admin = site.client()
    login(admin, ADMIN)
    page = admin.get("/admin/users").get_data(as_text=True)
    assert 'id="user-vic"' in page and "uploader" in page
    token = csrf_token(admin, "/admin/users")
    created = admin.post(
        "/admin/users",
        data={"username": "newbie", "role": "viewer", "password": "weak", "csrf_token": token},
    )
    assert created.status_code == 302
    assert "at least 12 characters" in admin.get("/admin/users").get_data(as_text=True)
    admin.post("/admin/users/vic/disable", data={"csrf_token": csrf_token(admin, "/admin/users")})
    assert site.audit("user_disable")[0].target == "vic"
    viewer = site.client()
    login(viewer, UPLOADER)
    assert viewer.get("/admin/users").status_code == 403


def test_the_worklists_own_refresh_does_not_keep_a_session_alive(site: App) -> None:
    browser = site.client()
    login(browser, VIEWER)
    stale = utcnow() - timedelta(minutes=29)
    with site.db.writing() as session:
        session.execute(update(WebSession).values(last_seen_at=stale))
    assert browser.get("/?partial=1").status_code == 200  # still within the idle time
    with site.db.sessions() as session:
        assert session.scalars(select(WebSession.last_seen_at)).one() == stale  # not use
    assert browser.get("/").status_code == 200  # a person's request is
    with site.db.sessions() as session:
        assert session.scalars(select(WebSession.last_seen_at)).one() > stale


def test_a_qido_search_and_an_api_list_leave_audit_rows(site: App) -> None:
    client = site.client()
    answer = client.get("/dicomweb/studies?PatientID=DEMO*", headers=basic(VIEWER))
    assert answer.status_code == 200
    [query] = site.audit("dicomweb_query")
    assert query.username == VIEWER[0] and "PatientID=DEMO*" in query.detail
    assert client.get("/api/v1/studies?q=A123", headers=basic(VIEWER)).status_code == 200
    [listing] = site.audit("study_list")
    assert "q=A123" in listing.detail
