"""The dashboard through Flask's test client, over a site that really received and
analysed a study: login, roles, CSRF, the worklist, the study page, feedback, retries."""

from __future__ import annotations

import base64
import http.client
import io
import json
import re
import socket

import numpy as np
import pytest
from flask.testing import FlaskClient
from markupsafe import escape
from PIL import Image
from pydicom import dcmread
from sqlalchemy import select

from assistant.db import (
    AuditEvent,
    Database,
    DeliveryState,
    Feedback,
    Job,
    ResultKind,
    ResultObject,
)
from assistant.db.migrate import upgrade
from assistant.db.session import make_engine
from assistant.findings.wording import percent
from tests.helpers import csrf_token, login
from tests.peers.tools import wait_until
from tests.support.site import ADMIN, VIEWER, Site
from web import create_app, dicom_date
from web.server import WebServer
from web.studies import age_at

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def audit_rows(site: Site, action: str) -> list[AuditEvent]:
    with site.receiver.db.sessions() as session:
        return list(
            session.scalars(
                select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
            )
        )


def page_routes(site: Site) -> list[str]:
    uid = site.study_uid
    return [
        "/",
        f"/studies/{uid}",
        f"/studies/{uid}/jobs/{site.job_id}/lesions/0.png",
        f"/studies/{uid}/jobs/{site.job_id}/slices/1.png",
        f"/studies/{uid}/results/1.dcm",
        "/admin/audit",
    ]


def test_every_page_needs_a_login(site: Site, anonymous: FlaskClient) -> None:
    for path in page_routes(site):
        response = anonymous.get(path)
        assert response.status_code == 302, path
        assert response.headers["Location"].startswith("/login?next="), path
    for path in ("/api/v1/studies", "/api/v1/openapi.json", "/api/v1/jobs", "/metrics"):
        response = anonymous.get(path)
        assert response.status_code == 401, path
        assert response.headers["WWW-Authenticate"].startswith("Basic")
    assert anonymous.get("/healthz").get_json() == {"status": "ok"}
    assert anonymous.get("/login").status_code == 200


def test_login_logout_and_the_audit_trail(site: Site, anonymous: FlaskClient) -> None:
    token = csrf_token(anonymous)
    failed_before = len(audit_rows(site, "login_failed"))
    wrong = anonymous.post(
        "/login", data={"username": ADMIN[0], "password": "wrong password", "csrf_token": token}
    )
    assert wrong.status_code == 401 and "Wrong user name or password" in wrong.get_data(
        as_text=True
    )
    assert len(audit_rows(site, "login_failed")) == failed_before + 1
    cookie_before = anonymous.get_cookie("radassist_session")
    login(anonymous, ADMIN)
    cookie_after = anonymous.get_cookie("radassist_session")
    assert cookie_after is not None and cookie_after.http_only
    assert cookie_before is None or cookie_before.value != cookie_after.value
    assert audit_rows(site, "login")[-1].username == ADMIN[0]
    assert anonymous.get("/").status_code == 200
    token = csrf_token(anonymous, "/")
    assert anonymous.post("/logout", data={"csrf_token": token}).status_code == 302
    assert anonymous.get("/").status_code == 302
    assert audit_rows(site, "logout")[-1].username == ADMIN[0]


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/\\evil.example"])
def test_login_never_redirects_off_site(site: Site, anonymous: FlaskClient, target: str) -> None:
    token = csrf_token(anonymous)
    response = anonymous.post(
        "/login?next=" + target,
        data={"username": VIEWER[0], "password": VIEWER[1], "csrf_token": token},
    )
    assert response.status_code == 302 and response.headers["Location"] == "/"


def test_login_follows_a_local_next(site: Site, anonymous: FlaskClient) -> None:
    token = csrf_token(anonymous)
    target = f"/studies/{site.study_uid}"
    response = anonymous.post(
        "/login?next=" + target,
        data={"username": VIEWER[0], "password": VIEWER[1], "csrf_token": token},
    )
    assert response.headers["Location"] == target


