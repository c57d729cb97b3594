"""The OpenAPI 3.1 document of /api/v1, written by hand next to the routes it describes
(tests check that every route is in it and every path in it is a route)."""

from __future__ import annotations

from typing import Any

from web.studies import STATUSES, VERDICTS


def _get(
    summary: str, schema: str, parameters: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {
        "summary": summary,
        "parameters": parameters or [],
        "responses": {
            "200": {
                "description": "OK",
                "content": {
                    "application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}
                },
            },
            "401": {"$ref": "#/components/responses/Unauthorized"},
        },
    }


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


_STUDY_UID = {"name": "study_uid", "in": "path", "required": True, "schema": {"type": "string"}}


def openapi_document() -> dict[str, Any]:
    study_filters = [
        _query("from", {"type": "string", "format": "date"}, "received on or after"),
        _query("to", {"type": "string", "format": "date"}, "received on or before"),
        _query("status", {"type": "string", "enum": list(STATUSES)}, "study status"),
        _query("verdict", {"type": "string", "enum": list(VERDICTS)}, "AI verdict"),
        _query("q", {"type": "string"}, "start of a patient ID or accession number"),
        _query("page", {"type": "integer", "minimum": 1}, "page number"),
        _query("per_page", {"type": "integer", "minimum": 1, "maximum": 200}, "studies per page"),
    ]
    nullable_number = {"type": ["number", "null"]}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "radassist API",
            "version": "1",
            "description": "Studies, findings, feedback and jobs of the radassist AI node. "
            "Log in with a session cookie (writes then need an X-CSRFToken header) or HTTP Basic.",
        },
        "servers": [{"url": "/api/v1"}],
        "security": [{"basic": []}, {"session": []}],
        "paths": {
            "/studies": {
                "get": _get("Studies, positive first, then newest", "StudyPage", study_filters)
            },
            "/studies/{study_uid}": {
                "get": _get("One study with its series", "Study", [_STUDY_UID])
            },
            "/studies/{study_uid}/findings": {
                "get": _get(
                    "The latest analysis of each series of a study", "Findings", [_STUDY_UID]
                )
            },
            "/studies/{study_uid}/feedback": {
                "get": _get("Feedback given on the study's findings", "FeedbackList", [_STUDY_UID]),
                "post": {
                    "summary": "Accept or reject a finding, with a comment",
                    "parameters": [_STUDY_UID],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/FeedbackIn"}
                            }
                        },
                    },
                    "responses": {
                        "201": {
                            "description": "Stored",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "properties": {"id": {"type": "integer"}},
                                    }
                                }
                            },
                        },
                        "400": {"description": "Invalid body"},
                        "401": {"$ref": "#/components/responses/Unauthorized"},
                        "404": {"description": "No such job or finding in this study"},
                    },
                },
            },
            "/jobs": {
                "get": _get(
                    "Analysis jobs, newest first",
                    "JobList",
                    [
                        _query(
                            "state",
                            {
                                "type": "string",
                                "enum": ["queued", "running", "done", "skipped", "failed"],
                            },
                            "job state",
                        ),
                        _query(
                            "limit", {"type": "integer", "minimum": 1, "maximum": 500}, "how many"
                        ),
                    ],
                )
            },
            "/openapi.json": {
                "get": {"summary": "This document", "responses": {"200": {"description": "OK"}}}
            },
        },
        "components": {
            "securitySchemes": {
                "basic": {"type": "http", "scheme": "basic"},
                "session": {"type": "apiKey", "in": "cookie", "name": "radassist_session"},
            },
            "responses": {"Unauthorized": {"description": "Log in first"}},
            "schemas": {
                "Study": {
                    "type": "object",
                    "properties": {
                        "study_instance_uid": {"type": "string"},
                        "patient_id": {"type": "string"},
                        "patient_name": {"type": "string"},
                        "accession_number": {"type": "string"},
                        "study_date": {"type": "string"},
                        "description": {"type": "string"},
                        "received_at": {"type": "string", "format": "date-time"},
                        "status": {"type": "string", "enum": list(STATUSES)},
                        "verdict": {"type": "string", "enum": list(VERDICTS)},
                        "probability": nullable_number,
                        "finding": {
                            "type": "string",
                            "description": "The most severe result of its series, "
                            "'S<series number>: <finding>' ('' before any analysis)",
                        },
                        "series": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "series_instance_uid": {"type": "string"},
                                    "series_number": {"type": ["integer", "null"]},
                                    "description": {"type": "string"},
                                    "modality": {"type": "string"},
                                    "instances": {"type": "integer"},
                                    "status": {"type": "string", "enum": list(STATUSES)},
                                    "reason": {"type": "string"},
                                    "job_id": {"type": ["integer", "null"]},
                                    "instance_changes": {
                                        "type": "object",
                                        "description": "Instances sent again with other "
                                        "content, by what became of them (replaced, "
                                        "kept-first, refused)",
                                        "additionalProperties": {"type": "integer"},
                                    },
                                },
                            },
                        },
                    },
                    "required": ["study_instance_uid", "status", "verdict"],
                },
                "StudyPage": {
                    "type": "object",
                    "properties": {
                        "total": {"type": "integer"},
                        "page": {"type": "integer"},
                        "per_page": {"type": "integer"},
                        "studies": {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/Study"},
                        },
                    },
                },
                "Findings": {
                    "type": "object",
                    "properties": {
                        "study_instance_uid": {"type": "string"},
                        "analyses": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "job_id": {"type": "integer"},
                                    "series_instance_uid": {"type": "string"},
                                    "series_number": {"type": ["integer", "null"]},
                                    "series_description": {"type": "string"},
                                    "model": {"type": "string"},
                                    "positive": {"type": ["boolean", "null"]},
                                    "probability": nullable_number,
                                    "summary": {"type": "string"},
                                    "notes": {"type": "array", "items": {"type": "string"}},
                                    "lesions": {"type": "array", "items": {"type": "object"}},
                                    "slices": {"type": "array", "items": {"type": "object"}},
                                    "results": {"type": "array", "items": {"type": "object"}},
                                },
                            },
                        },
                    },
                },
                "FeedbackIn": {
                    "type": "object",
                    "properties": {
                        "job_id": {"type": "integer"},
                        "finding": {
                            "oneOf": [{"const": "study"}, {"type": "integer", "minimum": 0}]
                        },
                        "verdict": {"type": "string", "enum": ["accept", "reject"]},
                        "comment": {"type": "string", "maxLength": 2000},
                    },
                    "required": ["job_id", "verdict"],
                },
                "FeedbackList": {
                    "type": "object",
                    "properties": {"feedback": {"type": "array", "items": {"type": "object"}}},
                },
                "JobList": {
                    "type": "object",
                    "properties": {"jobs": {"type": "array", "items": {"type": "object"}}},
                },
            },
        },
    }
