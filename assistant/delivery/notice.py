"""The notification of one analysis: the JSON document every notification destination is
sent from (a webhook gets it as it is; the HL7 and FHIR senders translate it).

The analysis writes it beside its DICOM objects, as a result object of kind "notice";
the outbox sends it to the notification destinations whose rule it meets
(assistant/delivery/rules.py). Its `message_id` is the same on every retry and for every
destination (the idempotency key); a later analysis of the same series that supersedes
this one sends a notice with status "corrected" that `replaces` it. The document's
JSON Schema is NOTICE_SCHEMA (docs/notification.schema.json is written from it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from assistant.findings import Findings, Lesion
from assistant.findings.place import COMPARTMENTS, REGIONS, RELATIONS, SEVERITIES, SHAPES, SIDES

#: What `schema` says in every document of this shape.
NOTICE_SCHEMA_ID = "radassist.notification/1"


@dataclass(frozen=True)
class NoticeSubject:
    """Who and what a notice is about, as the node recorded the series (DICOM values,
    "" where the images did not say)."""

    patient_id: str
    patient_name: str
    patient_birth_date: str
    patient_sex: str
    study_instance_uid: str
    accession_number: str
    study_date: str
    study_description: str
    series_instance_uid: str
    series_number: int | None
    series_description: str
    modality: str
    body_part: str
    calling_ae: str


def _lesion(number: int, lesion: Lesion) -> dict[str, Any]:
    return {
        "number": number,
        "place": None if lesion.place is None else lesion.place.to_dict(),
        "volume_ml": lesion.volume_ml,
        "abc2_volume_ml": lesion.abc2_volume_ml,
        "thickness_mm": lesion.thickness_mm,
        "longest_diameter_mm": lesion.longest_diameter_mm,
        "area_mm2": lesion.area_mm2,
        "mean_hu": lesion.mean_hu,
        "severity": lesion.severity,
        "probability": lesion.probability,
        "first_slice_number": lesion.first_slice + 1,
        "last_slice_number": lesion.last_slice + 1,
        "key_slice_number": lesion.key_slice + 1,
        "key_sop_instance_uid": lesion.key_sop_instance_uid,
        "summary": lesion.summary(),
    }


def build_notice(
    findings: Findings,
    subject: NoticeSubject,
    *,
    message_id: str,
    created_at: datetime,
    replaces: str | None,
    use_statement: str,
    clinical_use: bool,
    study_page: str | None,
    viewer: str | None,
    sr_sop_instance_uid: str | None,
    sr_series_instance_uid: str | None,
) -> dict[str, Any]:
    """The notice of one analysis (see the module's docstring and NOTICE_SCHEMA)."""
    return {
        "schema": NOTICE_SCHEMA_ID,
        "message_id": message_id,
        "status": "corrected" if replaces else "final",
        "replaces": replaces,
        "created_at": created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "patient": {
            "id": subject.patient_id,
            "name": subject.patient_name,
            "birth_date": subject.patient_birth_date,
            "sex": subject.patient_sex,
        },
        "study": {
            "study_instance_uid": subject.study_instance_uid,
            "accession_number": subject.accession_number,
            "study_date": subject.study_date,
            "study_description": subject.study_description,
        },
        "series": {
            "series_instance_uid": subject.series_instance_uid,
            "series_number": subject.series_number,
            "series_description": subject.series_description,
            "modality": subject.modality,
            "body_part": subject.body_part,
            "calling_ae": subject.calling_ae,
        },
        "result": {
            "positive": findings.positive,
            "verdict": "positive" if findings.positive else "negative",
            "study_probability": findings.study_probability,
            "threshold": findings.threshold,
            "impression": findings.impression(),
            "midline_shift_mm": findings.midline_shift_mm,
            "anatomy_read": findings.anatomy_read,
            "notes": list(findings.notes),
            "lesions": [
                _lesion(number, lesion) for number, lesion in enumerate(findings.lesions, start=1)
            ],
        },
        "model": findings.model.to_dict(),
        "clinical_use": clinical_use,
        "use_statement": use_statement,
        "links": {"study_page": study_page, "viewer": viewer},
        "report": {
            "sr_sop_instance_uid": sr_sop_instance_uid,
            "sr_series_instance_uid": sr_series_instance_uid,
        },
    }


def notice_bytes(notice: dict[str, Any]) -> bytes:
    """The document as it is stored and sent: UTF-8 JSON, keys in order, no spaces."""
    return json.dumps(notice, ensure_ascii=False, separators=(",", ":")).encode()


def read_notice(path: Path) -> dict[str, Any]:
    """A stored notice; ValueError when the file is not one."""
    notice = json.loads(path.read_bytes())
    if not isinstance(notice, dict) or notice.get("schema") != NOTICE_SCHEMA_ID:
        raise ValueError(f"{path.name} is not a {NOTICE_SCHEMA_ID} document")
    return notice


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _object(properties: dict[str, Any], description: str = "") -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }
    if description:
        schema["description"] = description
    return schema