def test_forms_without_a_csrf_token_are_refused(
    site: Site, anonymous: FlaskClient, admin: FlaskClient
) -> None:
    response = anonymous.post("/login", data={"username": ADMIN[0], "password": ADMIN[1]})
    assert response.status_code == 400
    with site.receiver.db.sessions() as session:
        before = len(session.scalars(select(Feedback)).all())
    response = admin.post(
        f"/studies/{site.study_uid}/jobs/{site.job_id}/feedback",
        data={"finding": "0", "verdict": "accept"},
    )
    assert response.status_code == 400
    with site.receiver.db.sessions() as session:
        assert len(session.scalars(select(Feedback)).all()) == before


def test_first_start_says_how_to_create_the_admin(tmp_path, site: Site) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    upgrade(url)
    engine = make_engine(url)
    import dataclasses

    from assistant.settings import StorageSettings

    settings = dataclasses.replace(site.settings, storage=StorageSettings(data_dir=tmp_path))
    app = create_app(settings, Database(engine))
    html = app.test_client().get("/login").get_data(as_text=True)
    assert "radassist user add admin --role admin" in html
    engine.dispose()


def test_worklist_shows_the_positive_study(site: Site, viewer: FlaskClient) -> None:
    html = viewer.get("/").get_data(as_text=True)
    assert site.study_uid in html
    assert "DEMO-0001" in html
    assert 'class="verdict positive"' in html
    assert re.search(r"<td>\d{4}-\d{2}-\d{2}</td>", html)  # the study date, for people
    assert not re.search(r"<td>\d{8}</td>", html)
    # The destination PACS is down: the results could not be delivered.
    assert 'class="status failed"' in html


@pytest.mark.parametrize(
    ("query", "found"),
    [
        ("verdict=positive", True),
        ("verdict=negative", False),
        ("status=failed", True),
        ("status=delivered", False),
        ("q=DEMO", True),
        ("q=OTHER", False),
        ("from=2000-01-01", True),
        ("to=2000-01-01", False),
        ("q=%25", False),
    ],
)
def test_worklist_filters(site: Site, viewer: FlaskClient, query: str, found: bool) -> None:
    response = viewer.get("/?" + query)
    assert response.status_code == 200
    assert (site.study_uid in response.get_data(as_text=True)) is found
    api = viewer.get("/api/v1/studies?" + query).get_json()
    assert (api["total"] == 1) is found


@pytest.mark.parametrize(
    ("stored", "shown"),
    [
        ("20261122", "2026-11-22"),
        ("", ""),
        (None, ""),
        ("2026112", "2026112"),
        ("2026-11-22", "2026-11-22"),
    ],
)
def test_study_dates_are_shown_as_iso_dates(stored: str | None, shown: str) -> None:
    assert dicom_date(stored) == shown


@pytest.mark.parametrize("query", ["status=bogus", "verdict=maybe", "from=yesterday", "page=x"])
def test_worklist_rejects_bad_filters(viewer: FlaskClient, query: str) -> None:
    assert viewer.get("/?" + query).status_code == 400


def test_worklist_refresh_fragment(site: Site, viewer: FlaskClient) -> None:
    html = viewer.get("/?partial=1&verdict=positive").get_data(as_text=True)
    assert html.lstrip().startswith("<table") and site.study_uid in html


def test_study_page(site: Site, viewer: FlaskClient) -> None:
    before = len(audit_rows(site, "study_view"))
    response = viewer.get(f"/studies/{site.study_uid}")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "HEAD SYNTHETIC PHANTOM" in html  # the series, with its status
    assert '<svg xmlns="http://www.w3.org/2000/svg" class="curve"' in html
    assert f"/jobs/{site.job_id}/lesions/0.png" in html
    with site.receiver.db.sessions() as session:
        job = session.get_one(Job, site.job_id)
    findings = json.loads(job.findings_json)
    # The impression first, above the patient's details; each lesion's line below (in
    # the words of Lesion.summary, located or not).
    impression = f'<p class="impression-line">{escape(findings["impression"])}</p>'
    assert impression in html and html.index(impression) < html.index("<dt>Patient</dt>")
    assert re.search(r"hyperdense (lesion|collection)[^<]*, slices? \d+", html, re.IGNORECASE)
    # Probabilities in percent, as the SR's measurements and its text give them; the
    # verdict's line carries the study's, and no second line repeats it.
    assert (
        f"(study probability {percent(findings['study_probability'])}, "
        f"threshold {percent(findings['threshold'])})<br>"
    ) in html
    assert "Study probability" not in html
    assert re.search(r"<p>Model time \d+\.\d s\.</p>", html)
    lesion = findings["lesions"][0]["probability"]
    assert f"<th>Probability</th><td>{percent(lesion)}</td>" in html
    assert f"probability {percent(lesion)}" in job.summary
    worklist = viewer.get("/").get_data(as_text=True)
    assert f"<td>{percent(findings['study_probability'])}</td>" in worklist
    count = re.search(r"(\d+) (study|studies) · page", worklist)
    assert count and (count[1] == "1") == (count[2] == "study")
    assert "Imaging Measurement Report" in html  # the SR as text
    assert "Tracking Identifier" in html
    assert response.headers["Content-Security-Policy"].startswith("default-src 'self'")
    views = audit_rows(site, "study_view")
    assert len(views) == before + 1 and views[-1].target == site.study_uid
    assert views[-1].username == VIEWER[0]


