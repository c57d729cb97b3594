"""The API's contract: its OpenAPI document is valid (openapi-spec-validator), every
answer, errors included, is what the document says (jsonschema, with no undocumented
field), bad query values are refused with the value and what is allowed, DICOMweb errors
are JSON too, every metric is there at zero from the start, and an analysis shows its
deliveries while a real PACS (Orthanc) is down and after it returns."""

from __future__ import annotations

import base64
import copy
import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from werkzeug.test import TestResponse

from assistant.access.users import add_user
from assistant.cli import build_worker
from assistant.db import Database, make_engine
from assistant.db.migrate import upgrade
from assistant.intake.receiver import Receiver
from assistant.settings import DeliverySettings, Destination, Settings, StorageSettings
from assistant.training.demo import write_demo_head
from tests.peers.dcmtk import storescu
from tests.peers.orthanc import Orthanc
from tests.peers.tools import wait_until
from tests.support.site import VIEWER, Site
from tests.web.readings import KINDS, Readings
from web import create_app
from web.openapi import openapi_document

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def basic(user: tuple[str, str]) -> dict[str, str]:
    token = base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def _strict(schema: Any) -> Any:
    """The schema with every object closed (additionalProperties false where it lists its
    properties): an answer's field the document does not name fails, too."""
    if isinstance(schema, dict):
        closed = {key: _strict(value) for key, value in schema.items()}
        if "properties" in closed and "additionalProperties" not in closed:
            closed["additionalProperties"] = False
        return closed
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    return schema


def conforms(response: TestResponse, path: str, method: str = "get") -> Any:
    """Check an answer against the document's schema for its status (else the default
    response); returns its JSON."""
    document = openapi_document()
    responses = document["paths"][path][method]["responses"]
    answer = responses.get(str(response.status_code)) or responses["default"]
    if "$ref" in answer:
        answer = document["components"]["responses"][answer["$ref"].rsplit("/", 1)[1]]
    assert response.mimetype == "application/json", response.get_data(as_text=True)[:200]
    schema = answer["content"]["application/json"]["schema"]
    root = {**copy.deepcopy(schema), "components": _strict(document["components"])}
    body = response.get_json()
    Draft202012Validator(root, format_checker=Draft202012Validator.FORMAT_CHECKER).validate(body)
    return body


def error_body(response: TestResponse) -> dict[str, Any]:
    """An answer that must be the Error body (under /api/v1 or /dicomweb)."""
    assert response.mimetype == "application/json", response.get_data(as_text=True)[:200]
    schema = {**_strict(openapi_document()["components"]["schemas"]["Error"])}
    body = response.get_json()
    Draft202012Validator(schema).validate(body)
    return body


def test_the_openapi_document_is_valid() -> None:
    validate(openapi_document())  # OpenAPI 3.1, its schemas JSON Schema 2020-12


def test_every_answer_is_what_the_document_says(site: Site, viewer: FlaskClient) -> None:
    uid = site.study_uid
    study = conforms(viewer.get(f"/api/v1/studies/{uid}"), "/studies/{study_uid}")
    assert study["study_instance_uid"] == uid and study["series"]
    page = conforms(viewer.get("/api/v1/studies?per_page=200&page=1"), "/studies")
    assert page["per_page"] == 200 and page["studies"]
    analyses = conforms(
        viewer.get(f"/api/v1/studies/{uid}/findings"), "/studies/{study_uid}/findings"
    )["analyses"]
    assert analyses and analyses[0]["lesions"] and analyses[0]["results"]
    conforms(viewer.get(f"/api/v1/studies/{uid}/feedback"), "/studies/{study_uid}/feedback")
    assert conforms(viewer.get("/api/v1/jobs?limit=500"), "/jobs")["jobs"]
    assert viewer.get("/api/v1/openapi.json").get_json() == openapi_document()


READING = ("impression", "midline_shift_mm", "anatomy_read")


def test_every_answer_carries_the_reading_an_old_record_too(readings: Readings) -> None:
    """Each study, series, analysis and job says its impression, midline shift and
    whether the anatomy was read; an analysis from before lesions were located (findings
    version 2) says what it can, nulls for the rest, and fits the same schemas."""
    client = readings.client()
    expected = {
        "located": (readings.findings["located"].impression(), -6.3, True),
        "old": ("Hyperdense lesion, 5.0 mL.", None, False),
        "negative": ("No hyperdense lesion (probability 3.0 %).", None, False),
    }
    listed = conforms(client.get("/api/v1/studies"), "/studies")["studies"]
    by_uid = {s["study_instance_uid"]: s for s in listed}
    jobs = {j["id"]: j for j in conforms(client.get("/api/v1/jobs"), "/jobs")["jobs"]}
    for kind in KINDS:
        uid = readings.study_uids[kind]
        study = conforms(client.get(f"/api/v1/studies/{uid}"), "/studies/{study_uid}")
        (series,) = study["series"]
        (analysis,) = conforms(
            client.get(f"/api/v1/studies/{uid}/findings"), "/studies/{study_uid}/findings"
        )["analyses"]
        job = jobs[readings.job_ids[kind]]
        for answer in (by_uid[uid], study, series, analysis, job):
            assert tuple(answer[key] for key in READING) == expected[kind], kind
        assert study["finding"] == f"S2: {expected[kind][0]}"


