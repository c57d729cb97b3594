"""The series this node analysed, labelled by its radiologists' feedback, written as a
training dataset (`radassist dataset export`): ``series/<n>/`` with copies of each
series' instance files, ``labels.csv`` for ``dicom:OUT/series:OUT/labels.csv``, and
``manifest.json`` saying what is in it and by which rule.

**The label** of each series analysed by a finished, non-shadow job (of the chosen
model, finished on or after the chosen date) comes from its radiologists' feedback by
the rule of assistant/registry/truth.py (``RULE``, written verbatim into every
manifest): their missed-finding marks and accepted lesions first (with their slices),
then the latest study-level verdict, then all lesions rejected; an unreviewed series is
left out, or labelled with the model's call when asked (``label_source=model``). A
series whose instances changed after the verdict is left out.

The dashboard's shadow comparison uses the same rule.

The store is only read. The dataset is written in a hidden folder beside OUT and
renamed to OUT once complete (manifest last), so a crash leaves no half dataset under
OUT's name.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

from pydicom import dcmread
from sqlalchemy import select

from assistant.db import (
    Database,
    Feedback,
    Instance,
    InstanceChange,
    Job,
    JobState,
    Patient,
    Series,
    Study,
    input_digest,
    utcnow,
)
from assistant.registry.truth import RULE, Decision, JobCall, Verdict, decide, lesion_ranges
from assistant.storage import fsync_dir
from assistant.training.pseudonymise import Pseudonymiser, burned_in, profile

LABEL_COLUMNS = ("series", "label", "patient", "first_slice", "last_slice", "label_source")
MANIFEST_FORMAT = "radassist-reviewed-dataset/1"


class DatasetExportError(ValueError):
    """An export that cannot be made as asked (a non-empty folder, a bad model filter)."""


def refusal(decision: Decision, current_digest: str, changes: Iterable[datetime]) -> str | None:
    """Why a decided series must be left out (its instances changed after the verdict,
    or after the analysis for a model label), or None."""
    after = "the analysis" if decision.source == "model" else "the verdict"
    if any(job.input_digest != current_digest for job in decision.jobs):
        return f"instances changed after {after}: they are no longer those the job read"
    if decision.verdicts:
        since = min(v.created_at for v in decision.verdicts)
    else:
        since = min(job.finished_at for job in decision.jobs)
    if any(at > since for at in changes):
        return f"an instance changed after {after}"
    return None


# -- what the database holds ----------------------------------------------------------------


@dataclass(frozen=True)
class StoredInstance:
    sop_instance_uid: str
    version: int
    #: Relative to the data folder.
    path: str


@dataclass
class Candidate:
    """An analysed series with what the rule and the copy need."""

    series_pk: int
    series_instance_uid: str
    patient_pk: int
    patient_id: str
    jobs: dict[int, JobCall] = field(default_factory=dict)
    verdicts: list[Verdict] = field(default_factory=list)
    #: In the order they are written (instance number, then position along the stack).
    instances: list[StoredInstance] = field(default_factory=list)
    changes: list[datetime] = field(default_factory=list)

    @property
    def digest(self) -> str:
        return input_digest((i.sop_instance_uid, i.version) for i in self.instances)


def parse_model(model: str | None) -> tuple[str, str | None] | None:
    """ "name[:version]" as (name, version or None); None for no filter."""
    if model is None:
        return None
    name, _, version = model.partition(":")
    if not name.strip() or (":" in model and not version.strip()):
        raise DatasetExportError(f"--model takes NAME[:VERSION], not {model!r}")
    return name.strip(), version.strip() or None


def gather(
    db: Database, since: date | None, model: tuple[str, str | None] | None
) -> list[Candidate]:
    """Every series with a DONE non-shadow job (of `model`, finished on or after
    `since`), with those jobs, the verdicts on them, its instances and its changes."""
    conditions = [Job.state == JobState.DONE, Job.shadow.is_(False)]
    if model is not None:
        conditions.append(Job.model_name == model[0])
        if model[1] is not None:
            conditions.append(Job.model_version == model[1])
    if since is not None:
        conditions.append(Job.finished_at >= datetime.combine(since, time()))
    eligible = select(Job.id).where(*conditions)
    with db.sessions() as session:
        candidates: dict[int, Candidate] = {}
        rows = session.execute(
            select(Job, Series.series_instance_uid, Patient.id, Patient.patient_id)
            .join(Series, Series.id == Job.series_pk)
            .join(Study, Study.id == Series.study_pk)
            .join(Patient, Patient.id == Study.patient_pk)
            .where(*conditions)
            .order_by(Job.series_pk, Job.id)
        ).all()
        for job, series_uid, patient_pk, patient_id in rows:
            candidate = candidates.setdefault(
                job.series_pk, Candidate(job.series_pk, series_uid, patient_pk, patient_id)
            )
            candidate.jobs[job.id] = JobCall(
                job.id,
                job.positive,
                lesion_ranges(job.findings_json),
                job.input_digest,
                job.finished_at or job.created_at,
            )
        series_of_job = {j: c.series_pk for c in candidates.values() for j in c.jobs}
        for fb in session.scalars(select(Feedback).where(Feedback.job_pk.in_(eligible))):
            candidates[series_of_job[fb.job_pk]].verdicts.append(
                Verdict(
                    fb.id,
                    fb.job_pk,
                    fb.lesion_index,
                    fb.verdict,
                    fb.first_slice,
                    fb.last_slice,
                    fb.username,
                    fb.created_at,
                )
            )
        analysed = select(Job.series_pk).where(*conditions)
        for instance in session.scalars(
            select(Instance)
            .where(Instance.series_pk.in_(analysed))
            .order_by(
                Instance.series_pk,
                Instance.instance_number.is_(None),
                Instance.instance_number,
                Instance.slice_position,
                Instance.id,
            )
        ):
            candidates[instance.series_pk].instances.append(
                StoredInstance(instance.sop_instance_uid, instance.version, instance.path)
            )
        for series_pk, received_at in session.execute(
            select(InstanceChange.series_pk, InstanceChange.received_at).where(
                InstanceChange.series_pk.in_(analysed)
            )
        ):
            candidates[series_pk].changes.append(received_at)
    return [candidates[pk] for pk in sorted(candidates)]


# -- the manifest ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LeftOut:
    """A series not in the dataset, and why."""

    series_pk: int
    reason: str
    #: "" in a pseudonymised export (the manifest holds no original identifier).
    series_instance_uid: str = ""


@dataclass(frozen=True)
class Manifest:
    """What a dataset holds, how it was labelled, and what was left out."""

    created_at: datetime
    created_by: str
    rule: str
    model_filter: str
    since: date | None
    include_unreviewed: bool
    pseudonymised: bool
    profile: dict[str, Any] | None
    series: int
    instances: int
    patients: int
    labels: dict[str, int]
    sources: dict[str, int]
    rules: dict[str, int]
    readers: dict[str, int]
    first_verdict: datetime | None
    last_verdict: datetime | None
    left_out: tuple[LeftOut, ...]

    def to_dict(self) -> dict[str, Any]:
        """The manifest.json record."""
        return {
            "format": MANIFEST_FORMAT,
            "created_at": self.created_at.isoformat(timespec="seconds") + "Z",
            "created_by": self.created_by,
            "dataset": "dicom:series:labels.csv (paths relative to this folder)",
            "rule": self.rule,
            "model_filter": self.model_filter,
            "since": self.since.isoformat() if self.since else None,
            "include_unreviewed": self.include_unreviewed,
            "pseudonymised": self.pseudonymised,
            "profile": self.profile,
            "counts": {
                "series": self.series,
                "instances": self.instances,
                "patients": self.patients,
                "labels": self.labels,
                "label_source": self.sources,
                "rule": self.rules,
                "left_out": dict(Counter(item.reason for item in self.left_out)),
            },
            "verdicts": {
                "first": self.first_verdict.date().isoformat() if self.first_verdict else None,
                "last": self.last_verdict.date().isoformat() if self.last_verdict else None,
                "readers": self.readers,
            },
            "left_out": [
                {"series_pk": item.series_pk, "reason": item.reason}
                | (
                    {"series_instance_uid": item.series_instance_uid}
                    if item.series_instance_uid
                    else {}
                )
                for item in self.left_out
            ],
        }


# -- writing ----------------------------------------------------------------------------------


def _fsync_file(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())


def _write_text(path: Path, text: str) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DatasetExportError(f"{out} is not an empty folder: choose a new one")


def _copy_series(
    candidate: Candidate,
    data_dir: Path,
    folder: Path,
    pseudonymiser: Pseudonymiser | None,
) -> str | None:
    """Write the series' files into `folder` (made here); the reason it cannot be, or
    None. The store's files are only read."""
    folder.mkdir()
    for number, instance in enumerate(candidate.instances, 1):
        source = data_dir / instance.path
        target = folder / f"{number:04d}.dcm"
        if not source.is_file():
            return "a stored instance file is missing"
        if pseudonymiser is None:
            shutil.copyfile(source, target)
        else:
            dataset = dcmread(source)
            if burned_in(dataset):
                return "burned-in annotation: pseudonymisation does not clean pixels"
            pseudonymiser.apply(dataset, str(candidate.patient_pk))
            dataset.save_as(target, enforce_file_format=True)
        _fsync_file(target)
    fsync_dir(folder)
    return None


