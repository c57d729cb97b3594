"""The OpenAPI 3.1 document of /api/v1, written by hand next to the routes it describes.
The tests check it with openapi-spec-validator, that every route is in it and every path
in it is a route, and every answer the API gives against the schema it names here (with
no field left undocumented). The limits the routes enforce are defined here, once."""

from __future__ import annotations

from typing import Any

from assistant.db import DeliveryState, FeedbackVerdict, JobState, ModelState, ResultKind
from assistant.delivery.notice import NOTICE_SCHEMA
from assistant.findings.place import COMPARTMENTS, REGIONS, RELATIONS, SEVERITIES, SHAPES, SIDES
from web.studies import DELIVERY_SUMMARIES, STATUSES, VERDICTS

#: Most studies on one page, and most jobs in one list.
PER_PAGE_MAX = 200
LIMIT_MAX = 500
JOB_STATES = tuple(s.value for s in JobState)
FEEDBACK_VERDICTS = tuple(v.value for v in FeedbackVerdict)

_DESCRIPTION = """\
Studies, findings, feedback, jobs and models of the radassist AI node. Log in with a session
cookie (writes then need an X-CSRFToken header) or HTTP Basic.

**Errors.** Every answer other than success, under /api/v1, has the `Error` body: what
is wrong, and for a bad value the `parameter` it came in and what is allowed. A query
value that is not allowed is a 400, never quietly replaced by one that is.

**Slices.** A slice is named by its `slice_number`, counted from 1 along the stack as the
model read it (the dashboard's "slice 25" is `slice_number` 25), with its SOP Instance
UID and, for a frame of a multi-frame object, its frame number (from 1) beside it.

**Reading.** An analysis that is `done` says first its `impression`: one plain line, as
a radiologist would dictate it (the largest lesion's severity, side, region and kind, its
volume by mask and by ABC/2, an extra-axial collection's thickness, then the midline
shift), the line the dashboard and `radassist predict` show. `midline_shift_mm` is the
septum pellucidum's displacement (mm, positive towards the patient's left), null where
it was not measured; `anatomy_read` is false where the head's anatomy was not read at all
(a negative study, or an analysis from before lesions were located: its lesions' `place`
is then null).

**Delivery.** An analysis that is `done` has written its results (SR, KOS, SEG); where
they went is its `delivery`: `pending` (not yet tried, or being sent), `failing` (an
attempt failed; the next is due at `next_attempt_at`), `failed` (given up: the series
status is then `failed`, "delivery failed"), `sent` (every object acknowledged by every
destination: the series status is `delivered`), or `none` (nothing to deliver).

**Models.** Several models may read one series: each analysis names its model, the
weights' sha256 and whether the model was in `shadow` when the job was made. A shadow
analysis is kept and shown, never sent, and never makes a study's or series' verdict or
delivery (those come from the latest analysis by a model not in shadow; a series that
only models in shadow read takes only its status from theirs).
"""


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _operation(
    summary: str,
    schema: str,
    parameters: list[dict[str, Any]] | None = None,
    *,
    status: str = "200",
    errors: tuple[str, ...] = (),
    body: str | None = None,
) -> dict[str, Any]:
    """An operation answering `schema` with `status`; `errors`: the error statuses it
    documents beside 401 and the default (each an Error body)."""
    responses = {status: _json(_ref("schemas", schema))}
    for code in errors:
        responses[code] = _ref("responses", {"400": "BadRequest", "404": "NotFound"}[code])
    responses["401"] = _ref("responses", "Unauthorized")
    responses["default"] = _ref("responses", "Error")
    operation: dict[str, Any] = {
        "summary": summary,
        "parameters": parameters or [],
        "responses": responses,
    }
    if body:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref("schemas", body)}},
        }
    return operation


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


_STUDY_UID = {
    "name": "study_uid",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "Study Instance UID",
}


