"""The live worklist's change signal, /worklist/changes: what the page polls every few
seconds to know when to fetch its rows again and which studies turned positive meanwhile.
Run on a migrated database of its own (the records of tests/web/readings.py), into which
each test writes what the node would: a study arriving, a job finishing, a delivery
failing."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select, update

from assistant.db import (
    Delivery,
    DeliveryState,
    Job,
    JobState,
    Patient,
    ResultKind,
    ResultObject,
    Series,
    SeriesState,
    Study,
    WebSession,
    utcnow,
)
from tests.web.readings import Readings, readings_site

IMPRESSION = "Acute subdural haematoma over the left convexity, 9 mm thick."
_numbers = itertools.count(100)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Readings]:
    with readings_site(tmp_path_factory.mktemp("live")) as readings:
        # The records' analyses finished yesterday: long before any page here opened.
        with readings.db.writing() as session:
            session.execute(update(Job).values(finished_at=utcnow() - timedelta(days=1)))
        yield readings


@pytest.fixture
def client(live: Readings) -> FlaskClient:
    return live.client()


def _arrives(live: Readings, state: JobState | None = JobState.QUEUED) -> tuple[str, int | None]:
    """A study of one CT series, received and complete, with its job in `state` (none
    for None); returns its Study Instance UID and the job's id."""
    number, now = next(_numbers), utcnow()
    study_uid = f"1.2.826.0.1.3680043.10.543.9.{number}"
    with live.db.writing() as session:
        series = Series(
            series_instance_uid=f"{study_uid}.1",
            study=Study(
                study_instance_uid=study_uid,
                patient=Patient(patient_id=f"LIVE-{number}", created_at=now),
                accession_number=f"LIVE{number}",
                received_at=now,
            ),
            modality="CT",
            series_number=1,
            instance_count=30,
            state=SeriesState.COMPLETE,
            first_received_at=now,
            last_received_at=now,
            completed_at=now,
        )
        session.add(series)
        if state is None:
            return study_uid, None
        job = Job(
            series=series,
            model_name="demo-hyperdense",
            model_version="1.0",
            input_digest=f"live-{number}",
            instance_count=30,
            state=state,
            created_at=now,
        )
        session.add(job)
        session.flush()
        return study_uid, job.id


def _finishes(live: Readings, job_id: int, positive: bool) -> None:
    """The worker's last step: the job done, with its verdict and findings record."""
    impression = IMPRESSION if positive else "No acute intracranial haemorrhage."
    with live.db.writing() as session:
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(
                state=JobState.DONE,
                attempts=1,
                started_at=utcnow(),
                finished_at=utcnow(),
                study_probability=0.97 if positive else 0.02,
                positive=positive,
                summary=impression,
                findings_json=json.dumps({"impression": impression, "anatomy_read": True}),
            )
        )


def _changes(client: FlaskClient, since: str | None = None) -> dict[str, Any]:
    query = {"partial": "1"} | ({"since": since} if since is not None else {})
    response = client.get("/worklist/changes", query_string=query)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    answer: dict[str, Any] = response.get_json()
    return answer


def test_the_changes_need_a_login(live: Readings) -> None:
    response = live.app.test_client().get("/worklist/changes")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_the_worklist_page_carries_its_token_and_where_to_poll(client: FlaskClient) -> None:
    page = client.get("/?verdict=positive").get_data(as_text=True)
    token = re.search(r'data-token="([^"]+)"', page)
    assert token is not None and 'data-changes="/worklist/changes?partial=1"' in page
    assert 'id="notify"' in page  # the reader's opt-in for notifications
    answer = _changes(client, token.group(1))
    assert answer["changed"] is False and answer["new_positives"] == []


def test_nothing_changed_is_no_change(client: FlaskClient) -> None:
    first = _changes(client)
    assert first["changed"] is False and first["new_positives"] == []
    again = _changes(client, first["token"])
    assert again["changed"] is False and again["new_positives"] == []


def test_a_study_arriving_is_a_change(live: Readings, client: FlaskClient) -> None:
    token = _changes(client)["token"]
    _arrives(live, state=None)
    answer = _changes(client, token)
    assert answer["changed"] is True and answer["new_positives"] == []
    assert _changes(client, answer["token"])["changed"] is False