_TEXT = {"type": "string"}
_UID = {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)*$", "maxLength": 64}
_NUMBER = {"type": "number"}
_PROBABILITY = {"type": "number", "minimum": 0, "maximum": 1}
_SLICE = {"type": "integer", "minimum": 1}

_PLACE = _object(
    {
        "side": {"enum": list(SIDES), "description": "'' where no midsagittal plane was found"},
        "compartment": {"enum": list(COMPARTMENTS)},
        "region": {"enum": list(REGIONS)},
        "relation": {"enum": list(RELATIONS)},
        "shape": {"enum": list(SHAPES), "description": "an extra-axial collection's shape"},
        "approximate": {"type": "boolean", "description": "the region is a best guess"},
    },
    "where the lesion lies (rules: docs/model-card.md)",
)

_LESION = _object(
    {
        "number": {"type": "integer", "minimum": 1},
        "place": _nullable(_PLACE),
        "volume_ml": _NUMBER,
        "abc2_volume_ml": _nullable(_NUMBER),
        "thickness_mm": _nullable(_NUMBER),
        "longest_diameter_mm": _NUMBER,
        "area_mm2": _NUMBER,
        "mean_hu": _NUMBER,
        "severity": {"enum": [*SEVERITIES, ""]},
        "probability": _PROBABILITY,
        "first_slice_number": _SLICE,
        "last_slice_number": _SLICE,
        "key_slice_number": _SLICE,
        "key_sop_instance_uid": _UID,
        "summary": _TEXT,
    },
    "one lesion, its place and measurements; slices numbered 1..N feet to head",
)

#: The JSON Schema (draft 2020-12) of a notice.
NOTICE_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://radassist.invalid/schemas/notification-1.json",
    "title": "radassist notification",
    **_object(
        {
            "schema": {"const": NOTICE_SCHEMA_ID},
            "message_id": {
                **_UID,
                "description": "the same on every retry and for every destination: the "
                "idempotency key (a receiver keeps the first it sees)",
            },
            "status": {
                "enum": ["final", "corrected"],
                "description": "corrected: a new analysis of the series replaces the one "
                "`replaces` names",
            },
            "replaces": _nullable(_UID),
            "created_at": {"type": "string", "format": "date-time"},
            "patient": _object(
                {"id": _TEXT, "name": _TEXT, "birth_date": _TEXT, "sex": _TEXT},
                "as the images name the patient (DICOM values: name as family^given)",
            ),
            "study": _object(
                {
                    "study_instance_uid": _UID,
                    "accession_number": _TEXT,
                    "study_date": _TEXT,
                    "study_description": _TEXT,
                }
            ),
            "series": _object(
                {
                    "series_instance_uid": _UID,
                    "series_number": _nullable({"type": "integer"}),
                    "series_description": _TEXT,
                    "modality": _TEXT,
                    "body_part": _TEXT,
                    "calling_ae": _TEXT,
                }
            ),
            "result": _object(
                {
                    "positive": {"type": "boolean"},
                    "verdict": {"enum": ["positive", "negative"]},
                    "study_probability": _PROBABILITY,
                    "threshold": {"type": "number", "minimum": 0},
                    "impression": _TEXT,
                    "midline_shift_mm": _nullable(
                        {**_NUMBER, "description": "+ towards the patient's left"}
                    ),
                    "anatomy_read": {"type": "boolean"},
                    "notes": {"type": "array", "items": _TEXT},
                    "lesions": {"type": "array", "items": _LESION},
                }
            ),
            "model": _object({"name": _TEXT, "version": _TEXT, "weights_sha256": _TEXT}),
            "clinical_use": {"type": "boolean"},
            "use_statement": _TEXT,
            "links": _object(
                {"study_page": _nullable(_TEXT), "viewer": _nullable(_TEXT)},
                "the study on the node's dashboard, and in its viewer",
            ),
            "report": _object(
                {
                    "sr_sop_instance_uid": _nullable(_UID),
                    "sr_series_instance_uid": _nullable(_UID),
                },
                "the DICOM SR this notice goes with",
            ),
        }
    ),
}