def _paths() -> dict[str, Any]:
    empty_is_any = " (empty: any)"
    study_filters = [
        _query("from", {"type": "string", "format": "date"}, "received on or after, YYYY-MM-DD"),
        _query("to", {"type": "string", "format": "date"}, "received on or before, YYYY-MM-DD"),
        _query("status", {"type": "string", "enum": list(STATUSES)}, "study status" + empty_is_any),
        _query("verdict", {"type": "string", "enum": list(VERDICTS)}, "AI verdict" + empty_is_any),
        _query(
            "q",
            {"type": "string", "maxLength": 64},
            "start of a patient ID or accession number (at most 64 characters)",
        ),
        _query("page", {"type": "integer", "minimum": 1, "default": 1}, "page number"),
        _query(
            "per_page",
            {"type": "integer", "minimum": 1, "maximum": PER_PAGE_MAX, "default": 50},
            "studies per page",
        ),
    ]
    job_filters = [
        _query("state", {"type": "string", "enum": list(JOB_STATES)}, "job state" + empty_is_any),
        _query(
            "limit",
            {"type": "integer", "minimum": 1, "maximum": LIMIT_MAX, "default": 50},
            "how many, newest first",
        ),
    ]
    return {
        "/studies": {
            "get": _operation(
                "Studies, positive first, then newest", "StudyPage", study_filters, errors=("400",)
            )
        },
        "/studies/{study_uid}": {
            "get": _operation("One study with its series", "Study", [_STUDY_UID], errors=("404",))
        },
        "/studies/{study_uid}/findings": {
            "get": _operation(
                "The latest analysis of each model of each series of a study (models in "
                "shadow last, marked `shadow`)",
                "Findings",
                [_STUDY_UID],
                errors=("404",),
            )
        },
        "/studies/{study_uid}/feedback": {
            "get": _operation(
                "Feedback given on the study's findings",
                "FeedbackList",
                [_STUDY_UID],
                errors=("404",),
            ),
            "post": _operation(
                "Accept or reject a finding, with a comment",
                "Created",
                [_STUDY_UID],
                status="201",
                errors=("400", "404"),
                body="FeedbackIn",
            ),
        },
        "/jobs": {
            "get": _operation(
                "Analysis jobs, newest first", "JobList", job_filters, errors=("400",)
            )
        },
        "/models": {
            "get": _operation(
                "The model registry (every version with its state) and the routes", "ModelList"
            )
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": {
                    "200": _json({"type": "object"}),
                    "401": _ref("responses", "Unauthorized"),
                },
            }
        },
    }


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "type": [schema["type"], "null"]}


def _object(properties: dict[str, Any], description: str = "") -> dict[str, Any]:
    """An object whose every property is always there (null where the type allows)."""
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "required": list(properties),
    }
    if description:
        schema["description"] = description
    return schema


_STRING = {"type": "string"}
_INTEGER = {"type": "integer"}
_PROBABILITY = {"type": "number", "minimum": 0, "maximum": 1}
_TIME = {"type": "string", "format": "date-time"}
_UID = {"type": "string", "description": "a DICOM UID"}
_SLICE_NUMBER = {
    "type": "integer",
    "minimum": 1,
    "description": "the slice's number, from 1 along the stack as the model read it",
}
_FRAME_NUMBER = {
    "type": ["integer", "null"],
    "minimum": 1,
    "description": "its frame (from 1) when the slice is a frame of a multi-frame object, "
    "else null",
}


_MODEL_OF_JOB = {
    "shadow": {
        "type": "boolean",
        "description": "run by a model in shadow: its results are kept and shown, never "
        "sent, and never make a study's verdict or delivery",
    },
    "weights_sha256": {
        "type": ["string", "null"],
        "description": "the sha256 of the model's weights (the registry's, else the "
        "findings record's); null where neither says",
    },
}


def _slice_ref(prefix: str, which: str) -> dict[str, Any]:
    return {
        f"{prefix}slice_number": {**_SLICE_NUMBER, "description": f"{which}: slice number, from 1"},
        f"{prefix}sop_instance_uid": {**_UID, "description": f"{which}: SOP Instance UID"},
        f"{prefix}frame_number": _FRAME_NUMBER,
    }