def test_key_image_has_the_outline(site: Site, viewer: FlaskClient) -> None:
    response = viewer.get(f"/studies/{site.study_uid}/jobs/{site.job_id}/lesions/0.png")
    assert response.status_code == 200 and response.mimetype == "image/png"
    image = Image.open(io.BytesIO(response.data)).convert("RGB")
    assert image.size == (512, 512)
    pixels = np.asarray(image).astype(int)
    red = int(((pixels[..., 0] > 200) & (pixels[..., 1] < 120) & (pixels[..., 2] < 80)).sum())
    assert red > 50  # the outline, drawn in colour over a grey slice


def test_result_download_is_our_sr(site: Site, viewer: FlaskClient) -> None:
    with site.receiver.db.sessions() as session:
        sr = session.scalars(select(ResultObject).where(ResultObject.kind == ResultKind.SR)).one()
    with viewer.get(f"/studies/{site.study_uid}/results/{sr.id}.dcm") as response:
        assert response.status_code == 200 and response.mimetype == "application/dicom"
        dataset = dcmread(io.BytesIO(response.data))
    assert dataset.SOPInstanceUID == sr.sop_instance_uid
    assert dataset.StudyInstanceUID == site.study_uid


@pytest.mark.parametrize(
    "path",
    [
        "/studies/1.2.3.4",
        "/studies/{uid}/jobs/{job}/lesions/99.png",
        "/studies/{uid}/jobs/999/lesions/0.png",
        "/studies/1.2.3/results/1.dcm",
        "/studies/{uid}/results/999.dcm",
        "/studies/..%2F..%2Fetc/results/1.dcm",
        "/studies/{uid}/results/..%2F..%2Fradassist.db",
        "/nowhere",
    ],
)
def test_not_found(site: Site, viewer: FlaskClient, path: str) -> None:
    response = viewer.get(path.format(uid=site.study_uid, job=site.job_id))
    assert response.status_code == 404


def test_feedback_is_stored_shown_and_audited(site: Site, viewer: FlaskClient) -> None:
    token = csrf_token(viewer, "/")
    url = f"/studies/{site.study_uid}/jobs/{site.job_id}/feedback"
    response = viewer.post(
        url,
        data={
            "finding": "0",
            "verdict": "reject",
            "comment": "calcification, not blood",
            "csrf_token": token,
        },
    )
    assert response.status_code == 303
    html = viewer.get(f"/studies/{site.study_uid}").get_data(as_text=True)
    assert "Feedback saved." in html and "calcification, not blood" in html
    with site.receiver.db.sessions() as session:
        row = session.scalars(select(Feedback).order_by(Feedback.id.desc())).first()
    assert (row.lesion_index, row.verdict.value, row.username) == (0, "reject", VIEWER[0])
    assert audit_rows(site, "feedback")[-1].target == site.study_uid
    for bad in (
        {"finding": "0", "verdict": "maybe"},
        {"finding": "99", "verdict": "accept"},
        {"finding": "x", "verdict": "accept"},
    ):
        viewer.post(url, data={**bad, "csrf_token": token})
    with site.receiver.db.sessions() as session:
        assert session.scalars(select(Feedback).order_by(Feedback.id.desc())).first().id == row.id


