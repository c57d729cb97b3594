"""`radassist dataset export`: the analysed series labelled by each branch of the rule,
unreviewed ones left out (or labelled by the model when asked), series whose instances
changed after the verdict refused, patients kept whole, a pseudonymised export without
any original identifier, the dataset read back by the training code with its slice
labels, and a non-empty or crashed export leaving nothing that looks complete."""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from sqlalchemy.orm import Session

from assistant.analysis.imaging.synthetic import write_demo_series
from assistant.cli_dataset import add_parsers, cmd_dataset
from assistant.db import (
    Database,
    Feedback,
    FeedbackVerdict,
    Instance,
    InstanceChange,
    InstanceChangeAction,
    Job,
    JobState,
    Patient,
    Series,
    SeriesState,
    Study,
    input_digest,
    make_engine,
)
from assistant.db.migrate import upgrade
from assistant.findings import Findings, Lesion, ModelIdentity, SliceProbability
from assistant.settings import Settings, StorageSettings
from assistant.training import reviewed
from assistant.training.datasets import SPLITS, parse_spec
from assistant.training.pseudonymise import EMPTIED, REMOVED, Pseudonymiser
from assistant.training.reviewed import DatasetExportError, Verdict, decide, export_reviewed

SLICES = 4
T0 = datetime(2026, 3, 2, 9, 0)


@dataclass
class Case:
    """One stored series: its patient, what the model said and what readers said."""

    letter: str
    patient: str
    positive: bool
    #: 0-based (first, last) of each reported lesion.
    lesions: list[tuple[int, int]] = field(default_factory=list)
    #: (lesion index or None, verdict, (first, last) for missed, minutes after T0).
    feedback: list[tuple[int | None, str, tuple[int, int] | None, int]] = field(
        default_factory=list
    )
    model: str = "hyper:1"
    finished: datetime = T0


#: Patient ID → (name, study date): every series of a patient carries them.
PATIENTS = {
    "MRN-1001": ("DOE^JANE", "20240105"),
    "MRN-1002": ("ROE^RICHARD", "20240211"),
    "MRN-1003": ("POE^EDGAR", "20240320"),
    "MRN-1004": ("LOE^LISA", "20240415"),
    "MRN-1005": ("MOE^MARK", "20240502"),
    "MRN-1006": ("NOE^NORA", "20240618"),
    "MRN-1007": ("KOE^KARL", "20240707"),
    "MRN-1008": ("ZOE^ZARA", "20240808"),
}

CASES = [
    # missed mark on a negative call: positive on the reader's slices
    Case("A", "MRN-1001", False, feedback=[(None, "missed", (2, 3), 5)]),
    # the same patient's other study: an accepted lesion (0-based 1-2 → 2-3)
    Case("B", "MRN-1001", True, [(1, 2), (3, 3)], feedback=[(0, "accept", None, 5)]),
    # the study-level call accepted
    Case("C", "MRN-1002", True, [(0, 1)], feedback=[(None, "accept", None, 5)]),
    # accepted, then rejected: the latest verdict turns the positive call over
    Case(
        "D",
        "MRN-1003",
        True,
        [(0, 0)],
        feedback=[(None, "accept", None, 5), (None, "reject", None, 9)],
    ),
    # the only lesion rejected: negative
    Case("E", "MRN-1004", True, [(2, 3)], feedback=[(0, "reject", None, 5)]),
    # nobody looked
    Case("F", "MRN-1005", False),
    # judged, then an instance was replaced by a corrected copy (a new version)
    Case("G", "MRN-1006", True, [(1, 1)], feedback=[(None, "accept", None, 5)]),
    # judged, then a changed copy arrived (kept beside the first)
    Case("H", "MRN-1007", False, feedback=[(None, "accept", None, 5)]),
    # another model's analysis, an old one
    Case(
        "I",
        "MRN-1008",
        False,
        feedback=[(None, "accept", None, 5)],
        model="other:3",
        finished=T0 - timedelta(days=400),
    ),
]


@dataclass
class Site:
    db: Database
    data_dir: Path
    #: Letter → Series pk.
    series: dict[str, int]
    #: (SeriesNumber, InstanceNumber) → the stored original, read back.
    originals: dict[tuple[int, int], Dataset]
    settings: Settings


