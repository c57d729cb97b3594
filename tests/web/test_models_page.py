"""The model registry on the dashboard: the list of models and routes, a model's card and
history, a model in shadow compared with the live one (the numbers, and the warning
when too few series are reviewed), its promotion by an admin only (403 for a viewer,
refused without a CSRF token, audited), the study page showing the live and the shadow
analyses apart, the worklist's verdict from the live job alone, and /api/v1/models."""

from __future__ import annotations

import copy
import html
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from assistant.access.users import add_user
from assistant.db import (
    AuditEvent,
    Database,
    Feedback,
    FeedbackVerdict,
    Job,
    JobState,
    ModelState,
    Patient,
    ResultKind,
    ResultObject,
    Series,
    SeriesState,
    Study,
    make_engine,
    utcnow,
)
from assistant.db.migrate import upgrade
from assistant.findings import Findings, Lesion, ModelIdentity, SliceProbability
from assistant.registry import Registry, Route, Routes
from assistant.settings import Settings, StorageSettings
from tests.helpers import csrf_token, login
from tests.support.site import ADMIN, VIEWER
from web import create_app
from web.openapi import openapi_document

LIVE_SHA, SHADOW_SHA = "a1" * 32, "b2" * 32


@dataclass
class Node:
    app: Flask
    db: Database
    #: The study both models read, where they disagree and the shadow job is newer.
    study_uid: str
    live_job: int
    shadow_job: int

    def client(self, user: tuple[str, str]) -> FlaskClient:
        client = self.app.test_client()
        login(client, user)
        return client


def _card(version: str, sha: str) -> str:
    return json.dumps(
        {
            "name": "hyper",
            "version": version,
            "classes": ["no finding", "hyperdense lesion"],
            "image_size": 128,
            "windows": [{"name": "brain", "center": 40.0, "width": 80.0}],
            "threshold": 0.6,
            "weights_file": "weights.pt",
            "weights_sha256": sha,
            "intended_use": "Research on synthetic heads only.",
            "training": {"dataset": "synthetic:300", "epochs": 30, "history": [{"epoch": 1}]},
            "metrics": {"val": {"auc": 0.9683, "sensitivity": 0.9583}},
        }
    )


def _register(registry: Registry, folder: Path, version: str, sha: str, state: ModelState) -> None:
    folder.mkdir()
    card = _card(version, sha)
    (folder / "model.json").write_text(card)
    (folder / "weights.pt").write_bytes(b"not really weights")
    registry.add(
        folder,
        card,
        ["model.json", "weights.pt"],
        name="hyper",
        version=version,
        format="state_dict",
        weights_sha256=sha,
        state=state,
        by="setup",
        parent="hyper:1" if version == "2" else "",
    )


def _findings(series_uid: str, positive: bool, version: str, sha: str) -> Findings:
    slices = [
        SliceProbability(f"{series_uid}.{n}", 0.9 if positive and 3 <= n < 6 else 0.02)
        for n in range(1, 9)
    ]
    lesions = (
        [
            Lesion(
                first_slice=2,
                last_slice=4,
                key_slice=3,
                key_sop_instance_uid=slices[3].sop_instance_uid,
                outline=[(100.0, 100.0), (140.0, 100.0), (120.0, 130.0)],
                area_mm2=410.0,
                longest_diameter_mm=31.5,
                volume_ml=5.0,
                mean_hu=68.0,
                probability=0.93,
                label=1,
            )
        ]
        if positive
        else []
    )
    return Findings(
        series_instance_uid=series_uid,
        study_probability=0.96 if positive else 0.03,
        positive=positive,
        threshold=0.6,
        slices=slices,
        flagged_instance_uids=[s.sop_instance_uid for s in slices if s.probability >= 0.5],
        model=ModelIdentity("hyper", version, sha),
        lesions=lesions,
        slice_threshold=0.5,
    )