def test_a_reader_marks_a_missed_finding_with_its_slices(site: Site, viewer: FlaskClient) -> None:
    """A finding the model did not report: a study-level mark with a slice range, shown
    on the page and in the API; a range outside the series, or a mark on a finding, is
    refused with a reason and stores nothing."""
    token = csrf_token(viewer, "/")
    url = f"/studies/{site.study_uid}/jobs/{site.job_id}/feedback"
    page = viewer.get(f"/studies/{site.study_uid}").get_data(as_text=True)
    assert 'class="missed-form"' in page
    answer = viewer.post(
        url,
        data={
            "finding": "study",
            "verdict": "missed",
            "first_slice": "4",
            "last_slice": "6",
            "comment": "small left subdural",
            "csrf_token": token,
        },
    )
    assert answer.status_code == 303
    with site.receiver.db.sessions() as session:
        row = session.scalars(select(Feedback).order_by(Feedback.id.desc())).first()
    assert (row.verdict.value, row.lesion_index, row.first_slice, row.last_slice) == (
        "missed",
        None,
        4,
        6,
    )
    html = viewer.get(f"/studies/{site.study_uid}").get_data(as_text=True)
    assert "missed (slices 4\u20136)" in html and "small left subdural" in html
    for bad, reason in (
        ({"finding": "study", "first_slice": "6", "last_slice": "4"}, "slices 6 to 4"),
        ({"finding": "study", "first_slice": "1", "last_slice": "999"}, "slices 1 to 999"),
        ({"finding": "0", "first_slice": "1", "last_slice": "2"}, "marked on the study"),
    ):
        refused = viewer.post(
            url,
            data={**bad, "verdict": "missed", "csrf_token": token},
            follow_redirects=True,
        )
        assert reason in refused.get_data(as_text=True)
    with site.receiver.db.sessions() as session:
        assert session.scalars(select(Feedback).order_by(Feedback.id.desc())).first().id == row.id
    listed = viewer.get(f"/api/v1/studies/{site.study_uid}/feedback").get_json()["feedback"]
    assert {"verdict": "missed", "first_slice": 4, "last_slice": 6}.items() <= listed[-1].items()
    credentials = base64.b64encode(f"{VIEWER[0]}:{VIEWER[1]}".encode()).decode()
    answer = site.app.test_client().post(
        f"/api/v1/studies/{site.study_uid}/feedback",
        json={"job_id": site.job_id, "verdict": "missed", "first_slice": 2, "last_slice": 3},
        headers={"Authorization": f"Basic {credentials}"},
    )
    assert answer.status_code == 201, answer.get_json()


def test_only_admins_read_the_audit_trail(viewer: FlaskClient, admin: FlaskClient) -> None:
    assert viewer.get("/admin/audit").status_code == 403
    html = admin.get("/admin/audit").get_data(as_text=True)
    assert "login" in html and ADMIN[0] in html


def test_delivery_retry_is_for_admins_and_delivers(
    site: Site, viewer: FlaskClient, admin: FlaskClient
) -> None:
    delivery_id = site.delivery_ids[0]
    token = csrf_token(viewer, "/")
    assert (
        viewer.post(f"/deliveries/{delivery_id}/retry", data={"csrf_token": token}).status_code
        == 403
    )
    assert site.deliveries()[0].state is DeliveryState.FAILED
    html = viewer.get(f"/studies/{site.study_uid}").get_data(as_text=True)
    assert 'class="retry"' not in html
    assert 'class="retry"' in admin.get(f"/studies/{site.study_uid}").get_data(as_text=True)
    site.pacs.start()  # the PACS is back
    token = csrf_token(admin, "/")
    for delivery in site.delivery_ids:
        response = admin.post(f"/deliveries/{delivery}/retry", data={"csrf_token": token})
        assert response.status_code == 303
    wait_until(lambda: all(d.state is DeliveryState.SENT for d in site.deliveries()), timeout=30)
    assert len(list(site.pacs.folder.iterdir())) == len(site.delivery_ids)
    assert len(audit_rows(site, "delivery_retry")) == len(site.delivery_ids)
    html = admin.get("/").get_data(as_text=True)
    assert 'class="status delivered"' in html
    # A sent result is never sent again.
    again = admin.post(
        f"/deliveries/{delivery_id}/retry", data={"csrf_token": token}, follow_redirects=True
    )
    assert "already" in again.get_data(as_text=True)