def _identify(path: Path, case: Case, number: int, first_uid: str) -> None:
    """Give a demo slice the identifying attributes a real one carries."""
    ds = dcmread(path)
    name, study_date = PATIENTS[case.patient]
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = name, case.patient, "19600101"
    ds.PatientSex, ds.PatientAge, ds.OtherPatientIDs = "F", "064Y", f"OLD-{case.patient}"
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = study_date
    ds.AcquisitionDateTime = f"{study_date}101500"
    ds.AccessionNumber, ds.StudyID = f"ACC-{case.letter}", f"S-{case.letter}"
    ds.SeriesNumber = number
    ds.InstitutionName, ds.StationName = "St Elsewhere Hospital", "CT-ROOM-7"
    ds.DeviceSerialNumber, ds.OperatorsName = "SN-778899", "TECH^TOM"
    ds.ReferringPhysicianName, ds.StudyDescription = "HOUSE^GREGORY", f"HEAD {name}"
    ds.InstanceCreatorUID = "1.2.826.0.1.3680043.10.543.77"
    ds.add_new(0x00090010, "LO", "ACME")
    ds.add_new(0x00091010, "LO", f"private {case.patient}")
    reference = Dataset()
    reference.ReferencedSOPClassUID = ds.SOPClassUID
    reference.ReferencedSOPInstanceUID = first_uid
    reference.add_new(0x00430010, "LO", "ACME")
    reference.add_new(0x00431010, "LO", f"private {name}")
    inner = Dataset()
    inner.ContentCreatorName = name
    inner.ObservationDateTime = f"{study_date}120000"
    inner.UID = f"1.2.826.0.1.3680043.10.543.{number}"
    reference.ContentSequence = Sequence([inner])
    ds.SourceImageSequence = Sequence([reference])
    ds.save_as(path, enforce_file_format=True)


def _findings(series_uid: str, uids: list[str], case: Case) -> Findings:
    slices = [SliceProbability(uid, 0.9 if case.positive else 0.05) for uid in uids]
    lesions = [
        Lesion(
            first_slice=first,
            last_slice=last,
            key_slice=first,
            key_sop_instance_uid=uids[first],
            outline=[(10.0, 10.0), (20.0, 10.0), (15.0, 20.0)],
            area_mm2=40.0,
            longest_diameter_mm=9.0,
            volume_ml=0.5,
            mean_hu=65.0,
            probability=0.9,
            label=1,
        )
        for first, last in case.lesions
    ]
    name, version = case.model.split(":")
    return Findings(
        series_instance_uid=series_uid,
        study_probability=0.9 if case.positive else 0.05,
        positive=case.positive,
        threshold=0.5,
        slices=slices,
        flagged_instance_uids=[s.sop_instance_uid for s in slices if s.probability >= 0.5],
        model=ModelIdentity(name, version, "c3" * 32),
        lesions=lesions,
        slice_threshold=0.5,
    )


def _store(session: Session, data_dir: Path, case: Case, number: int, patient: Patient) -> int:
    """Write the case's series under the data folder and record it with its job and
    feedback; returns the Series pk."""
    folder = data_dir / "instances" / case.letter
    paths = write_demo_series(folder, SLICES, seed=number)
    first_uid = str(dcmread(paths[0], stop_before_pixels=True).SOPInstanceUID)
    for path in paths:
        _identify(path, case, number, first_uid)
    headers = [dcmread(p, stop_before_pixels=True) for p in paths]
    first = headers[0]
    study = Study(study_instance_uid=str(first.StudyInstanceUID), patient=patient, received_at=T0)
    series = Series(
        series_instance_uid=str(first.SeriesInstanceUID),
        study=study,
        modality="CT",
        series_number=number,
        instance_count=SLICES,
        state=SeriesState.COMPLETE,
        first_received_at=T0,
        last_received_at=T0,
        completed_at=T0,
    )
    session.add_all([study, series])
    for path, header in zip(paths, headers, strict=True):
        session.add(
            Instance(
                sop_instance_uid=str(header.SOPInstanceUID),
                series=series,
                sop_class_uid=str(header.SOPClassUID),
                transfer_syntax_uid=str(header.file_meta.TransferSyntaxUID),
                instance_number=int(header.InstanceNumber),
                slice_position=float(header.ImagePositionPatient[2]),
                path=path.relative_to(data_dir).as_posix(),
                size_bytes=path.stat().st_size,
                received_at=T0,
            )
        )
    uids = [str(h.SOPInstanceUID) for h in headers]
    findings = _findings(series.series_instance_uid, uids, case)
    name, version = case.model.split(":")
    job = Job(
        series=series,
        model_name=name,
        model_version=version,
        input_digest=input_digest((uid, 1) for uid in uids),
        instance_count=SLICES,
        state=JobState.DONE,
        attempts=1,
        created_at=case.finished,
        started_at=case.finished,
        finished_at=case.finished,
        study_probability=findings.study_probability,
        positive=case.positive,
        summary="",
        findings_json=json.dumps(findings.to_dict()),
    )
    session.add(job)
    session.flush()
    for lesion_index, verdict, slices, minutes in case.feedback:
        session.add(
            Feedback(
                job_pk=job.id,
                lesion_index=lesion_index,
                verdict=FeedbackVerdict(verdict),
                first_slice=slices[0] if slices else None,
                last_slice=slices[1] if slices else None,
                username="dr.ada" if minutes < 9 else "dr.bob",
                created_at=case.finished + timedelta(minutes=minutes),
            )
        )
    return series.id


