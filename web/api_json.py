"""The JSON resources of /api/v1, built from the views the dashboard shows too; their
schemas are in web/openapi.py, and the tests hold every answer to them.

Slices are named the way a radiologist counts them: `slice_number` from 1 along the
stack, as the model read it, with the slice's SOP Instance UID (and frame number, for a
frame of a multi-frame object) beside it. The stored findings record (`Findings.to_dict`)
keeps 0-based positions; they are translated here and never shown as they are."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from assistant.db import Job, JobState
from assistant.findings import Findings, Lesion
from assistant.registry import ModelEntry, Route
from web.reading import Reading, reading_of
from web.studies import DeliveryView, JobDetail, ResultView, SeriesView, StudyView


def iso(value: datetime | None) -> str | None:
    """A naive UTC time as RFC 3339 ("…Z"), or None."""
    return value.isoformat() + "Z" if value is not None else None


def reading_json(reading: Reading | None) -> dict[str, Any]:
    """`impression`, `midline_shift_mm` and `anatomy_read` of an analysis (null, null and
    false before one is done, or where its record cannot be read)."""
    return {
        "impression": reading.impression if reading else None,
        "midline_shift_mm": reading.midline_shift_mm if reading else None,
        "anatomy_read": reading.anatomy_read if reading else False,
    }


def study_json(study: StudyView, *, with_series: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "study_instance_uid": study.study_instance_uid,
        "patient_id": study.patient_id,
        # As the dashboard shows it: DICOM's "^" between family and given names kept.
        "patient_name": study.patient_name,
        "patient_sex": study.patient_sex,
        "patient_age": study.patient_age,
        "accession_number": study.accession_number,
        "study_date": study.study_date,
        "description": study.description,
        "received_at": iso(study.received_at),
        "status": study.status,
        "verdict": study.verdict,
        "probability": study.probability,
        "finding": study.finding,
        # The reading of the series `finding` names.
        **reading_json(study.reading),
    }
    if with_series:
        data["series"] = [_series_json(s) for s in study.series]
    return data


def _series_json(series: SeriesView) -> dict[str, Any]:
    return {
        "series_instance_uid": series.series_instance_uid,
        "series_number": series.number,
        "description": series.description,
        "modality": series.modality,
        "instances": series.instance_count,
        "status": series.status,
        "reason": series.reason,
        "job_id": series.job_id,
        "delivery": series.delivery,
        "instance_changes": dict(series.instance_changes),
        **reading_json(series.reading),
    }


def analysis_json(job: JobDetail) -> dict[str, Any]:
    """One analysis: verdict, lesions, every slice's probability, and where its results
    went."""
    findings = job.findings
    return {
        "job_id": job.id,
        "series_instance_uid": job.series_instance_uid,
        "series_number": job.series_number,
        "series_description": job.series_description,
        "model": job.model,
        "shadow": job.shadow,
        "weights_sha256": job.weights_sha256 or None,
        "state": job.state,
        "reason": job.reason,
        "delivery": job.delivery,
        "positive": job.positive,
        "probability": job.probability,
        "summary": job.summary,
        **reading_json(job.reading),
        "notes": list(findings.notes) if findings else [],
        "lesions": [_lesion_json(findings, i, les) for i, les in enumerate(job.lesions)]
        if findings
        else [],
        "slices": _slices_json(findings) if findings else [],
        "results": [_result_json(r) for r in job.results],
    }


def _slice_ref(findings: Findings, index: int, prefix: str) -> dict[str, Any]:
    """The slice at 0-based `index` as `<prefix>slice_number` (1-based), and its SOP
    Instance UID and frame number."""
    slice_ = findings.slices[index]
    return {
        f"{prefix}slice_number": index + 1,
        f"{prefix}sop_instance_uid": slice_.sop_instance_uid,
        f"{prefix}frame_number": slice_.frame_number,
    }


def _lesion_json(findings: Findings, index: int, lesion: Lesion) -> dict[str, Any]:
    return {
        "index": index,
        **_slice_ref(findings, lesion.first_slice, "first_"),
        **_slice_ref(findings, lesion.last_slice, "last_"),
        **_slice_ref(findings, lesion.key_slice, "key_"),
        "outline": [[x, y] for x, y in lesion.outline],
        "area_mm2": lesion.area_mm2,
        "longest_diameter_mm": lesion.longest_diameter_mm,
        "volume_ml": lesion.volume_ml,
        "mean_hu": lesion.mean_hu,
        "probability": lesion.probability,
        "label": lesion.label,
        "summary": lesion.summary(),
        "place": lesion.place.to_dict() if lesion.place is not None else None,
        "abc2_volume_ml": lesion.abc2_volume_ml,
        "thickness_mm": lesion.thickness_mm,
        "severity": lesion.severity,
    }


def _slices_json(findings: Findings) -> list[dict[str, Any]]:
    flagged = set(findings.flagged_slice_indices())
    return [
        {
            "slice_number": i + 1,
            "sop_instance_uid": s.sop_instance_uid,
            "frame_number": s.frame_number,
            "probability": s.probability,
            "flagged": i in flagged,
        }
        for i, s in enumerate(findings.slices)
    ]


def _result_json(result: ResultView) -> dict[str, Any]:
    return {
        "kind": result.kind,
        "sop_instance_uid": result.sop_instance_uid,
        "deliveries": [_delivery_json(d) for d in result.deliveries],
    }


def _delivery_json(delivery: DeliveryView) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "destination": delivery.destination,
        "state": delivery.state,
        "attempts": delivery.attempts,
        "last_error": delivery.last_error,
        "next_attempt_at": iso(delivery.next_attempt_at),
        "peer_status": delivery.peer_status,
        "sent_at": iso(delivery.sent_at),
    }


def feedback_json(job: JobDetail) -> list[dict[str, Any]]:
    return [
        {
            "id": f.id,
            "job_id": job.id,
            "finding": "study" if f.lesion_index is None else f.lesion_index,
            "verdict": f.verdict,
            "first_slice": f.first_slice,
            "last_slice": f.last_slice,
            "comment": f.comment,
            "username": f.username,
            "created_at": iso(f.created_at),
        }
        for f in job.feedback
    ]


def job_json(
    job: Job, series_instance_uid: str, delivery: str, weights_sha256: str = ""
) -> dict[str, Any]:
    """A row of the job list: its state, and, once done, where its results went.
    `weights_sha256`: the registry's for the job's model ("": the findings record's)."""
    return {
        "id": job.id,
        "series_instance_uid": series_instance_uid,
        "state": job.state.value,
        "reason": job.reason,
        "delivery": delivery,
        "model": f"{job.model_name} {job.model_version}",
        "shadow": job.shadow,
        "weights_sha256": weights_sha256 or _recorded_weights(job.findings_json) or None,
        "attempts": job.attempts,
        "created_at": iso(job.created_at),
        "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
        "inference_seconds": job.inference_seconds,
        "positive": job.positive,
        "probability": job.study_probability,
        **reading_json(reading_of(job.findings_json) if job.state is JobState.DONE else None),
    }


def _recorded_weights(record: str) -> str:
    """The weights' sha256 a findings record names ("" where it names none)."""
    try:
        model = json.loads(record).get("model") if record else None
    except (ValueError, AttributeError):
        return ""
    return str(model.get("weights_sha256") or "") if isinstance(model, dict) else ""


def model_json(entry: ModelEntry) -> dict[str, Any]:
    """A registered model as the registry prints it, less its folder (a path on the
    node's disk is no business of the API's)."""
    return {key: value for key, value in entry.to_dict().items() if key != "folder"}


def route_json(route: Route) -> dict[str, Any]:
    """A route, and its conditions in one line."""
    return {**route.to_dict(), "conditions": route.describe()}