_IMPRESSION_EXAMPLE = (
    "Small right parietal intraparenchymal hyperdense lesion, 8.0 mL (ABC/2 7.5 mL), "
    "no midline shift."
)


def _reading(whose: str) -> dict[str, Any]:
    """`impression`, `midline_shift_mm` and `anatomy_read` of `whose` analysis."""
    return {
        "impression": {
            "type": ["string", "null"],
            "description": f"{whose} impression line; null before it is done",
            "examples": [
                _IMPRESSION_EXAMPLE,
                "No hyperdense lesion (probability 3.1 %).",
            ],
        },
        "midline_shift_mm": {
            "type": ["number", "null"],
            "description": "the septum pellucidum's displacement from the midsagittal plane "
            "(mm, positive towards the patient's left); null where not measured",
            "examples": [4.2, -0.6],
        },
        "anatomy_read": {
            "type": "boolean",
            "description": "whether the head's anatomy was read (lesions located, the shift "
            "looked for); false for a negative study and for analyses before version 3 of "
            "the findings record",
        },
    }


def _study_schemas() -> dict[str, Any]:
    series = _object(
        {
            "series_instance_uid": _UID,
            "series_number": _nullable(_INTEGER),
            "description": _STRING,
            "modality": _STRING,
            "instances": _INTEGER,
            "status": {"type": "string", "enum": list(STATUSES)},
            "reason": {**_STRING, "description": "why it was skipped or failed, or the verdict"},
            "job_id": {**_nullable(_INTEGER), "description": "its latest analysis"},
            "delivery": {
                "type": "string",
                "enum": list(DELIVERY_SUMMARIES),
                "description": "its latest analysis's results at their destinations",
            },
            "instance_changes": {
                "type": "object",
                "description": "Instances sent again with other content, by what became of "
                "them (replaced, kept-first, refused)",
                "additionalProperties": _INTEGER,
            },
            **_reading("its latest analysis's"),
        }
    )
    study = _object(
        {
            "study_instance_uid": _UID,
            "patient_id": _STRING,
            "patient_name": {**_STRING, "description": "as sent, '^' between name parts"},
            "patient_sex": {**_STRING, "description": "Patient's Sex as sent: F, M, O or ''"},
            "patient_age": {
                "type": "string",
                "pattern": r"^(\d+ (d|mo|y))?$",
                "description": "age at the study date ('67 y', '8 mo', '12 d'); '' when "
                "the birth date or study date is unknown",
            },
            "accession_number": _STRING,
            "study_date": {**_STRING, "description": "DICOM DA (YYYYMMDD) as sent"},
            "description": _STRING,
            "received_at": _TIME,
            "status": {"type": "string", "enum": list(STATUSES)},
            "verdict": {"type": "string", "enum": list(VERDICTS)},
            "probability": _nullable({"type": "number"}),
            "finding": {
                "type": "string",
                "description": "The impression of its most severe series (positive first, "
                "then the more probable), 'S<series number>: <impression>', "
                "'S<series number> (incomplete volume): <impression>' where that analysis "
                "read a volume with a hole ('' before any analysis)",
                "examples": [f"S2: {_IMPRESSION_EXAMPLE}"],
            },
            **_reading("the most severe series' (the one `finding` names)"),
        }
    )
    with_series = {
        **study,
        "properties": {**study["properties"], "series": {"type": "array", "items": series}},
        "required": [*study["required"], "series"],
    }
    return {
        "StudySummary": study,
        "Study": with_series,
        "StudyPage": _object(
            {
                "total": _INTEGER,
                "page": _INTEGER,
                "per_page": _INTEGER,
                "studies": {"type": "array", "items": _ref("schemas", "StudySummary")},
            }
        ),
    }