def _job(session: Session, series: Series, version: str, positive: bool) -> Job:
    shadow = version == "2"
    findings = _findings(
        series.series_instance_uid, positive, version, SHADOW_SHA if shadow else LIVE_SHA
    )
    now = utcnow()
    job = Job(
        series=series,
        model_name="hyper",
        model_version=version,
        input_digest="same-images",
        instance_count=8,
        state=JobState.DONE,
        attempts=1,
        created_at=now,
        started_at=now,
        finished_at=now,
        study_probability=findings.study_probability,
        positive=positive,
        summary=findings.summary(),
        findings_json=json.dumps(findings.to_dict()),
        shadow=shadow,
    )
    session.add(job)
    session.flush()
    return job


def _study(session: Session, letter: str, live: bool, shadow: bool, verdict: str | None) -> Job:
    """A study of one series read by hyper:1 (live), then by hyper:2 (shadow); the
    radiologist's study-level `verdict` on the live job, if any. Returns the live job."""
    now = utcnow()
    patient = Patient(patient_id=f"PAT-{letter}", patient_name=f"TEST^{letter}", created_at=now)
    study = Study(
        study_instance_uid=f"1.2.826.0.1.3680043.10.999.{ord(letter)}",
        patient=patient,
        accession_number=f"ACC-{letter}",
        study_description=f"HEAD {letter}",
        received_at=now,
    )
    series = Series(
        series_instance_uid=f"{study.study_instance_uid}.2",
        study=study,
        modality="CT",
        series_number=2,
        series_description="HEAD 5MM",
        instance_count=8,
        state=SeriesState.COMPLETE,
        first_received_at=now,
        last_received_at=now,
        completed_at=now,
    )
    session.add_all([patient, study, series])
    live_job = _job(session, series, "1", live)
    _job(session, series, "2", shadow)  # newer than the live job
    if verdict is not None:
        session.add(
            Feedback(
                job_pk=live_job.id,
                verdict=FeedbackVerdict(verdict),
                username=VIEWER[0],
                created_at=now,
            )
        )
    return live_job


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    """hyper:1 live and hyper:2 in shadow, a route, and four studies both read:
    A: live negative, shadow positive, the live call rejected (positive: live FN, shadow TP);
    B: both positive, accepted (TP, TP); C: both negative, accepted (TN, TN);
    D: live positive, shadow negative, not reviewed."""
    settings = Settings(storage=StorageSettings(data_dir=tmp_path / "var"))
    upgrade(settings.database_url)
    db = Database(make_engine(settings.database_url))
    try:
        registry = Registry(db, settings.storage.data_dir)
        _register(registry, tmp_path / "one", "1", LIVE_SHA, ModelState.LIVE)
        _register(registry, tmp_path / "two", "2", SHADOW_SHA, ModelState.SHADOW)
        Routes(db).add(Route(name="heads", model_name="hyper", modalities=("CT",)), by="setup")
        with db.writing() as session:
            live_a = _study(session, "A", False, True, "reject")
            _study(session, "B", True, True, "accept")
            _study(session, "C", False, False, "accept")
            _study(session, "D", True, False, None)
            study_uid = live_a.series.study.study_instance_uid
            shadow_a = session.scalars(
                select(Job).where(Job.series_pk == live_a.series_pk, Job.shadow.is_(True))
            ).one()
            ids = (live_a.id, shadow_a.id)
        add_user(db, *ADMIN, "admin")
        add_user(db, *VIEWER, "viewer")
        yield Node(create_app(settings, db), db, study_uid, *ids)
    finally:
        db.dispose()


def _text(page: str) -> str:
    """The page's text as a reader sees it: tags gone, entities decoded, spaces folded."""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page))).strip()