def test_a_job_finishing_positive_is_named_with_its_impression(
    live: Readings, client: FlaskClient
) -> None:
    study_uid, job_id = _arrives(live)
    assert job_id is not None
    token = _changes(client)["token"]
    _finishes(live, job_id, positive=True)
    answer = _changes(client, token)
    assert answer["changed"] is True
    assert answer["new_positives"] == [
        {"study_uid": study_uid, "impression": IMPRESSION, "url": f"/studies/{study_uid}"}
    ]
    # The row says the same.
    rows = client.get("/?partial=1&verdict=positive").get_data(as_text=True)
    assert f'data-study="{study_uid}"' in rows and IMPRESSION[:40] in rows
    # Named once the change is seen: nothing changed since the answer's token.
    again = _changes(client, answer["token"])
    assert again["changed"] is False and again["new_positives"] == []


def test_a_job_finishing_negative_is_a_change_but_no_new_positive(
    live: Readings, client: FlaskClient
) -> None:
    _, job_id = _arrives(live)
    assert job_id is not None
    token = _changes(client)["token"]
    _finishes(live, job_id, positive=False)
    answer = _changes(client, token)
    assert answer["changed"] is True and answer["new_positives"] == []


def test_a_job_starting_is_a_change(live: Readings, client: FlaskClient) -> None:
    _, job_id = _arrives(live)
    token = _changes(client)["token"]
    with live.db.writing() as session:
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(state=JobState.RUNNING, attempts=1, started_at=utcnow())
        )
    assert _changes(client, token)["changed"] is True


def test_a_delivery_failing_and_its_retry_are_changes(live: Readings, client: FlaskClient) -> None:
    job_id = live.job_ids["negative"]
    with live.db.writing() as session:
        result = ResultObject(
            job_pk=job_id,
            kind=ResultKind.SR,
            sop_class_uid="1.2.840.10008.5.1.4.1.1.88.34",
            sop_instance_uid=f"1.2.826.0.1.3680043.10.543.8.{next(_numbers)}",
            series_instance_uid="1.2.826.0.1.3680043.10.543.8.1",
            study_instance_uid=live.study_uids["negative"],
            path="results/sr.dcm",
            created_at=utcnow(),
        )
        delivery = Delivery(
            result=result,
            destination="pacs",
            state=DeliveryState.SENDING,
            attempts=2,
            next_attempt_at=utcnow(),
            claimed_at=utcnow(),
        )
        session.add_all([result, delivery])
        session.flush()
        delivery_id = delivery.id
    token = _changes(client)["token"]
    with live.db.writing() as session:  # the outbox gives up: the study shows "failed"
        session.execute(
            update(Delivery)
            .where(Delivery.id == delivery_id)
            .values(state=DeliveryState.FAILED, attempts=3, last_error="refused")
        )
    failed = _changes(client, token)
    assert failed["changed"] is True and failed["new_positives"] == []
    rows = client.get("/?partial=1&status=failed").get_data(as_text=True)
    assert f'data-study="{live.study_uids["negative"]}"' in rows
    with live.db.writing() as session:  # an admin's retry
        session.execute(
            update(Delivery)
            .where(Delivery.id == delivery_id)
            .values(state=DeliveryState.PENDING, attempts=0, next_attempt_at=utcnow())
        )
    assert _changes(client, failed["token"])["changed"] is True


def test_a_token_it_did_not_write_is_refused(client: FlaskClient) -> None:
    for made_up in ("nonsense", "1.2", "x.1.abc", "1.2.<script>"):
        response = client.get("/worklist/changes", query_string={"since": made_up})
        assert response.status_code == 400


def test_an_old_or_made_up_token_reaches_back_an_hour_at_most(
    live: Readings, client: FlaskClient
) -> None:
    """The records' positives finished yesterday: a token from the epoch does not
    bring them back as new."""
    answer = _changes(client, "0.0.deadbeef")
    assert answer["changed"] is True
    assert {p["study_uid"] for p in answer["new_positives"]}.isdisjoint(live.study_uids.values())


def test_polling_does_not_keep_a_session_alive(live: Readings, client: FlaskClient) -> None:
    stale = utcnow() - timedelta(minutes=29)
    with live.db.writing() as session:
        session.execute(update(WebSession).values(last_seen_at=stale))
    assert client.get("/worklist/changes?partial=1").status_code == 200
    with live.db.sessions() as session:
        seen = session.scalars(select(WebSession.last_seen_at)).all()
    assert set(seen) == {stale}  # what a page does by itself is not use