def _change_after_the_verdicts(session: Session, series: dict[str, int]) -> None:
    """G: instance 1 replaced by a corrected copy (version 2); H: a changed copy kept
    beside the first (the version in use is the same)."""
    later = T0 + timedelta(hours=2)
    for letter, action, version in (
        ("G", InstanceChangeAction.REPLACED, 2),
        ("H", InstanceChangeAction.KEPT_FIRST, 1),
    ):
        instance = session.query(Instance).filter_by(series_pk=series[letter]).first()
        assert instance is not None
        instance.version = version
        session.add(
            InstanceChange(
                instance_pk=instance.id,
                series_pk=series[letter],
                action=action.value,
                version=version,
                kept_path="",
                received_at=later,
            )
        )


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    settings = Settings(storage=StorageSettings(data_dir=tmp_path / "var"))
    data_dir = settings.storage.data_dir
    data_dir.mkdir()
    upgrade(settings.database_url)
    db = Database(make_engine(settings.database_url))
    try:
        series: dict[str, int] = {}
        with db.writing() as session:
            patients = {
                pid: Patient(patient_id=pid, patient_name=name, created_at=T0)
                for pid, (name, _) in PATIENTS.items()
            }
            for number, case in enumerate(CASES, 1):
                series[case.letter] = _store(
                    session, data_dir, case, number, patients[case.patient]
                )
            _change_after_the_verdicts(session, series)
        originals: dict[tuple[int, int], Dataset] = {}
        for path in sorted((data_dir / "instances").rglob("*.dcm")):
            ds = dcmread(path)
            originals[(int(ds.SeriesNumber), int(ds.InstanceNumber))] = ds
        yield Site(db, data_dir, series, originals, settings)
    finally:
        db.dispose()


def _labels(out: Path) -> list[dict[str, str]]:
    with (out / "labels.csv").open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _by_series_number(out: Path, rows: list[dict[str, str]]) -> dict[int, dict[str, str]]:
    """Each row by the SeriesNumber of its files (the demo series' number is the case's
    position in CASES, starting at 1), which pseudonymisation keeps."""
    found = {}
    for row in rows:
        first = sorted((out / "series" / row["series"]).iterdir())[0]
        found[int(dcmread(first, stop_before_pixels=True).SeriesNumber)] = row
    return found


def _row_of(out: Path, rows: list[dict[str, str]], letter: str) -> dict[str, str] | None:
    number = next(n for n, case in enumerate(CASES, 1) if case.letter == letter)
    return _by_series_number(out, rows).get(number)


# -- the rule ----------------------------------------------------------------------------


