"""The JSON API, its OpenAPI document and the Prometheus metrics."""

from __future__ import annotations

import base64
import html
import json

import pytest
from flask.testing import FlaskClient
from sqlalchemy import delete, select

from assistant.db import Instance, InstanceChange, Job, utcnow
from tests.helpers import csrf_token
from tests.support.site import ADMIN, VIEWER, Site

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def basic(user: tuple[str, str]) -> dict[str, str]:
    token = base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def test_studies_with_basic_auth(site: Site, anonymous: FlaskClient) -> None:
    data = anonymous.get("/api/v1/studies", headers=basic(VIEWER)).get_json()
    assert data["total"] == 1
    (study,) = data["studies"]
    assert study["study_instance_uid"] == site.study_uid
    assert study["verdict"] == "positive" and study["probability"] > 0.5
    assert study["patient_id"] == "DEMO-0001"
    assert study["patient_name"] == "PHANTOM^19"
    assert {"patient_sex", "patient_age"} <= set(study)


def test_wrong_basic_password_is_401(anonymous: FlaskClient) -> None:
    response = anonymous.get("/api/v1/studies", headers=basic((VIEWER[0], "nope")))
    assert response.status_code == 401


def test_a_study_and_its_findings(site: Site, viewer: FlaskClient) -> None:
    study = viewer.get(f"/api/v1/studies/{site.study_uid}").get_json()
    assert [s["status"] for s in study["series"]] in (["failed"], ["delivered"])
    findings = viewer.get(f"/api/v1/studies/{site.study_uid}/findings").get_json()
    (analysis,) = findings["analyses"]
    assert analysis["job_id"] == site.job_id and analysis["positive"] is True
    assert (analysis["series_number"], analysis["series_description"]) == (
        2,
        "HEAD SYNTHETIC PHANTOM",
    )
    assert analysis["lesions"] and {"key_sop_instance_uid", "volume_ml", "outline"} <= set(
        analysis["lesions"][0]
    )
    assert len(analysis["slices"]) == site.instances
    assert {r["kind"] for r in analysis["results"]} >= {"sr", "kos"}
    assert viewer.get("/api/v1/studies/1.2.3/findings").status_code == 404


def test_slices_are_numbered_from_one_with_their_instance_beside(
    site: Site, viewer: FlaskClient
) -> None:
    """The API counts slices as the study page does ("key slice 25"), never from 0, and
    names each by its SOP Instance UID; the stored record keeps its 0-based positions."""
    (analysis,) = viewer.get(f"/api/v1/studies/{site.study_uid}/findings").get_json()["analyses"]
    slices = analysis["slices"]
    assert [s["slice_number"] for s in slices] == list(range(1, site.instances + 1))
    assert all(s["frame_number"] is None for s in slices)  # single-frame CT slices
    with site.receiver.db.sessions() as session:
        record = json.loads(session.get_one(Job, site.job_id).findings_json)
    assert [s["sop_instance_uid"] for s in slices] == [
        s["sop_instance_uid"] for s in record["slices"]
    ]
    for lesion, stored in zip(analysis["lesions"], record["lesions"], strict=True):
        assert not {"first_slice", "last_slice", "key_slice"} & set(lesion)  # 0-based: gone
        for end in ("first", "last", "key"):
            number = lesion[f"{end}_slice_number"]
            assert number == stored[f"{end}_slice"] + 1
            assert lesion[f"{end}_sop_instance_uid"] == slices[number - 1]["sop_instance_uid"]
        assert lesion["key_sop_instance_uid"] == stored["key_sop_instance_uid"]
        first, last = lesion["first_slice_number"], lesion["last_slice_number"]
        where = f"slice {first}," if first == last else f"slices {first}\u2013{last},"
        assert where in lesion["summary"]  # the words the reports carry count the same
    flagged = [s["sop_instance_uid"] for s in slices if s["flagged"]]
    assert flagged and set(flagged) == set(record["flagged_instance_uids"])


def test_an_analysis_names_where_its_results_went(site: Site, viewer: FlaskClient) -> None:
    """The site's PACS is down and each delivery was tried once (max_attempts=1): the
    analysis says "failed", beside each object's attempts and error, and the series status
    agrees; once an admin's retry reaches the PACS (test_dashboard), all say "sent"."""
    (series,) = viewer.get(f"/api/v1/studies/{site.study_uid}").get_json()["series"]
    (analysis,) = viewer.get(f"/api/v1/studies/{site.study_uid}/findings").get_json()["analyses"]
    (job,) = viewer.get("/api/v1/jobs").get_json()["jobs"]
    deliveries = [d for r in analysis["results"] for d in r["deliveries"]]
    assert sorted(d["id"] for d in deliveries) == sorted(site.delivery_ids)
    assert all(d["destination"] == "pacs" for d in deliveries)
    expected = {"failed": "failed", "delivered": "sent"}[series["status"]]
    assert analysis["state"] == "done" and analysis["delivery"] == expected
    assert job["state"] == "done" and job["delivery"] == expected
    assert series["delivery"] == expected
    if expected == "failed":
        assert series["reason"].startswith("delivery failed")
        assert all(
            d["state"] == "failed" and d["attempts"] == 1 and d["last_error"] for d in deliveries
        )
        assert all(d["next_attempt_at"] is None and d["sent_at"] is None for d in deliveries)


