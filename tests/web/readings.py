"""Analyses written as records, not made by a model, for the pages' and the API's
wording: lesions located in the head (findings version 3), a record from before they were
(version 2), and a negative study, each the one analysed series of its own study."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient

from assistant.access.users import add_user
from assistant.db import (
    Database,
    Job,
    JobState,
    Patient,
    Series,
    SeriesState,
    Study,
    make_engine,
    utcnow,
)
from assistant.db.migrate import upgrade
from assistant.findings import Findings, Lesion, ModelIdentity, Place, SliceProbability
from assistant.settings import Settings, StorageSettings
from tests.helpers import login
from tests.support.site import VIEWER
from web import create_app

#: The kinds of record, each one study.
KINDS = ("located", "old", "negative")


@dataclass
class Readings:
    """Three studies, one analysed series each, by the kind of record: "located" (version
    3, two lesions placed, a midline shift), "old" (version 2: no place, no shift, no
    impression stored) and "negative" (version 3, nothing found)."""

    app: Flask
    db: Database
    study_uids: dict[str, str]
    job_ids: dict[str, int]
    findings: dict[str, Findings]

    def client(self, user: tuple[str, str] = VIEWER) -> FlaskClient:
        client = self.app.test_client()
        login(client, user)
        return client


def _lesion(slices: list[SliceProbability], first: int, **values: object) -> Lesion:
    return Lesion(
        first_slice=first,
        last_slice=first + 2,
        key_slice=first + 1,
        key_sop_instance_uid=slices[first + 1].sop_instance_uid,
        outline=[(100.0, 100.0), (140.0, 100.0), (120.0, 130.0)],
        area_mm2=410.0,
        longest_diameter_mm=31.5,
        mean_hu=68.0,
        probability=0.93,
        **values,
    )


def _findings(kind: str, series_uid: str) -> Findings:
    slices = [
        SliceProbability(f"{series_uid}.{n}", 0.9 if kind != "negative" and 3 <= n < 9 else 0.02)
        for n in range(1, 13)
    ]
    lesions = {
        "located": [
            _lesion(
                slices,
                3,
                volume_ml=24.04,
                label=1,
                place=Place(
                    "left", "supratentorial", "frontal", "extra-axial", "crescent", approximate=True
                ),
                abc2_volume_ml=22.1,
                thickness_mm=9.2,
                severity="medium",
            ),
            _lesion(
                slices,
                6,
                volume_ml=3.2,
                label=2,
                place=Place("right", "supratentorial", "parietal", "intra-axial"),
                abc2_volume_ml=2.9,
                severity="small",
            ),
        ],
        "old": [_lesion(slices, 4, volume_ml=5.0, label=1)],
        "negative": [],
    }[kind]
    probability = 0.03 if kind == "negative" else 0.96
    return Findings(
        series_instance_uid=series_uid,
        study_probability=probability,
        positive=kind != "negative",
        threshold=0.5,
        slices=slices,
        flagged_instance_uids=[s.sop_instance_uid for s in slices if s.probability >= 0.5],
        model=ModelIdentity("demo-hyperdense", "1.0"),
        lesions=lesions,
        slice_threshold=0.5,
        midline_shift_mm=-6.3 if kind == "located" else None,
        anatomy_read=kind == "located",
    )


def _record(kind: str, findings: Findings) -> tuple[str, str]:
    """(summary, findings_json) as the job keeps them; the old record as version 2 wrote
    them (no place, shift or impression; its lesion lines in the words of then)."""
    record = findings.to_dict()
    if kind != "old":
        return findings.summary(), json.dumps(record)
    for key in ("midline_shift_mm", "anatomy_read", "impression"):
        del record[key]
    for lesion in record["lesions"]:
        for key in ("place", "abc2_volume_ml", "thickness_mm", "severity"):
            del lesion[key]
    record["version"] = 2
    summary = (
        "Positive for hyperdense lesion (study probability 96.0 %, threshold 50.0 %)\n"
        "Hyperdense lesion, slices 5\u20137, about 5.0 mL, probability 93.0 %"
    )
    record["summary"] = summary
    return summary, json.dumps(record)


def _add_study(session, kind: str, number: int) -> tuple[str, int, Findings]:  # type: ignore[no-untyped-def]
    now = utcnow()
    study_uid = f"1.2.826.0.1.3680043.10.543.{number}"
    series_uid = f"{study_uid}.2"
    patient = Patient(patient_id=f"{kind.upper()}-1", patient_name="READ^ING", created_at=now)
    study = Study(
        study_instance_uid=study_uid,
        patient=patient,
        accession_number=f"ACC{number}",
        study_description=f"HEAD {kind.upper()}",
        received_at=now,
    )
    series = Series(
        series_instance_uid=series_uid,
        study=study,
        modality="CT",
        series_number=2,
        series_description="HEAD 5MM",
        instance_count=12,
        state=SeriesState.COMPLETE,
        first_received_at=now,
        last_received_at=now,
        completed_at=now,
    )
    findings = _findings(kind, series_uid)
    summary, record = _record(kind, findings)
    job = Job(
        series=series,
        model_name="demo-hyperdense",
        model_version="1.0",
        input_digest=f"digest-{kind}",
        instance_count=12,
        state=JobState.DONE,
        attempts=1,
        created_at=now,
        started_at=now,
        finished_at=now,
        inference_seconds=0.4,
        study_probability=findings.study_probability,
        positive=findings.positive,
        summary=summary,
        findings_json=record,
    )
    session.add_all([patient, study, series, job])
    session.flush()
    return study_uid, job.id, findings


@contextmanager
def readings_site(root: Path) -> Iterator[Readings]:
    """A migrated database under `root` with a study of each of KINDS, and the app."""
    settings = Settings(storage=StorageSettings(data_dir=root / "var"))
    upgrade(settings.database_url)
    db = Database(make_engine(settings.database_url))
    uids, jobs, found = {}, {}, {}
    try:
        with db.sessions() as session, session.begin():
            for number, kind in enumerate(KINDS, 1):
                uids[kind], jobs[kind], found[kind] = _add_study(session, kind, number)
        add_user(db, *VIEWER, "viewer")
        yield Readings(create_app(settings, db), db, uids, jobs, found)
    finally:
        db.dispose()
