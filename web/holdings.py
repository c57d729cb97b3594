"""What the node holds, for QIDO-RS and WADO-RS: the instances it received and the
result objects it wrote (SR, KOS, SEG live in the source study, in their own series)."""

from __future__ import annotations

import fnmatch
from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from assistant.analysis.writers import MODALITIES, result_series_number
from assistant.db import (
    Instance,
    Job,
    Patient,
    RegisteredModel,
    ResultKind,
    ResultObject,
    Series,
    Study,
)


@dataclass(frozen=True)
class HeldInstance:
    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    instance_number: int | None
    path: str  # relative to the data folder


@dataclass(frozen=True)
class HeldSeries:
    study_uid: str
    series_uid: str
    modality: str
    number: int | None
    description: str
    instances: int


@dataclass(frozen=True)
class HeldStudy:
    study_uid: str
    patient_id: str
    patient_name: str
    birth_date: str
    sex: str
    study_date: str
    study_time: str
    accession_number: str
    study_id: str
    description: str
    referring_physician: str
    series: tuple[HeldSeries, ...]

    @property
    def instances(self) -> int:
        return sum(s.instances for s in self.series)

    @property
    def modalities(self) -> list[str]:
        return sorted({s.modality for s in self.series if s.modality})


def matches(value: str, pattern: str) -> bool:
    """QIDO-RS matching: a list of UIDs (comma-separated), a date range (A-B), '*' and
    '?' wildcards, else equality; empty patterns match everything."""
    if not pattern:
        return True
    if "," in pattern:
        return value in {p.strip() for p in pattern.split(",")}
    if len(pattern) in (9, 17) and "-" in pattern and pattern.replace("-", "").isdigit():
        low, _, high = pattern.partition("-")
        return (not low or value >= low) and (not high or value <= high)
    if "*" in pattern or "?" in pattern:
        return fnmatch.fnmatchcase(value.upper(), pattern.upper())
    return value == pattern


def studies(session: Session, study_uid: str | None = None) -> list[HeldStudy]:
    query = select(Study, Patient).join(Patient, Study.patient_pk == Patient.id).order_by(Study.id)
    if study_uid:
        query = query.where(Study.study_instance_uid == study_uid)
    rows = session.execute(query).all()
    by_study = series_of(session, study_uid)
    return [
        HeldStudy(
            study.study_instance_uid,
            patient.patient_id,
            patient.patient_name,
            patient.birth_date,
            patient.sex,
            study.study_date,
            study.study_time,
            study.accession_number,
            study.study_id,
            study.study_description,
            study.referring_physician_name,
            tuple(by_study.get(study.study_instance_uid, [])),
        )
        for study, patient in rows
    ]


def series_of(session: Session, study_uid: str | None = None) -> dict[str, list[HeldSeries]]:
    """Every series, received or ours, by Study Instance UID."""
    out: dict[str, list[HeldSeries]] = defaultdict(list)
    query = select(Series, Study.study_instance_uid).join(Study, Study.id == Series.study_pk)
    if study_uid:
        query = query.where(Study.study_instance_uid == study_uid)
    for series, study in session.execute(query.order_by(Series.series_number, Series.id)):
        out[study].append(
            HeldSeries(
                study,
                series.series_instance_uid,
                series.modality,
                series.series_number,
                series.series_description,
                series.instance_count,
            )
        )
    slots = (
        select(RegisteredModel.name, func.min(RegisteredModel.slot).label("slot"))
        .group_by(RegisteredModel.name)
        .subquery()
    )
    results = (
        select(ResultObject, Series.series_number, slots.c.slot)
        .join(Job, Job.id == ResultObject.job_pk)
        .join(Series, Series.id == Job.series_pk)
        .outerjoin(slots, slots.c.name == Job.model_name)
        .where(ResultObject.kind != ResultKind.NOTICE)  # a notification is not DICOM
        # A shadow model's results are kept for comparison, not shown as results.
        .where(Job.shadow.is_(False))
    )
    if study_uid:
        results = results.where(ResultObject.study_instance_uid == study_uid)
    counted: dict[tuple[str, str], tuple[ResultKind, int | None, int, int]] = {}
    for result, source_number, slot in session.execute(results):
        key = (result.study_instance_uid, result.series_instance_uid)
        kind, number, model_slot, count = counted.get(
            key, (result.kind, source_number, slot or 0, 0)
        )
        counted[key] = (kind, number, model_slot, count + 1)
    for (study, series_uid), (kind, source_number, model_slot, count) in counted.items():
        out[study].append(
            HeldSeries(
                study,
                series_uid,
                MODALITIES[kind.value],
                result_series_number(kind.value, source_number, model_slot),
                "radassist result",
                count,
            )
        )
    return out


def instances(
    session: Session, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None
) -> list[HeldInstance]:
    """Instances of a study (or one series, or one instance), received and ours."""
    received = (
        select(Instance, Series.series_instance_uid)
        .join(Series, Series.id == Instance.series_pk)
        .join(Study, Study.id == Series.study_pk)
        .where(Study.study_instance_uid == study_uid)
    )
    ours = (
        select(ResultObject)
        .join(Job, Job.id == ResultObject.job_pk)
        .where(
            ResultObject.study_instance_uid == study_uid,
            ResultObject.kind != ResultKind.NOTICE,
            Job.shadow.is_(False),
        )
    )
    if series_uid:
        received = received.where(Series.series_instance_uid == series_uid)
        ours = ours.where(ResultObject.series_instance_uid == series_uid)
    if sop_uid:
        received = received.where(Instance.sop_instance_uid == sop_uid)
        ours = ours.where(ResultObject.sop_instance_uid == sop_uid)
    held = [
        HeldInstance(
            study_uid, series, i.sop_instance_uid, i.sop_class_uid, i.instance_number, i.path
        )
        for i, series in session.execute(received.order_by(Instance.instance_number, Instance.id))
    ]
    held += [
        HeldInstance(
            study_uid, r.series_instance_uid, r.sop_instance_uid, r.sop_class_uid, 1, r.path
        )
        for r in session.scalars(ours.order_by(ResultObject.id))
    ]
    return held