def _analysis_schemas() -> dict[str, Any]:
    lesion = _object(
        {
            "index": {
                "type": "integer",
                "minimum": 0,
                "description": "its place in `lesions`, from 0: what feedback's `finding` names",
            },
            **_slice_ref("first_", "its first slice"),
            **_slice_ref("last_", "its last slice"),
            **_slice_ref("key_", "the slice it is outlined and measured on"),
            "outline": {
                "type": "array",
                "description": "closed polygon on the key slice: [column, row] in its pixels",
                "items": {
                    "type": "array",
                    "items": {"type": "number"},
                    "minItems": 2,
                    "maxItems": 2,
                },
            },
            "area_mm2": {"type": "number", "minimum": 0},
            "longest_diameter_mm": {"type": "number", "minimum": 0},
            "volume_ml": {"type": "number", "minimum": 0},
            "mean_hu": {"type": "number"},
            "probability": _PROBABILITY,
            "label": _INTEGER,
            "summary": {**_STRING, "description": "the line the reports carry"},
            "place": {
                "anyOf": [_ref("schemas", "Place"), {"type": "null"}],
                "description": "where it lies; null where it was not located (analyses "
                "before version 3 of the findings record)",
            },
            "abc2_volume_ml": {
                "type": ["number", "null"],
                "minimum": 0,
                "description": "A·B·C/2 (mL), as measured at a console: A its longest axial "
                "diameter, B perpendicular to A on that slice, C its craniocaudal extent; "
                "null where not measured",
            },
            "thickness_mm": {
                "type": ["number", "null"],
                "minimum": 0,
                "description": "an extra-axial collection's greatest thickness (mm); null "
                "for other lesions and where not measured",
            },
            "severity": {
                "type": "string",
                "enum": [*SEVERITIES, ""],
                "description": "its size band (docs/model-card.md); '' where not rated",
            },
        }
    )
    place = _object(
        {
            "side": {
                "type": "string",
                "enum": list(SIDES),
                "description": "the side of the midsagittal plane ('' where none was fitted)",
            },
            "compartment": {"type": "string", "enum": list(COMPARTMENTS)},
            "region": {"type": "string", "enum": list(REGIONS)},
            "relation": {
                "type": "string",
                "enum": list(RELATIONS),
                "description": "within the parenchyma, or against the skull's inner table",
            },
            "shape": {
                "type": "string",
                "enum": list(SHAPES),
                "description": "an extra-axial collection's shape on its largest slice "
                "('' for an intra-axial lesion)",
            },
            "approximate": {
                "type": "boolean",
                "description": "true where the region is a best guess (a rule near its "
                "limit, or too little anatomy in the series)",
            },
        },
        "Where a lesion lies, in a radiologist's terms",
    )
    place["examples"] = [
        {
            "side": "right",
            "compartment": "supratentorial",
            "region": "parietal",
            "relation": "intra-axial",
            "shape": "",
            "approximate": False,
        }
    ]
    slice_ = _object(
        {
            "slice_number": _SLICE_NUMBER,
            "sop_instance_uid": _UID,
            "frame_number": _FRAME_NUMBER,
            "probability": _PROBABILITY,
            "flagged": {"type": "boolean", "description": "in the key-object selection"},
        }
    )
    delivery = _object(
        {
            "id": _INTEGER,
            "destination": {**_STRING, "description": "the destination's name in settings"},
            "state": {"type": "string", "enum": [s.value for s in DeliveryState]},
            "attempts": {**_INTEGER, "minimum": 0},
            "last_error": {**_STRING, "description": "what the last attempt met ('' if none)"},
            "next_attempt_at": {
                **_nullable(_TIME),
                "description": "when it is tried next, while pending; else null",
            },
            "peer_status": {
                **_nullable(_INTEGER),
                "description": "the peer's DIMSE or HTTP status of the last attempt",
            },
            "sent_at": _nullable(_TIME),
        }
    )
    result = _object(
        {
            "kind": {"type": "string", "enum": [k.value for k in ResultKind]},
            "sop_instance_uid": _UID,
            "deliveries": {"type": "array", "items": _ref("schemas", "Delivery")},
        },
        "A DICOM object the analysis wrote, and its delivery to each destination",
    )
    analysis = _object(
        {
            "job_id": _INTEGER,
            "series_instance_uid": _UID,
            "series_number": _nullable(_INTEGER),
            "series_description": _STRING,
            "model": {**_STRING, "description": "name and version"},
            **_MODEL_OF_JOB,
            "state": {"type": "string", "enum": list(JOB_STATES)},
            "reason": {**_STRING, "description": "why it was skipped or failed"},
            "delivery": {
                "type": "string",
                "enum": list(DELIVERY_SUMMARIES),
                "description": "its results at their destinations (see the introduction)",
            },
            "positive": _nullable({"type": "boolean"}),
            "probability": _nullable(_PROBABILITY),
            "summary": _STRING,
            **_reading("its"),
            "notes": {"type": "array", "items": _STRING},
            "lesions": {"type": "array", "items": _ref("schemas", "Lesion")},
            "slices": {"type": "array", "items": _ref("schemas", "Slice")},
            "results": {"type": "array", "items": _ref("schemas", "Result")},
        }
    )
    return {
        "Lesion": lesion,
        "Place": place,
        "Slice": slice_,
        "Delivery": delivery,
        "Result": result,
        "Analysis": analysis,
        "Findings": _object(
            {
                "study_instance_uid": _UID,
                "analyses": {"type": "array", "items": _ref("schemas", "Analysis")},
            }
        ),
    }