def _label_rows(rows: Sequence[dict[str, str]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=LABEL_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def export_reviewed(
    db: Database,
    data_dir: Path,
    out: Path,
    *,
    since: date | None = None,
    model: str | None = None,
    include_unreviewed: bool = False,
    pseudonymise: bool = False,
    by: str = "",
) -> Manifest:
    """Write the reviewed series as a dataset in `out` (absent or empty) by ``RULE``;
    returns its manifest. `model` is "name[:version]"; `since` keeps jobs finished on
    or after that day. Raises DatasetExportError for a non-empty `out`."""
    model_filter = parse_model(model)
    _check_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    candidates = gather(db, since, model_filter)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        manifest = _write(
            staging,
            candidates,
            data_dir,
            pseudonymiser=Pseudonymiser.new() if pseudonymise else None,
            include_unreviewed=include_unreviewed,
            header=dict(
                created_by=by,
                model_filter=model or "",
                since=since,
                include_unreviewed=include_unreviewed,
            ),
        )
        _check_out(out)
        os.rename(staging, out)  # replaces an empty folder; refuses a non-empty one
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    fsync_dir(out.parent)
    return manifest


def _write(
    staging: Path,
    candidates: Sequence[Candidate],
    data_dir: Path,
    *,
    pseudonymiser: Pseudonymiser | None,
    include_unreviewed: bool,
    header: dict[str, Any],
) -> Manifest:
    """Series folders, then labels.csv, then manifest.json, into `staging`."""
    (staging / "series").mkdir()
    rows: list[dict[str, str]] = []
    left_out: list[LeftOut] = []
    kept: list[Decision] = []
    patients: set[str] = set()
    instances = 0

    def leave_out(candidate: Candidate, reason: str) -> None:
        uid = "" if pseudonymiser else candidate.series_instance_uid
        left_out.append(LeftOut(candidate.series_pk, reason, uid))

    for candidate in candidates:
        decision = decide(candidate.jobs, candidate.verdicts)
        if decision is None:
            leave_out(candidate, "unreviewed, and the model made no call")
            continue
        if decision.source == "model" and not include_unreviewed:
            leave_out(candidate, "unreviewed")
            continue
        if not candidate.instances:
            leave_out(candidate, "no instances stored")
            continue
        reason = refusal(decision, candidate.digest, candidate.changes)
        name = str(len(kept) + 1)
        folder = staging / "series" / name
        if reason is None:
            reason = _copy_series(candidate, data_dir, folder, pseudonymiser)
        if reason is not None:
            shutil.rmtree(folder, ignore_errors=True)
            leave_out(candidate, reason)
            continue
        patient = (
            pseudonymiser.patient(str(candidate.patient_pk)).pseudonym
            if pseudonymiser
            else candidate.patient_id or f"unidentified-{candidate.patient_pk}"
        )
        patients.add(patient)
        kept.append(decision)
        instances += len(candidate.instances)
        rows.append(
            {
                "series": name,
                "label": str(decision.label),
                "patient": patient,
                "first_slice": "" if decision.first_slice is None else str(decision.first_slice),
                "last_slice": "" if decision.last_slice is None else str(decision.last_slice),
                "label_source": decision.source,
            }
        )
    fsync_dir(staging / "series")
    _write_text(staging / "labels.csv", _label_rows(rows))
    verdicts = [v for d in kept for v in d.verdicts]
    when = [v.created_at for v in verdicts]
    manifest = Manifest(
        created_at=utcnow(),
        rule=RULE,
        pseudonymised=pseudonymiser is not None,
        profile=profile() if pseudonymiser else None,
        series=len(kept),
        instances=instances,
        patients=len(patients),
        labels={
            "positive": sum(d.label == 1 for d in kept),
            "negative": sum(d.label == 0 for d in kept),
        },
        sources=dict(Counter(d.source for d in kept)),
        rules=dict(Counter(d.rule for d in kept)),
        readers=dict(sorted(Counter(v.username for v in verdicts).items())),
        first_verdict=min(when, default=None),
        last_verdict=max(when, default=None),
        left_out=tuple(left_out),
        **header,
    )
    _write_text(staging / "manifest.json", json.dumps(manifest.to_dict(), indent=2) + "\n")
    fsync_dir(staging)
    return manifest