def test_each_lesion_says_where_it_lies_or_null(readings: Readings) -> None:
    client = readings.client()
    path = "/studies/{study_uid}/findings"
    located = conforms(
        client.get(f"/api/v1/studies/{readings.study_uids['located']}/findings"), path
    )["analyses"][0]["lesions"]
    assert [les["place"] for les in located] == [
        {
            "side": "left",
            "compartment": "supratentorial",
            "region": "frontal",
            "relation": "extra-axial",
            "shape": "crescent",
            "approximate": True,
        },
        {
            "side": "right",
            "compartment": "supratentorial",
            "region": "parietal",
            "relation": "intra-axial",
            "shape": "",
            "approximate": False,
        },
    ]
    assert [(les["abc2_volume_ml"], les["thickness_mm"], les["severity"]) for les in located] == [
        (22.1, 9.2, "medium"),
        (2.9, None, "small"),
    ]
    assert located[1]["summary"].startswith("Small right parietal intraparenchymal")
    (old,) = conforms(client.get(f"/api/v1/studies/{readings.study_uids['old']}/findings"), path)[
        "analyses"
    ][0]["lesions"]
    assert (old["place"], old["abc2_volume_ml"], old["thickness_mm"], old["severity"]) == (
        None,
        None,
        None,
        "",
    )
    negative = client.get(f"/api/v1/studies/{readings.study_uids['negative']}/findings")
    assert conforms(negative, path)["analyses"][0]["lesions"] == []


def test_the_document_holds_lesions_to_the_places_there_are() -> None:
    """The Lesion schema names each field's values: a side or a severity not in the
    model's words, or a lesion without its place, is not what the API answers."""
    components = _strict(openapi_document()["components"])
    lesion = {"$ref": "#/components/schemas/Lesion", "components": components}
    validator = Draft202012Validator(lesion)
    place = {
        "side": "right",
        "compartment": "supratentorial",
        "region": "parietal",
        "relation": "intra-axial",
        "shape": "",
        "approximate": False,
    }
    good = {
        "index": 0,
        **{f"{end}_slice_number": 2 for end in ("first", "last", "key")},
        **{f"{end}_sop_instance_uid": "1.2.3" for end in ("first", "last", "key")},
        **{f"{end}_frame_number": None for end in ("first", "last", "key")},
        "outline": [[1.0, 2.0], [3.0, 4.0], [5.0, 1.0]],
        "area_mm2": 10.0,
        "longest_diameter_mm": 4.0,
        "volume_ml": 0.1,
        "mean_hu": 60.0,
        "probability": 0.9,
        "label": 1,
        "summary": "Small right parietal intraparenchymal hyperdense lesion, 0.1 mL",
        "place": place,
        "abc2_volume_ml": 0.1,
        "thickness_mm": None,
        "severity": "small",
    }
    validator.validate(good)
    validator.validate({**good, "place": None, "abc2_volume_ml": None, "severity": ""})
    for bad in (
        {**good, "place": {**place, "side": "up"}},
        {**good, "place": {**place, "lobe": "frontal"}},
        {**good, "severity": "huge"},
        {**good, "abc2_volume_ml": -1.0},
        {key: value for key, value in good.items() if key != "place"},
    ):
        assert not validator.is_valid(bad), bad


@pytest.mark.parametrize(
    ("query", "parameter", "allowed"),
    [
        ("/studies?status=nope", "status", ["receiving", "waiting", "analysing", "queued"]),
        ("/studies?verdict=maybe", "verdict", ["positive", "negative", "none"]),
        ("/studies?per_page=0", "per_page", None),
        ("/studies?per_page=201", "per_page", None),
        ("/studies?per_page=ten", "per_page", None),
        ("/studies?page=0", "page", None),
        ("/studies?page=-1", "page", None),
        ("/studies?from=yesterday", "from", None),
        ("/studies?to=2026-02-30", "to", None),
        ("/studies?from=2026-03-02&to=2026-03-01", "to", None),
        ("/jobs?state=bogus", "state", ["queued", "running", "done", "skipped", "failed"]),
        ("/jobs?limit=0", "limit", None),
        ("/jobs?limit=501", "limit", None),
        ("/jobs?limit=" + "9" * 5000, "limit", None),
        ("/studies?q=" + "D" * 65, "q", None),
    ],
)
def test_a_bad_query_value_is_a_json_400_naming_it(
    site: Site, viewer: FlaskClient, query: str, parameter: str, allowed: list[str] | None
) -> None:
    response = viewer.get("/api/v1" + query)
    assert response.status_code == 400
    body = conforms(response, query.split("?")[0])
    assert body["parameter"] == parameter and parameter in body["error"]
    if allowed is not None:
        assert set(allowed) <= set(body["allowed"])
    if parameter in ("per_page", "limit"):
        assert body["minimum"] == 1 and body["maximum"] in (200, 500)