def _page(client: FlaskClient, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200, response.status_code
    return response.get_data(as_text=True)


def _states(node: Node) -> dict[str, ModelState]:
    registry = Registry(node.db, node.app.extensions["radassist"].settings.storage.data_dir)
    return {entry.ref: entry.state for entry in registry.models()}


def test_the_models_page_lists_the_registry_and_the_routes(node: Node) -> None:
    page = _page(node.client(VIEWER), "/models")
    text = _text(page)
    assert 'href="/models/hyper/1"' in page and 'href="/models/hyper/2"' in page
    assert "hyper 1 live state_dict no finding, hyperdense lesion 0.6" in text
    assert "hyper 2 shadow state_dict" in text
    assert LIVE_SHA[:12] in text and SHADOW_SHA[:12] in text and LIVE_SHA not in text
    assert "hyper:1" in text  # hyper:2's parent
    assert "by setup" in text
    assert "heads hyper modality CT" in text
    assert 'href="/models"' in _page(node.client(VIEWER), "/")  # the nav link


def test_the_shadow_model_page_shows_its_card_history_and_comparison(node: Node) -> None:
    text = _text(_page(node.client(VIEWER), "/models/hyper/2"))
    assert "Research on synthetic heads only." in text
    assert "no finding, hyperdense lesion" in text
    assert "brain 40/80 HU" in text and "synthetic:300" in text and "0.9683" in text
    assert "history" not in text  # the per-epoch history is left out
    assert "setup added state shadow; weights sha256 " + SHADOW_SHA in text
    assert "hyper:2 (shadow) against hyper:1 (live)" in text
    assert "4 series read by both" in text
    assert (
        "agreement (both positive or both negative): 50.0 % (2 of 4; 95 % CI 15.0 to 85.0 %)"
        in text
    )
    # Model, sensitivity, specificity, TP, FN, TN, FP, reviewed positive, negative.
    assert (
        "hyper:2 (shadow) 100.0 % (2 of 2; 95 % CI 34.2 to 100.0 %) "
        "100.0 % (1 of 1; 95 % CI 20.7 to 100.0 %) 2 0 1 0 2 1"
    ) in text
    assert (
        "hyper:1 (live) 50.0 % (1 of 2; 95 % CI 9.5 to 90.5 %) "
        "100.0 % (1 of 1; 95 % CI 20.7 to 100.0 %) 1 1 1 0 2 1"
    ) in text
    assert (
        "too few reviewed studies to compare: 2 reviewed positive and 1 reviewed negative"
    ) in text
    assert "the latest study-level verdict a radiologist gave on a live" in text
    assert "Change its state" not in text  # a viewer gets no form


def test_the_live_model_page_has_no_comparison_and_an_unknown_model_is_404(
    node: Node,
) -> None:
    viewer = node.client(VIEWER)
    text = _text(_page(viewer, "/models/hyper/1"))
    assert "against" not in text and "too few" not in text
    assert viewer.get("/models/hyper/9").status_code == 404


def test_a_viewer_may_not_change_a_state(node: Node) -> None:
    viewer = node.client(VIEWER)
    token = csrf_token(viewer, "/models/hyper/2")
    response = viewer.post("/models/hyper/2/state", data={"state": "live", "csrf_token": token})
    assert response.status_code == 403
    assert _states(node) == {"hyper:1": ModelState.LIVE, "hyper:2": ModelState.SHADOW}


def test_an_admin_without_the_csrf_token_is_refused(node: Node) -> None:
    admin = node.client(ADMIN)
    response = admin.post("/models/hyper/2/state", data={"state": "live"})
    assert response.status_code == 400
    assert _states(node) == {"hyper:1": ModelState.LIVE, "hyper:2": ModelState.SHADOW}


def test_an_admin_makes_the_shadow_model_live_and_the_old_one_retires(node: Node) -> None:
    admin = node.client(ADMIN)
    page = _page(admin, "/models/hyper/2")
    assert "Change its state" in page and 'value="live"' in page and 'value="retired"' in page
    response = admin.post(
        "/models/hyper/2/state",
        data={"state": "live", "reason": "better on review", "csrf_token": csrf_token(admin)},
    )
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/models/hyper/2")
    assert _states(node) == {"hyper:1": ModelState.RETIRED, "hyper:2": ModelState.LIVE}
    shown = _text(_page(admin, "/models/hyper/2"))  # the flashed change lines
    assert "hyper:1: live → retired" in shown and "hyper:2: shadow → live" in shown
    assert "alice state shadow → live; better on review" in shown  # its history
    with node.db.sessions() as session:
        events = session.scalars(
            select(AuditEvent).where(AuditEvent.action.in_(("model-state", "model_change")))
        ).all()
    rows = {(e.action, e.username, e.target) for e in events}
    assert rows == {
        ("model-state", "alice", "hyper:1"),
        ("model-state", "alice", "hyper:2"),
        ("model_change", "alice", "hyper:2"),
    }
    assert all(e.remote_addr for e in events if e.action == "model_change")


def test_a_change_the_page_does_not_offer_is_refused(node: Node) -> None:
    admin = node.client(ADMIN)
    token = csrf_token(admin)
    for state in ("shadow", "unknown"):  # hyper:1 is live: it may only retire
        response = admin.post("/models/hyper/1/state", data={"state": state, "csrf_token": token})
        assert response.status_code == 303
        assert "Not changed" in _text(_page(admin, "/models/hyper/1"))
    assert _states(node) == {"hyper:1": ModelState.LIVE, "hyper:2": ModelState.SHADOW}


def test_the_study_page_shows_both_analyses_the_shadow_one_marked_without_feedback(
    node: Node,
) -> None:
    page = _page(node.client(VIEWER), f"/studies/{node.study_uid}")
    sections = re.findall(
        r'<section class="analysis[^"]*" id="job-(\d+)">(.*?)</section>', page, re.S
    )
    assert [int(job_id) for job_id, _ in sections] == [node.live_job, node.shadow_job]
    live, shadow = (body for _, body in sections)
    assert "Shadow — not sent" not in live and "Shadow — not sent" in shadow
    assert "hyper 1" in _text(live) and LIVE_SHA[:12] in live
    assert "hyper 2" in _text(shadow) and SHADOW_SHA[:12] in shadow
    assert live.count('class="feedback-form"') == 1  # the study verdict (no lesion)
    assert "feedback-form" not in shadow and "Finding 1" in shadow
    # The impression at the top is the live analysis's.
    impressions = re.findall(r'<p class="impression-line">(.*?)</p>', page, re.S)
    assert [_text(line) for line in impressions] == ["No hyperdense lesion (probability 3.0 %)."]


def test_the_worklist_verdict_comes_from_the_live_job_only(node: Node) -> None:
    """Study A: the shadow job is newer and positive, the live one negative."""
    viewer = node.client(VIEWER)
    rows = re.findall(r'<tr class="study (\w+)" data-study="([^"]+)">', _page(viewer, "/"))
    assert (("negative", node.study_uid)) in rows
    study = viewer.get(f"/api/v1/studies/{node.study_uid}").get_json()
    assert study["verdict"] == "negative"
    (series,) = study["series"]
    assert series["job_id"] == node.live_job and series["delivery"] == "none"
    assert series["status"] == "done"
    analyses = viewer.get(f"/api/v1/studies/{node.study_uid}/findings").get_json()["analyses"]
    assert [(a["job_id"], a["shadow"], a["weights_sha256"]) for a in analyses] == [
        (node.live_job, False, LIVE_SHA),
        (node.shadow_job, True, SHADOW_SHA),
    ]
    jobs = {j["id"]: j for j in viewer.get("/api/v1/jobs").get_json()["jobs"]}
    assert jobs[node.shadow_job]["shadow"] is True
    assert jobs[node.live_job]["weights_sha256"] == LIVE_SHA


def _closed(schema: Any) -> Any:
    """Every object that lists its properties allows no other (an undocumented field
    fails)."""
    if isinstance(schema, dict):
        closed = {key: _closed(value) for key, value in schema.items()}
        if "properties" in closed and "additionalProperties" not in closed:
            closed["additionalProperties"] = False
        return closed
    if isinstance(schema, list):
        return [_closed(item) for item in schema]
    return schema


def test_the_api_lists_the_models_and_routes_as_documented(node: Node) -> None:
    response = node.client(VIEWER).get("/api/v1/models")
    assert response.status_code == 200
    body = response.get_json()
    document = openapi_document()
    schema = document["paths"]["/models"]["get"]["responses"]["200"]["content"]["application/json"][
        "schema"
    ]
    root = {**copy.deepcopy(schema), "components": _closed(document["components"])}
    Draft202012Validator(root, format_checker=Draft202012Validator.FORMAT_CHECKER).validate(body)
    models = {(m["name"], m["version"]): m for m in body["models"]}
    assert models[("hyper", "1")]["state"] == "live"
    assert models[("hyper", "2")]["state"] == "shadow"
    assert models[("hyper", "2")]["weights_sha256"] == SHADOW_SHA
    assert models[("hyper", "2")]["parent"] == "hyper:1"
    assert all("folder" not in m for m in body["models"])
    assert body["routes"] == [
        {
            "name": "heads",
            "model": "hyper",
            "modalities": ["CT"],
            "series_description_patterns": [],
            "body_part_patterns": [],
            "calling_ae_titles": [],
            "min_slice_thickness_mm": None,
            "max_slice_thickness_mm": None,
            "conditions": "modality CT",
        }
    ]
    assert node.app.test_client().get("/api/v1/models").status_code == 401


def test_feedback_on_a_shadow_analysis_is_refused_and_the_viewer_lists_none_of_it(
    node: Node,
) -> None:
    viewer = node.client(VIEWER)
    page = f"/studies/{node.study_uid}"
    answer = viewer.post(
        f"{page}/jobs/{node.shadow_job}/feedback",
        data={"finding": "study", "verdict": "accept", "csrf_token": csrf_token(viewer, page)},
        follow_redirects=True,
    )
    assert "takes no feedback" in answer.get_data(as_text=True)
    with node.db.sessions() as session:
        assert session.scalar(select(Feedback.id).where(Feedback.job_pk == node.shadow_job)) is None
    # The built-in viewer's DICOMweb shows what was sent: the live results, not the shadow's.
    with node.db.sessions() as session, session.begin():
        for job_id, uid in (
            (node.live_job, "1.2.826.0.1.9.1"),
            (node.shadow_job, "1.2.826.0.1.9.2"),
        ):
            session.add(
                ResultObject(
                    job_pk=job_id,
                    kind=ResultKind.SR,
                    sop_class_uid="1.2.840.10008.5.1.4.1.1.88.34",
                    sop_instance_uid=uid + ".1",
                    series_instance_uid=uid,
                    study_instance_uid=node.study_uid,
                    path=f"results/{uid}.dcm",
                    created_at=utcnow(),
                )
            )
    listed = viewer.get(f"/dicomweb/studies/{node.study_uid}/series").get_json() or []
    listed_uids = {s["0020000E"]["Value"][0] for s in listed}
    assert "1.2.826.0.1.9.1" in listed_uids and "1.2.826.0.1.9.2" not in listed_uids


def test_with_two_live_models_a_series_is_negative_only_when_both_are(node: Node) -> None:
    """Study A's live hyper:1 is negative; another live model's older positive on the same
    series speaks for it, and a newer unfinished job of a third holds no verdict back."""
    viewer = node.client(VIEWER)
    with node.db.sessions() as session, session.begin():
        live = session.get(Job, node.live_job)
        assert live is not None and live.positive is False
        now = utcnow()
        for name, state, positive in (
            ("other", JobState.DONE, True),
            ("third", JobState.QUEUED, None),
        ):
            session.add(
                Job(
                    series_pk=live.series_pk,
                    model_name=name,
                    model_version="1",
                    input_digest="same-images",
                    instance_count=8,
                    state=state,
                    created_at=now,
                    finished_at=now if state is JobState.DONE else None,
                    study_probability=0.9 if positive else None,
                    positive=positive,
                    summary="",
                    findings_json="",
                )
            )
    study = viewer.get(f"/api/v1/studies/{node.study_uid}").get_json()
    assert study["verdict"] == "positive"
    with node.db.sessions() as session:
        other = session.scalar(select(Job.id).where(Job.model_name == "other"))
    (series,) = study["series"]
    assert series["job_id"] == other


# -- guarded promotion and the recorded `radassist compare` -------------------------------


def _shadow_misses_ten_more(node: Node) -> None:
    """Ten more studies that hyper:1 (live) called positive, rightly (accepted), and
    hyper:2 (shadow) called negative: sensitivity 2 of 12 (95 % CI 4.7 to 44.8 %)
    against 11 of 12 (64.6 to 98.5 %), intervals apart."""
    with node.db.writing() as session:
        for letter in "EFGHIJKLMN":
            _study(session, letter, True, False, "accept")


def _promote(client: FlaskClient, **form: str) -> str:
    """POST shadow → live for hyper:2; the model page shown after (its flashed lines)."""
    response = client.post(
        "/models/hyper/2/state", data={"state": "live", "csrf_token": csrf_token(client), **form}
    )
    assert response.status_code == 303
    return _text(_page(client, "/models/hyper/2"))


REFUSAL = (
    "hyper:2's sensitivity on the reviewed positives (16.7 %, 2 of 12, 95 % CI 4.7 to 44.8 %) "
    "lies entirely below hyper:1's (91.7 %, 11 of 12, 95 % CI 64.6 to 98.5 %)"
)


def _audit(node: Node, action: str) -> list[AuditEvent]:
    with node.db.sessions() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


def test_a_shadow_model_surely_less_sensitive_is_not_made_live(node: Node) -> None:
    _shadow_misses_ten_more(node)
    admin = node.client(ADMIN)
    page = _page(admin, "/models/hyper/2")
    assert f"Making it live is refused: {REFUSAL}." in _text(page)
    assert 'name="override" value="yes"' in page
    shown = _promote(admin, reason="looks fine to me")
    assert f"Not changed: {REFUSAL}. Tick the override and give a reason" in shown
    assert _states(node) == {"hyper:1": ModelState.LIVE, "hyper:2": ModelState.SHADOW}
    assert not _audit(node, "model-state") and not _audit(node, "model_promotion_override")


def test_an_override_without_a_reason_is_refused(node: Node) -> None:
    _shadow_misses_ten_more(node)
    shown = _promote(node.client(ADMIN), override="yes", reason="   ")
    assert "Not changed: an override needs a reason" in shown
    assert _states(node) == {"hyper:1": ModelState.LIVE, "hyper:2": ModelState.SHADOW}


def test_an_override_with_a_reason_promotes_and_the_audit_keeps_the_reason(node: Node) -> None:
    _shadow_misses_ten_more(node)
    shown = _promote(node.client(ADMIN), override="yes", reason="vendor recall of hyper:1")
    assert "hyper:2: shadow → live" in shown
    assert _states(node) == {"hyper:1": ModelState.RETIRED, "hyper:2": ModelState.LIVE}
    (override,) = _audit(node, "model_promotion_override")
    assert (override.username, override.target) == (ADMIN[0], "hyper:2")
    assert override.detail == f"reason: vendor recall of hyper:1; overridden: {REFUSAL}"
    assert override.remote_addr
    state_rows = {e.target: e.detail for e in _audit(node, "model-state")}
    assert state_rows["hyper:2"] == "shadow → live; override: vendor recall of hyper:1"


def test_a_promotion_goes_ahead_when_the_intervals_overlap(node: Node) -> None:
    """The fixture: hyper:2 2 of 2 (34.2 to 100 %), hyper:1 1 of 2 (9.5 to 90.5 %)."""
    admin = node.client(ADMIN)
    assert "refused" not in _text(_page(admin, "/models/hyper/2"))
    shown = _promote(admin)  # no override, no reason
    assert "hyper:2: shadow → live" in shown
    assert _states(node) == {"hyper:1": ModelState.RETIRED, "hyper:2": ModelState.LIVE}
    assert not _audit(node, "model_promotion_override")
    (change,) = _audit(node, "model_change")
    assert "no reviewed evidence" not in change.detail


def test_a_shadow_model_nobody_reviewed_says_so_and_may_still_go_live(
    node: Node, tmp_path: Path
) -> None:
    registry = Registry(node.db, node.app.extensions["radassist"].settings.storage.data_dir)
    _register(registry, tmp_path / "three", "3", "c3" * 32, ModelState.SHADOW)
    admin = node.client(ADMIN)
    text = _text(_page(admin, "/models/hyper/3"))
    assert "No reviewed evidence: no series that both models read" in text
    assert "No reviewed evidence backs making this model live." in text
    assert "hyper:3: shadow → live" in _promote_three(admin)
    assert _states(node)["hyper:3"] is ModelState.LIVE
    (change,) = _audit(node, "model_change")
    assert change.detail.endswith("; no reviewed evidence")


def _promote_three(client: FlaskClient) -> str:
    response = client.post(
        "/models/hyper/3/state", data={"state": "live", "csrf_token": csrf_token(client)}
    )
    assert response.status_code == 303
    return _text(_page(client, "/models/hyper/3"))


def _compare_result() -> dict[str, Any]:
    """A `radassist compare hyper:1 hyper:2 --json` result, as the command prints it."""
    side = {"n": 36, "positives": 14, "format": "state_dict", "image_size": 128}
    return {
        "dataset": "dicom:/data/site:/data/site/labels.csv",
        "split": "test",
        "grouped_by": "patient",
        "groups": 30,
        "a": {
            **side,
            "model": "hyper:1",
            "threshold": 0.6,
            "auc": 0.91,
            "sensitivity": 0.7857,
            "specificity": 0.9091,
        },
        "b": {
            **side,
            "model": "hyper:2",
            "threshold": 0.55,
            "auc": 0.9345,
            "sensitivity": 0.8571,
            "specificity": 0.8636,
        },
        "difference": {
            "auc": {"value": 0.0245, "ci95": [-0.031, 0.0822]},
            "sensitivity": {"value": 0.0714, "ci95": [-0.0714, 0.2308]},
            "specificity": {"value": -0.0455, "ci95": [-0.1429, 0.0]},
        },
        "mcnemar": {"a_right_b_wrong": 2, "a_wrong_b_right": 3, "discordant": 5, "p_value": 1.0},
        "bootstrap_resamples": 1000,
        "bootstrap_seed": 0,
    }


def test_the_model_page_shows_the_recorded_compare_above_the_shadow_record(node: Node) -> None:
    registry = Registry(node.db, node.app.extensions["radassist"].settings.storage.data_dir)
    registry.record_comparison("hyper:2", _compare_result(), by="cli:ops")
    text = _text(_page(node.client(VIEWER), "/models/hyper/2"))
    assert (
        "hyper:2 (B) against hyper:1 (A) on dicom:/data/site:/data/site/labels.csv (test): "
        "36 studies, 14 positive; recorded "
    ) in text
    assert "UTC by cli:ops." in text
    assert "threshold 0.6000 0.5500" in text
    assert "AUC 0.9100 0.9345 +0.0245 (95 % CI -0.0310 to +0.0822)" in text
    assert "sensitivity 0.7857 0.8571 +0.0714 (95 % CI -0.0714 to +0.2308)" in text
    assert "specificity 0.9091 0.8636 -0.0455 (95 % CI -0.1429 to +0.0000)" in text
    assert (
        "McNemar exact test on the calls: A right and B wrong 2, A wrong and B right 3; p = 1.0000."
    ) in text
    assert "1000 paired bootstrap resamples of the 30 patients" in text
    assert text.index("Compared offline") < text.index("In shadow: compared with the live model")
    assert "cli:ops compared against hyper:1 on dicom:" in text  # the history row
    assert "Compared offline" not in _text(_page(node.client(VIEWER), "/models/hyper/1"))