def test_feedback_by_api(site: Site, viewer: FlaskClient, anonymous: FlaskClient) -> None:
    url = f"/api/v1/studies/{site.study_uid}/feedback"
    body = {"job_id": site.job_id, "finding": "study", "verdict": "accept", "comment": "agree"}
    # A browser session must send the CSRF token; Basic auth needs none.
    assert viewer.post(url, json=body).status_code == 400
    token = csrf_token(viewer, "/")
    created = viewer.post(url, json=body, headers={"X-CSRFToken": token})
    assert created.status_code == 201
    by_script = anonymous.post(url, json={**body, "finding": 0}, headers=basic(ADMIN))
    assert by_script.status_code == 201
    listed = viewer.get(url).get_json()["feedback"]
    assert {f["id"] for f in listed} >= {created.get_json()["id"], by_script.get_json()["id"]}
    assert (
        anonymous.post(url, json={**body, "verdict": "meh"}, headers=basic(ADMIN)).status_code
        == 400
    )
    assert (
        anonymous.post(url, json={**body, "job_id": 999}, headers=basic(ADMIN)).status_code == 404
    )
    assert anonymous.post(url, data="not json", headers=basic(ADMIN)).status_code == 400


def test_jobs(site: Site, viewer: FlaskClient) -> None:
    jobs = viewer.get("/api/v1/jobs?state=done").get_json()["jobs"]
    assert [j["id"] for j in jobs] == [site.job_id]
    assert jobs[0]["inference_seconds"] > 0
    assert viewer.get("/api/v1/jobs?state=failed").get_json()["jobs"] == []
    assert viewer.get("/api/v1/jobs?state=").get_json()["jobs"] == jobs  # empty: any
    weird = viewer.get("/api/v1/jobs?state=weird")
    assert weird.status_code == 400 and weird.mimetype == "application/json"
    assert weird.get_json() == {
        "error": "state must be one of queued, running, done, skipped, failed, not 'weird'",
        "parameter": "state",
        "value": "weird",
        "allowed": ["queued", "running", "done", "skipped", "failed"],
    }


def test_openapi_describes_every_route(site: Site, viewer: FlaskClient) -> None:
    document = viewer.get("/api/v1/openapi.json").get_json()
    assert document["openapi"].startswith("3.")
    documented = {
        (path, method.upper()) for path, item in document["paths"].items() for method in item
    }
    served = set()
    for rule in site.app.url_map.iter_rules():
        if rule.endpoint.startswith("api."):
            path = rule.rule.removeprefix("/api/v1").replace("<", "{").replace(">", "}")
            served |= {(path, m) for m in rule.methods - {"HEAD", "OPTIONS"}}
    assert documented == served


def test_metrics(site: Site, anonymous: FlaskClient) -> None:
    response = anonymous.get("/metrics", headers=basic(VIEWER))
    assert response.status_code == 200 and response.mimetype == "text/plain"
    assert response.headers["Content-Type"].count("charset") == 1  # as Prometheus sends it
    text = response.get_data(as_text=True)
    assert f"radassist_instances_received_total {site.instances:.1f}" in text
    assert 'radassist_jobs{state="done"} 1.0' in text
    assert 'radassist_series{state="complete"} 1.0' in text
    assert "radassist_inference_seconds_total" in text
    assert "radassist_deliveries{state=" in text
    for verdict in ("accept", "reject"):
        assert f'radassist_feedback_total{{verdict="{verdict}"}}' in text


def test_the_most_severe_finding_and_changed_instances_are_shown(
    site: Site, viewer: FlaskClient
) -> None:
    (study,) = viewer.get("/api/v1/studies").get_json()["studies"]
    with site.receiver.db.sessions() as session:
        record = json.loads(session.get_one(Job, site.job_id).findings_json)
    # The series' impression, as its record (and its SR) says it.
    assert study["impression"] == record["impression"] and study["impression"]
    assert study["finding"] == f"S2: {record['impression']}"
    worklist = html.unescape(viewer.get("/").get_data(as_text=True))
    assert f"S2: {record['impression']}"[:60] in worklist

    with site.receiver.db.sessions() as session, session.begin():
        instance = session.scalars(select(Instance).order_by(Instance.id)).first()
        assert instance is not None
        change = InstanceChange(
            instance_pk=instance.id,
            series_pk=instance.series_pk,
            action="replaced",
            version=2,
            kept_path="instances/x/y/versions/z.v1.dcm",
            calling_ae_title="MODALITY",
            received_at=utcnow(),
        )
        session.add(change)
    try:
        detail = viewer.get(f"/api/v1/studies/{site.study_uid}").get_json()
        assert [s["instance_changes"] for s in detail["series"]] == [{"replaced": 1}]
        page = viewer.get(f"/studies/{site.study_uid}").get_data(as_text=True)
        assert "1 instance replaced by the sender (earlier copies kept)" in page
    finally:
        with site.receiver.db.sessions() as session, session.begin():
            session.execute(delete(InstanceChange))