def test_every_route_but_login_and_healthz_refuses_anonymous(
    site: Site, anonymous: FlaskClient
) -> None:
    """Found from the URL map, so a route added later is covered too."""
    open_endpoints = {"auth.login", "ops.healthz", "static"}
    values = {
        "study_uid": site.study_uid,
        "series_uid": "1.2.3",
        "sop_uid": "1.2.3",
        "frame_list": "1",
    }
    checked = 0
    for rule in site.app.url_map.iter_rules():
        if rule.endpoint in open_endpoints:
            continue
        path = rule.rule
        for name in rule.arguments:
            path = path.replace(f"<{name}>", values.get(name, "1"))
            for converter in ("int", "path"):
                path = path.replace(f"<{converter}:{name}>", "1")
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            response = anonymous.open(path, method=method)
            assert response.status_code in (302, 400, 401), (method, path, response.status_code)
            if response.status_code == 302:
                assert response.headers["Location"].startswith("/login")
            assert "DEMO-0001" not in response.get_data(as_text=True), (method, path)
            checked += 1
    assert checked >= 25


def test_the_secret_key_is_private(site: Site) -> None:
    assert site.settings.secret_key_path.stat().st_mode & 0o077 == 0


def test_the_server_stops_with_a_connection_still_open(site: Site) -> None:
    """A browser keeps its connection alive; stopping closes it and ends the server's loop
    instead of leaving the thread behind (or killing it with EBADF)."""
    web = WebServer(site.settings, site.receiver.db, port=0)
    web.start()
    connection = http.client.HTTPConnection("127.0.0.1", web.port, timeout=5)
    connection.request("GET", "/healthz")
    assert connection.getresponse().read() == b'{"status":"ok"}\n'
    web.stop()
    assert web._thread is not None and not web._thread.is_alive()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", web.port), timeout=2)
    connection.close()


@pytest.mark.parametrize(
    ("born", "on", "age"),
    [
        ("19580302", "20261204", "68 y"),
        ("19580302", "20260301", "67 y"),
        ("20250610", "20261204", "17 mo"),
        ("20261120", "20261204", "14 d"),
        ("20261204", "20261204", "0 d"),
        ("", "20261204", ""),
        ("20270101", "20261204", ""),
        ("1958", "20261204", ""),
    ],
)
def test_age_at_the_study_date(born: str, on: str, age: str) -> None:
    assert age_at(born, on) == age


def test_slices_in_each_window_and_the_patient_on_the_study_page(
    site: Site, viewer: FlaskClient
) -> None:
    page = viewer.get(f"/studies/{site.study_uid}").get_data(as_text=True)
    assert re.search(
        r'<dd class="age-sex">(\d+ (y|mo|d)|age unknown), (female|male|other|sex unknown)</dd>',
        page,
    )
    assert f"{site.instances} slices read" in page
    flagged = re.search(r'data-slices="([\d,]+)"', page)
    assert flagged is not None
    numbers = [int(n) for n in flagged.group(1).split(",")]
    assert len(numbers) > 1 and all(1 <= n <= site.instances for n in numbers)

    base = f"/studies/{site.study_uid}/jobs/{site.job_id}/slices"
    pictures = {}
    for window in ("brain", "subdural", "bone"):
        response = viewer.get(f"{base}/{numbers[0]}.png?window={window}")
        assert response.status_code == 200 and response.mimetype == "image/png"
        pictures[window] = response.data
    assert len(set(pictures.values())) == 3  # three windows, three pictures
    assert viewer.get(f"{base}/{numbers[0]}.png").data == pictures["brain"]
    for bad in (f"{base}/0.png", f"{base}/{site.instances + 1}.png", f"{base}/1.png?window=lung"):
        assert viewer.get(bad).status_code == 404, bad
    lesion = f"/studies/{site.study_uid}/jobs/{site.job_id}/lesions/0.png?window=bone"
    assert viewer.get(lesion).status_code == 200