_FINDING = {
    "oneOf": [{"const": "study"}, {"type": "integer", "minimum": 0}],
    "description": "'study' for the verdict, or a lesion's `index`",
}


def _other_schemas() -> dict[str, Any]:
    feedback = _object(
        {
            "id": _INTEGER,
            "job_id": _INTEGER,
            "finding": _FINDING,
            "verdict": {"type": "string", "enum": list(FEEDBACK_VERDICTS)},
            "first_slice": _nullable(_INTEGER),
            "last_slice": _nullable(_INTEGER),
            "comment": _STRING,
            "username": _STRING,
            "created_at": _TIME,
        }
    )
    job = _object(
        {
            "id": _INTEGER,
            "series_instance_uid": _UID,
            "state": {"type": "string", "enum": list(JOB_STATES)},
            "reason": _STRING,
            "delivery": {"type": "string", "enum": list(DELIVERY_SUMMARIES)},
            "model": _STRING,
            **_MODEL_OF_JOB,
            "attempts": _INTEGER,
            "created_at": _TIME,
            "started_at": _nullable(_TIME),
            "finished_at": _nullable(_TIME),
            "inference_seconds": _nullable({"type": "number"}),
            "positive": _nullable({"type": "boolean"}),
            "probability": _nullable(_PROBABILITY),
            **_reading("its"),
        }
    )
    error = {
        "type": "object",
        "description": "Every answer other than success",
        "properties": {
            "error": {**_STRING, "description": "what is wrong, in words"},
            "parameter": {
                **_STRING,
                "description": "the query parameter, path parameter or body field at fault",
            },
            "value": {**_STRING, "description": "the value sent (cut at 200 characters)"},
            "allowed": {
                "type": "array",
                "items": _STRING,
                "description": "the values allowed (methods, for a 405)",
            },
            "minimum": _INTEGER,
            "maximum": _INTEGER,
        },
        "required": ["error"],
    }
    return {
        "Feedback": feedback,
        "FeedbackIn": {
            "type": "object",
            "properties": {
                "job_id": _INTEGER,
                "finding": {**_FINDING, "default": "study"},
                "verdict": {
                    "type": "string",
                    "enum": list(FEEDBACK_VERDICTS),
                    "description": "missed: a finding the model did not report (finding "
                    "'study', with first_slice and last_slice)",
                },
                "first_slice": {"type": "integer", "minimum": 1},
                "last_slice": {"type": "integer", "minimum": 1},
                "comment": {"type": "string", "maxLength": 2000},
            },
            "required": ["job_id", "verdict"],
        },
        "FeedbackList": _object(
            {"feedback": {"type": "array", "items": _ref("schemas", "Feedback")}}
        ),
        "Created": _object({"id": _INTEGER}),
        "Job": job,
        "JobList": _object({"jobs": {"type": "array", "items": _ref("schemas", "Job")}}),
        "Error": error,
    }