def test_each_branch_of_the_rule_gives_its_label_and_slices(site: Site, tmp_path: Path) -> None:
    out = tmp_path / "dataset"
    manifest = export_reviewed(site.db, site.data_dir, out, by="tester")
    rows = _labels(out)
    assert list(rows[0]) == list(reviewed.LABEL_COLUMNS)
    expected = {
        "A": ("1", "2", "3"),  # missed, on the reader's slices
        "B": ("1", "2", "3"),  # the accepted lesion 0-based 1-2
        "C": ("1", "", ""),  # accepted positive call
        "D": ("0", "", ""),  # the latest verdict rejects the positive call
        "E": ("0", "", ""),  # every lesion rejected
        "I": ("0", "", ""),  # another model's negative call, accepted
    }
    for letter, (label, first, last) in expected.items():
        row = _row_of(out, rows, letter)
        assert row is not None, letter
        assert (row["label"], row["first_slice"], row["last_slice"]) == (label, first, last)
        assert row["label_source"] == "radiologist"
    assert len(rows) == 6
    assert manifest.rules == {
        "missed": 1,
        "accepted-lesion": 1,
        "study-accepted": 2,
        "study-rejected": 1,
        "lesions-rejected": 1,
    }
    assert manifest.labels == {"positive": 3, "negative": 3}
    assert manifest.readers == {"dr.ada": 5, "dr.bob": 1}  # D's earlier verdict decided nothing
    record = json.loads((out / "manifest.json").read_text())
    assert record["rule"] == reviewed.RULE
    assert record["created_by"] == "tester"
    assert record["pseudonymised"] is False and record["profile"] is None
    first = (T0 - timedelta(days=400)).date().isoformat()
    assert (record["verdicts"]["first"], record["verdicts"]["last"]) == (first, "2026-03-02")
    assert record["counts"]["series"] == 6 and record["counts"]["patients"] == 5


def test_unreviewed_series_are_left_out_unless_asked_for(site: Site, tmp_path: Path) -> None:
    left = export_reviewed(site.db, site.data_dir, tmp_path / "reviewed")
    assert (site.series["F"], "unreviewed") in {(i.series_pk, i.reason) for i in left.left_out}
    assert _row_of(tmp_path / "reviewed", _labels(tmp_path / "reviewed"), "F") is None

    out = tmp_path / "all"
    every = export_reviewed(site.db, site.data_dir, out, include_unreviewed=True)
    row = _row_of(out, _labels(out), "F")
    assert row is not None
    assert (row["label"], row["label_source"], row["first_slice"]) == ("0", "model", "")
    assert every.sources == {"radiologist": 6, "model": 1}


def test_a_series_changed_after_the_verdict_is_refused_and_listed(
    site: Site, tmp_path: Path
) -> None:
    out = tmp_path / "dataset"
    manifest = export_reviewed(site.db, site.data_dir, out)
    reasons = {item.series_pk: item.reason for item in manifest.left_out}
    assert "no longer those the job read" in reasons[site.series["G"]]
    assert reasons[site.series["H"]] == "an instance changed after the verdict"
    assert _row_of(out, _labels(out), "G") is None and _row_of(out, _labels(out), "H") is None
    listed = json.loads((out / "manifest.json").read_text())["left_out"]
    assert {
        "series_pk": site.series["G"],
        "reason": reasons[site.series["G"]],
        "series_instance_uid": site.originals[(7, 1)].SeriesInstanceUID,
    } in listed


def test_the_model_and_date_filters_choose_the_jobs(site: Site, tmp_path: Path) -> None:
    mine = export_reviewed(site.db, site.data_dir, tmp_path / "other", model="other:3")
    assert mine.series == 1 and mine.model_filter == "other:3"
    assert _row_of(tmp_path / "other", _labels(tmp_path / "other"), "I") is not None
    recent = export_reviewed(site.db, site.data_dir, tmp_path / "recent", since=date(2026, 1, 1))
    assert all(item.series_pk != site.series["I"] for item in recent.left_out)
    assert recent.series == 5
    with pytest.raises(DatasetExportError, match="NAME"):
        export_reviewed(site.db, site.data_dir, tmp_path / "bad", model="hyper:")


def test_the_latest_verdict_on_a_lesion_counts() -> None:
    job = reviewed.JobCall(1, True, ((2, 3),), "d", T0)

    def verdict(n: int, what: str) -> Verdict:
        return Verdict(n, 1, 0, FeedbackVerdict(what), None, None, "r", T0 + timedelta(n))

    accepted_then_rejected = decide({1: job}, [verdict(1, "accept"), verdict(2, "reject")])
    assert accepted_then_rejected is not None and accepted_then_rejected.rule == "lesions-rejected"
    rejected_then_accepted = decide({1: job}, [verdict(1, "reject"), verdict(2, "accept")])
    assert rejected_then_accepted is not None
    assert (rejected_then_accepted.label, rejected_then_accepted.first_slice) == (1, 2)


# -- patients and reading back -------------------------------------------------------------