def test_a_bad_feedback_body_names_its_field(site: Site, anonymous: FlaskClient) -> None:
    url = f"/api/v1/studies/{site.study_uid}/feedback"
    good = {"job_id": site.job_id, "finding": "study", "verdict": "accept"}
    path = "/studies/{study_uid}/feedback"
    for change, field in (
        ({"job_id": "1"}, "job_id"),
        ({"job_id": True}, "job_id"),
        ({"finding": -1}, "finding"),
        ({"finding": "lesion"}, "finding"),
        ({"verdict": "meh"}, "verdict"),
        ({"comment": 7}, "comment"),
        ({"comment": "x" * 2001}, "comment"),
    ):
        response = anonymous.post(url, json={**good, **change}, headers=basic(VIEWER))
        assert response.status_code == 400, change
        assert conforms(response, path, "post")["parameter"] == field
    not_json = anonymous.post(url, data="not json", headers=basic(VIEWER))
    assert not_json.status_code == 400 and "JSON" in conforms(not_json, path, "post")["error"]
    missing = anonymous.post(url, json={**good, "job_id": 999}, headers=basic(VIEWER))
    assert missing.status_code == 404 and conforms(missing, path, "post")["error"]


def test_every_other_error_under_the_api_is_json(site: Site, anonymous: FlaskClient) -> None:
    auth = basic(VIEWER)
    unknown = anonymous.get("/api/v1/studies/1.2.3", headers=auth)
    assert unknown.status_code == 404
    assert conforms(unknown, "/studies/{study_uid}")["parameter"] == "study_uid"
    assert anonymous.get("/api/v1/nothing-here", headers=auth).status_code == 404
    error_body(anonymous.get("/api/v1/nothing-here", headers=auth))
    not_allowed = anonymous.post("/api/v1/jobs", headers=auth)
    assert not_allowed.status_code == 405 and not_allowed.headers["Allow"]
    assert conforms(not_allowed, "/jobs")["allowed"] == ["GET"]
    unauthorised = anonymous.get("/api/v1/jobs")
    assert unauthorised.status_code == 401
    conforms(unauthorised, "/jobs")
    cross_site = anonymous.post(
        f"/api/v1/studies/{site.study_uid}/feedback",
        json={},
        headers={**auth, "Sec-Fetch-Site": "cross-site"},
    )
    assert cross_site.status_code == 403
    conforms(cross_site, "/studies/{study_uid}/feedback", "post")
    # The dashboard's pages keep their own pages.
    assert anonymous.post("/healthz").mimetype == "text/html"


def test_dicomweb_errors_are_json(site: Site, anonymous: FlaskClient) -> None:
    auth = basic(VIEWER)
    for query in ("limit=-1", "offset=x"):
        response = anonymous.get(f"/dicomweb/studies?{query}", headers=auth)
        assert response.status_code == 400
        assert error_body(response)["parameter"] == query.split("=")[0]
    assert anonymous.get("/dicomweb/studies?limit=0", headers=auth).status_code == 200
    not_allowed = anonymous.delete("/dicomweb/studies", headers=auth)
    assert not_allowed.status_code == 405
    assert set(error_body(not_allowed)["allowed"]) == {"GET", "POST"}
    missing = anonymous.get("/dicomweb/studies/1.2.3/metadata", headers=auth)
    assert missing.status_code == 404 and error_body(missing)["error"]