def _model_schemas() -> dict[str, Any]:
    """The registry's entries (`radassist model list --json`, less the folder) and the
    routes (`radassist route list`)."""
    window = _object(
        {"name": _STRING, "center": {"type": "number"}, "width": {"type": "number"}},
        "A CT window (HU) the model reads as one input channel",
    )
    model = _object(
        {
            "name": _STRING,
            "version": _STRING,
            "state": {
                "type": "string",
                "enum": [s.value for s in ModelState],
                "description": "live: reads and its results are sent; shadow: reads, its "
                "results are kept and compared, never sent; retired: reads nothing",
            },
            "format": {**_STRING, "description": "state_dict or torchscript"},
            "weights_sha256": _STRING,
            "parent": {**_STRING, "description": "name:version it was fine-tuned from, or ''"},
            "classes": {"type": ["array", "null"], "items": _STRING},
            "input": _object(
                {
                    "image_size": {"type": ["integer", "null"]},
                    "windows": {"type": ["array", "null"], "items": window},
                    "input_mask": _STRING,
                }
            ),
            "threshold": {
                "type": ["number", "null"],
                "description": "study probability at or above which a study is positive",
            },
            "training": {"type": "object", "description": "the card's training facts"},
            "metrics": {"type": "object", "description": "the card's metrics, by split"},
            "clinical_use": {"type": "boolean"},
            "added_at": _TIME,
            "added_by": _STRING,
            "state_changed_at": _TIME,
            "state_changed_by": _STRING,
        }
    )
    texts = {"type": "array", "items": _STRING}
    route = _object(
        {
            "name": _STRING,
            "model": {**_STRING, "description": "the model name it sends series to"},
            "modalities": texts,
            "series_description_patterns": {
                **texts,
                "description": "shell-style, case-insensitive",
            },
            "body_part_patterns": {**texts, "description": "shell-style, case-insensitive"},
            "calling_ae_titles": texts,
            "min_slice_thickness_mm": {"type": ["number", "null"]},
            "max_slice_thickness_mm": {"type": ["number", "null"]},
            "conditions": {**_STRING, "description": "the conditions in one line"},
        },
        "Series that meet every condition set go to the model's live and shadow versions",
    )
    return {
        "Model": model,
        "Route": route,
        "ModelList": _object(
            {
                "models": {"type": "array", "items": _ref("schemas", "Model")},
                "routes": {"type": "array", "items": _ref("schemas", "Route")},
            }
        ),
    }


def _notification_schema() -> dict[str, Any]:
    """The document webhook destinations are POSTed (assistant/delivery/notice.py; also
    docs/notification.schema.json): not served by this API, described here for the
    receivers that integrate with both."""
    schema = {k: v for k, v in NOTICE_SCHEMA.items() if not k.startswith("$")}
    schema["description"] = (
        "What a webhook destination receives (POST, signed; see docs/notifications.md). "
        "The same document is translated into HL7 v2 ORU^R01 and FHIR R4 bundles."
    )
    return schema


def openapi_document() -> dict[str, Any]:
    error_body = _ref("schemas", "Error")
    return {
        "openapi": "3.1.0",
        "info": {"title": "radassist API", "version": "1", "description": _DESCRIPTION},
        "servers": [{"url": "/api/v1"}],
        "security": [{"basic": []}, {"session": []}],
        "paths": _paths(),
        "components": {
            "securitySchemes": {
                "basic": {"type": "http", "scheme": "basic"},
                "session": {"type": "apiKey", "in": "cookie", "name": "radassist_session"},
            },
            "responses": {
                "BadRequest": _json(error_body, "A query value or body field is not allowed"),
                "Unauthorized": _json(error_body, "Log in first"),
                "NotFound": _json(error_body, "No such study here"),
                "Error": _json(error_body, "Refused (403, 405, 413, 429…) or failed"),
            },
            "schemas": {
                **_study_schemas(),
                **_analysis_schemas(),
                **_other_schemas(),
                **_model_schemas(),
                "Notification": _notification_schema(),
            },
        },
    }