def test_patients_stay_whole_and_the_dataset_reads_back_with_slice_labels(
    site: Site, tmp_path: Path
) -> None:
    out = tmp_path / "dataset"
    export_reviewed(site.db, site.data_dir, out, include_unreviewed=True)
    rows = _labels(out)
    a, b = _row_of(out, rows, "A"), _row_of(out, rows, "B")
    assert a is not None and b is not None and a["patient"] == b["patient"] == "MRN-1001"

    spec = f"dicom:{out / 'series'}:{out / 'labels.csv'}"
    seen: dict[str, str] = {}
    for split in SPLITS:
        dataset = parse_spec(spec, split)
        for index in range(len(dataset)):
            study = dataset[index]
            row = next(r for r in rows if r["series"] == study.key)
            assert seen.setdefault(row["patient"], split) == split  # one split per patient
            assert study.slices.shape[0] == SLICES and study.label == int(row["label"])
            assert study.slice_labels is not None or row["label"] == "1"
            if row["first_slice"]:
                expected = [
                    float(int(row["first_slice"]) <= n <= int(row["last_slice"]))
                    for n in range(1, SLICES + 1)
                ]
                assert study.slice_labels is not None
                assert study.slice_labels.tolist() == expected
            elif row["label"] == "0":
                assert study.slice_labels is not None and not study.slice_labels.any()
            else:
                assert study.slice_labels is None
            seen[f"series:{study.key}"] = split
    assert sum(k.startswith("series:") for k in seen) == len(rows)  # every row in a split


# -- pseudonymisation --------------------------------------------------------------------


def _walk(ds: Dataset) -> Iterator[Any]:
    """Every element of `ds` and of its items, and of its file meta."""
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        yield from meta
    for element in ds:
        yield element
        if element.VR == "SQ":
            for item in element.value:
                yield from _walk(item)


def _values(element: Any) -> list[str]:
    value = element.value
    if value is None or isinstance(value, bytes | Sequence):
        return []
    if isinstance(value, MultiValue):
        return [str(v) for v in value]
    return [str(value)]


def _original_identifiers(originals: dict[tuple[int, int], Dataset]) -> tuple[set[str], set[str]]:
    """(every UID not of the standard's own, every name and ID) of the originals."""
    uids: set[str] = set()
    names: set[str] = set()
    for ds in originals.values():
        for element in _walk(ds):
            if element.VR == "UI" and element.keyword != "ImplementationClassUID":
                uids.update(v for v in _values(element) if not v.startswith("1.2.840.10008."))
    for pid, (name, _) in PATIENTS.items():
        names.update({pid, name, f"OLD-{pid}"})
    # 8 characters or more each, so finding one in the raw bytes is never chance
    names.update({"St Elsewhere Hospital", "CT-ROOM-7", "SN-778899", "TECH^TOM", "HOUSE^GREGORY"})
    return uids, names


def test_a_pseudonymised_export_holds_no_original_identifier(site: Site, tmp_path: Path) -> None:
    out = tmp_path / "dataset"
    manifest = export_reviewed(
        site.db, site.data_dir, out, include_unreviewed=True, pseudonymise=True
    )
    uids, names = _original_identifiers(site.originals)
    shifts: dict[str, set[int]] = {}
    pseudonyms: dict[str, set[str]] = {}
    files = sorted((out / "series").rglob("*"))
    assert sum(f.is_file() for f in files) == manifest.instances == 7 * SLICES
    for path in (f for f in files if f.is_file()):
        raw = path.read_bytes()
        assert not any(uid.encode() in raw for uid in uids), path
        assert not any(name.encode() in raw for name in names), path
        ds = dcmread(path)
        for element in _walk(ds):
            assert not element.tag.is_private and element.keyword not in REMOVED
            for value in _values(element):
                assert value not in uids, (element, path)
                assert not any(name in value for name in names), (element, path)
            if element.VR == "PN" and element.keyword != "PatientName":
                assert not element.value
        for keyword in EMPTIED:
            assert str(ds.get(keyword, "")) == ""
        assert str(ds.PatientName) == ds.PatientID and ds.PatientID.startswith("ANON-")
        assert ds.PatientIdentityRemoved == "YES"
        codes = {item.CodeValue for item in ds.DeidentificationMethodCodeSequence}
        assert codes == {"113100", "113107"}
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.SOPClassUID == site.originals[(1, 1)].SOPClassUID  # standard UIDs stay
        original = site.originals[(int(ds.SeriesNumber), int(ds.InstanceNumber))]
        pseudonyms.setdefault(str(original.PatientID), set()).add(str(ds.PatientID))

        def days(new: str, old: str) -> int:
            return (date.fromisoformat(new[:8]) - date.fromisoformat(old[:8])).days

        inner = ds.SourceImageSequence[0].ContentSequence[0]
        shifts.setdefault(str(ds.PatientID), set()).update(
            {
                days(ds.StudyDate, original.StudyDate),
                days(ds.ContentDate, original.ContentDate),
                days(ds.AcquisitionDateTime, original.AcquisitionDateTime),
                days(
                    inner.ObservationDateTime,
                    original.SourceImageSequence[0].ContentSequence[0].ObservationDateTime,
                ),
            }
        )
        assert ds.AcquisitionDateTime[8:] == original.AcquisitionDateTime[8:]  # time kept
    # one pseudonym per patient, one shift per pseudonym, never 0
    assert all(len(p) == 1 for p in pseudonyms.values())
    assert len({next(iter(p)) for p in pseudonyms.values()}) == len(pseudonyms)
    assert all(len(s) == 1 and 0 not in s for s in shifts.values())

    for name in ("labels.csv", "manifest.json"):
        text = (out / name).read_text()
        assert not any(uid in text for uid in uids) and not any(n in text for n in names)
    record = json.loads((out / "manifest.json").read_text())
    assert record["pseudonymised"] is True
    assert {c["value"] for c in record["profile"]["codes"]} == {"113100", "113107"}
    assert all("series_instance_uid" not in item for item in record["left_out"])
    rows = _labels(out)
    a, b = _row_of(out, rows, "A"), _row_of(out, rows, "B")
    assert a is not None and b is not None and a["patient"] == b["patient"]
    assert a["patient"] == next(iter(pseudonyms["MRN-1001"]))