def test_every_metric_is_there_at_zero_from_the_start(tmp_path: Path) -> None:
    """Every metric and label value docs/operations.md lists, on a node that has seen
    nothing yet."""
    settings = Settings(storage=StorageSettings(data_dir=tmp_path / "var"))
    upgrade(settings.database_url)
    db = Database(make_engine(settings.database_url))
    try:
        add_user(db, *VIEWER, "viewer")
        response = create_app(settings, db).test_client().get("/metrics", headers=basic(VIEWER))
        assert response.status_code == 200
        text = response.get_data(as_text=True)
    finally:
        db.dispose()
    listed = (Path(__file__).parents[2] / "docs" / "operations.md").read_text()
    expected = [
        "radassist_instances_received_total 0.0",
        *(f'radassist_series{{state="{s}"}} 0.0' for s in ("receiving", "complete")),
        *(
            f'radassist_jobs{{state="{s}"}} 0.0'
            for s in ("queued", "running", "done", "skipped", "failed")
        ),
        "radassist_inference_seconds_total 0.0",
        "radassist_inferences_total 0.0",
        *(
            f'radassist_deliveries{{state="{s}"}} 0.0'
            for s in ("pending", "sending", "sent", "failed")
        ),
        *(f'radassist_feedback_total{{verdict="{v}"}} 0.0' for v in ("accept", "reject")),
    ]
    missing = [line for line in expected if line not in text]
    assert missing == []
    for name in {line.split("{")[0].split(" ")[0] for line in expected}:
        assert f"`{name}" in listed, f"{name} is served but not in docs/operations.md"


# -- deliveries while the PACS is down, and after -------------------------------------


@pytest.fixture
def node_with_orthanc(
    start_node: Callable[..., Receiver],
    start_orthanc: Callable[..., Orthanc],
    tmp_path: Path,
) -> Iterator[tuple[Receiver, Orthanc, Settings]]:
    """A node and a worker whose destination is an Orthanc that is down (stopped) when
    the results are ready; waits between attempts short enough for a test."""
    node = start_node(quiet_seconds=1.0)
    orthanc = start_orthanc({})
    destination = Destination("pacs", host="127.0.0.1", port=orthanc.dicom_port, ae_title="ORTHANC")
    settings = dataclasses.replace(
        node.settings,
        destinations=(destination,),
        delivery=DeliverySettings(backoff_seconds=1.0, max_backoff_seconds=2.0, poll_seconds=0.2),
    )
    orthanc.stop()
    worker = build_worker(settings, node.db)
    worker.start()
    try:
        yield node, orthanc, settings
    finally:
        worker.stop()


def test_an_analysis_shows_its_deliveries_while_the_pacs_is_down_and_after(
    node_with_orthanc: tuple[Receiver, Orthanc, Settings], tmp_path: Path
) -> None:
    node, orthanc, settings = node_with_orthanc
    add_user(node.db, *VIEWER, "viewer")
    client = create_app(settings, node.db).test_client()
    files = write_demo_head(tmp_path / "series")
    assert storescu(node.scp.port, files).returncode == 0

    def analysis(expected: str) -> dict[str, Any] | None:
        found = client.get("/api/v1/studies", headers=basic(VIEWER)).get_json()["studies"]
        if not found:
            return None
        uid = found[0]["study_instance_uid"]
        answer = client.get(f"/api/v1/studies/{uid}/findings", headers=basic(VIEWER))
        analyses = conforms(answer, "/studies/{study_uid}/findings")["analyses"]
        deliveries = [d for a in analyses for r in a["results"] for d in r["deliveries"]]
        if not deliveries or analyses[0]["delivery"] != expected:
            return None
        if expected == "failing" and any(d["state"] != "pending" for d in deliveries):
            return None  # one is being tried right now: look again
        return {**analyses[0], "study": uid, "deliveries": deliveries}

    down = wait_until(lambda: analysis("failing"), timeout=180, interval=0.5)
    assert down["state"] == "done"  # the model has read it; the results wait for the PACS
    assert {r["kind"] for r in down["results"]} == {"sr", "kos", "seg"}
    for delivery in down["deliveries"]:
        assert delivery["destination"] == "pacs" and delivery["attempts"] > 0
        assert delivery["last_error"] and delivery["next_attempt_at"]
        assert delivery["sent_at"] is None
    (job,) = conforms(client.get("/api/v1/jobs", headers=basic(VIEWER)), "/jobs")["jobs"]
    assert (job["state"], job["delivery"]) == ("done", "failing")
    study = client.get(f"/api/v1/studies/{down['study']}", headers=basic(VIEWER)).get_json()
    assert [(s["status"], s["delivery"]) for s in study["series"]] == [("done", "failing")]

    orthanc.start()
    sent = wait_until(lambda: analysis("sent"), timeout=60, interval=0.5)
    for delivery in sent["deliveries"]:
        assert delivery["state"] == "sent" and delivery["attempts"] >= 2
        assert delivery["peer_status"] == 0 and delivery["sent_at"]
        assert delivery["next_attempt_at"] is None
    study = client.get(f"/api/v1/studies/{down['study']}", headers=basic(VIEWER)).get_json()
    assert [(s["status"], s["delivery"]) for s in study["series"]] == [("delivered", "sent")]
    (job,) = client.get("/api/v1/jobs", headers=basic(VIEWER)).get_json()["jobs"]
    assert job["delivery"] == "sent"