def test_uids_map_consistently_within_an_export() -> None:
    pseudonymiser = Pseudonymiser.new()
    ds = Dataset()
    ds.SOPInstanceUID, ds.SOPClassUID = "1.2.3.4.5", "1.2.840.10008.5.1.4.1.1.2"
    reference = Dataset()
    reference.ReferencedSOPInstanceUID = "1.2.3.4.5"
    ds.ReferencedImageSequence = Sequence([reference])
    ds.StudyDate = "20240231"  # no such day: emptied, never left as it was
    pseudonymiser.apply(ds, "1")
    new = ds.SOPInstanceUID
    assert new != "1.2.3.4.5" and ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID == new
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2" and ds.StudyDate == ""
    assert Pseudonymiser.new().uid("1.2.3.4.5") != new  # another export, another secret


def test_the_profile_names_only_real_attributes() -> None:
    from pydicom.datadict import tag_for_keyword

    assert all(tag_for_keyword(keyword) is not None for keyword in REMOVED | EMPTIED)


# -- the folder ---------------------------------------------------------------------------


def test_a_non_empty_folder_is_refused(site: Site, tmp_path: Path) -> None:
    out = tmp_path / "dataset"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(DatasetExportError, match="not an empty folder"):
        export_reviewed(site.db, site.data_dir, out)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert export_reviewed(site.db, site.data_dir, empty).series == 6


def test_a_crash_leaves_no_dataset_that_looks_complete(
    site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(rows: object) -> str:
        raise OSError("disk full")

    monkeypatch.setattr(reviewed, "_label_rows", crash)
    with pytest.raises(OSError, match="disk full"):
        export_reviewed(site.db, site.data_dir, tmp_path / "dataset")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["var"]
    assert len(list((site.data_dir / "instances").rglob("*.dcm"))) == len(site.originals)


def test_the_command_prints_the_spec_to_train_with(
    site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser(prog="radassist")
    commands = parser.add_subparsers(dest="command", required=True)
    add_parsers(
        lambda name, text: commands.add_parser(name, help=text),
        lambda actions, name, text: actions.add_parser(name, help=text),
    )
    out = tmp_path / "dataset"
    args = parser.parse_args(
        ["dataset", "export", "--out", str(out), "--since", "2026-01-01", "--pseudonymise"]
    )
    assert cmd_dataset(site.settings, args) == 0
    printed = capsys.readouterr().out
    assert "5 series of 4 patients" in printed and "(pseudonymised)" in printed
    assert "1  unreviewed" in printed
    assert f"dicom:{out / 'series'}:{out / 'labels.csv'}" in printed
    assert cmd_dataset(site.settings, args) == 2  # the folder is no longer empty
    assert "not an empty folder" in capsys.readouterr().err
