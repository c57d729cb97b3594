"""FHIR destinations: each notice (assistant/delivery/notice.py) as a FHIR R4 transaction
Bundle, POSTed to the destination's FHIR base URL.

The resources are built with `fhir.resources.R4B` (FHIR 4.3.0, the R4 line's current
release): DiagnosticReport, Observation, BodyStructure and Bundle are the same in 4.3.0
as in 4.0.1, so an R4 (4.0.1) server takes them as they are. The models validate what we
build; a validation error is our bug, and is left to raise (the outbox records it as an
internal error and does not retry it).

The Bundle (docs/notifications.md, "FHIR R4 (DiagnosticReport)", says it for receivers):

- one DiagnosticReport, the analysis: status ``final`` (``amended`` for a corrected
  notice), category RAD, code LOINC 24725-4 "CT Head", the patient and the study by
  identifier, ``conclusion`` the impression, ``result`` the Observations below;
- one Observation per lesion: code SNOMED CT 1386000 "Intracranial hemorrhage", value
  "Present", ``bodySite`` the region, its laterality (and relation to the inner table)
  in a contained BodyStructure that the core ``bodySite`` extension points to (R4 has no
  laterality element on Observation.bodySite), the measurements as UCUM components;
- one Observation of the midline shift, where it was measured.

Sending it again changes nothing: every fullUrl is a uuid5 of the message_id, each
Observation is a conditional create (``ifNoneExist`` on its identifier), and the report
is a conditional create on the identifier of "this model's report of this series" (a
uuid5 of the series UID and the model name). A correction is a conditional update
(PUT ``DiagnosticReport?identifier=…``) of that same report: the receiver keeps one
report per series and model, the earlier version in its history; a late re-send of the
first notice finds the report there and leaves it alone. The earlier analysis's
Observations are left as they were (no longer in the report's ``result``): the amended
report names the new ones.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any, NamedTuple

import requests
from fhir.resources.R4B.bundle import Bundle
from pydicom.sr.coding import Code as DicomCode

from assistant import __version__
from assistant.delivery.http import USER_AGENT, origin, root_cause
from assistant.delivery.notice import read_notice
from assistant.findings import concepts
from assistant.findings.place import Place
from assistant.findings.wording import place_words
from assistant.settings import Destination
from dicom_node import SendResult

SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
UCUM = "http://unitsofmeasure.org"
#: Identifiers that are URIs (urn:oid:, urn:uuid:), as FHIR writes them.
URI = "urn:ietf:rfc:3986"
#: The DICOM UID identifier system (ImagingStudy.identifier: value urn:oid:<UID>).
DICOM_UID = "urn:dicom:uid"
#: Our own codes where no standard one exists (the SR's private scheme "99RADASSIST").
#: No CodeSystem is published at it: .invalid says so.
PRIVATE = "https://radassist.invalid/fhir/CodeSystem/radassist"
#: The core R4 extension that points a body site at a BodyStructure.
BODY_SITE_EXTENSION = "http://hl7.org/fhir/StructureDefinition/bodySite"
_V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"
_V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
_OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
_XHTML = "http://www.w3.org/1999/xhtml"
#: The uuid5 namespace of our fullUrls and identifiers.
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://radassist.invalid/fhir")


class Code(NamedTuple):
    """One coding: its system (a URI), its code and its display."""

    system: str
    code: str
    display: str


def _from_sr(code: DicomCode) -> Code:
    """A concept of assistant.findings.concepts (the SR's) as a FHIR coding."""
    systems = {"SCT": SNOMED, "DCM": DCM, "LN": LOINC, concepts.PRIVATE_SCHEME: PRIVATE}
    return Code(systems[code.scheme_designator], code.value, code.meaning)


# The SR's concepts (a site that maps them differently changes assistant/findings/
# concepts.py, and the bundle follows), then FHIR's own.
FINDING = _from_sr(concepts.FINDING)
PRESENT = _from_sr(concepts.PRESENT)
VOLUME = _from_sr(concepts.VOLUME)
ABC2_VOLUME = _from_sr(concepts.ABC2_VOLUME)
THICKNESS = _from_sr(concepts.THICKNESS)
LONG_AXIS = _from_sr(concepts.LONG_AXIS)
AREA = _from_sr(concepts.AREA)
MEAN_ATTENUATION = _from_sr(concepts.MEAN_ATTENUATION)
PROBABILITY = _from_sr(concepts.PROBABILITY)
SEVERITY = _from_sr(concepts.SEVERITY)
MIDLINE_SHIFT = _from_sr(concepts.MIDLINE_SHIFT)
MIDLINE_SHIFT_DIRECTION = _from_sr(concepts.MIDLINE_SHIFT_DIRECTION)
REGIONS: dict[str, Code] = {w: _from_sr(c) for w, c in concepts.REGIONS.items()}
LATERALITIES: dict[str, Code] = {w: _from_sr(c) for w, c in concepts.LATERALITIES.items()}
RELATIONS: dict[str, Code] = {w: _from_sr(c) for w, c in concepts.RELATIONS.items()}
SEVERITIES: dict[str, Code] = {w: _from_sr(c) for w, c in concepts.SEVERITIES.items()}
REPORT_CODE = Code(LOINC, "24725-4", "CT Head")
RADIOLOGY = Code(_V2_0074, "RAD", "Radiology")
IMAGING = Code(_OBSERVATION_CATEGORY, "imaging", "Imaging")


def _coding(code: Code) -> dict[str, str]:
    return {"system": code.system, "code": code.code, "display": code.display}


def _concept(code: Code, text: str = "") -> dict[str, Any]:
    concept: dict[str, Any] = {"coding": [_coding(code)]}
    if text:
        concept["text"] = text
    return concept


def _quantity(value: float, unit: str, digits: int) -> dict[str, Any]:
    """A UCUM quantity, `unit` its code (and its human form)."""
    return {"value": round(value, digits), "unit": unit, "system": UCUM, "code": unit}


def _urn(*parts: str) -> str:
    """urn:uuid: of a uuid5 of `parts`: the same on every build of the same notice."""
    return f"urn:uuid:{uuid.uuid5(_NAMESPACE, '/'.join(parts))}"


def report_key(notice: dict[str, Any]) -> str:
    """The identifier value (urn:uuid:) that every version of this model's report of this
    series carries: what a correction's conditional update finds the report by."""
    return _urn(notice["series"]["series_instance_uid"], notice["model"]["name"], "report")


def _fhir_date(dicom_date: str) -> str | None:
    """A DICOM DA (YYYYMMDD) as a FHIR date; None where it is empty or not a date."""
    text = dicom_date.strip()
    if len(text) != 8 or not text.isdigit():
        return None
    return f"{text[:4]}-{text[4:6]}-{text[6:]}"


def _patient(notice: dict[str, Any]) -> dict[str, Any] | None:
    """The patient by identifier (the DICOM Patient ID; the notice names no issuer, so
    the identifier has no system), with the name as display; no Patient resource is sent
    nor looked up. None where the images named nobody."""
    patient = notice["patient"]
    reference: dict[str, Any] = {"type": "Patient"}
    if patient["id"].strip():
        reference["identifier"] = {"value": patient["id"].strip()}
    name = " ".join(p for p in patient["name"].replace("^", " ").split() if p)
    if name:
        reference["display"] = name
    return reference if len(reference) > 1 else None


def _imaging_study(notice: dict[str, Any]) -> dict[str, Any]:
    uid = notice["study"]["study_instance_uid"]
    return {"type": "ImagingStudy", "identifier": {"system": DICOM_UID, "value": f"urn:oid:{uid}"}}


def _common(notice: dict[str, Any]) -> dict[str, Any]:
    """What the report and every Observation share: status, subject, times."""
    common: dict[str, Any] = {
        "status": "amended" if notice["status"] == "corrected" else "final",
        "issued": notice["created_at"],
    }
    subject = _patient(notice)
    if subject is not None:
        common["subject"] = subject
    effective = _fhir_date(notice["study"]["study_date"])
    if effective is not None:
        common["effectiveDateTime"] = effective
    return common


def _device(notice: dict[str, Any]) -> dict[str, str]:
    model = notice["model"]
    return {"display": f"{model['name']} {model['version']} (radassist {__version__})"}


def _measurement(code: Code, quantity: dict[str, Any]) -> dict[str, Any]:
    return {"code": _concept(code), "valueQuantity": quantity}


def _components(lesion: dict[str, Any]) -> list[dict[str, Any]]:
    """The lesion's measurements, as the SR has them, in UCUM units."""
    components = [_measurement(VOLUME, _quantity(lesion["volume_ml"], "mL", 2))]
    if lesion["abc2_volume_ml"] is not None:
        components.append(_measurement(ABC2_VOLUME, _quantity(lesion["abc2_volume_ml"], "mL", 2)))
    if lesion["thickness_mm"] is not None:
        components.append(_measurement(THICKNESS, _quantity(lesion["thickness_mm"], "mm", 1)))
    components += [
        _measurement(LONG_AXIS, _quantity(lesion["longest_diameter_mm"], "mm", 1)),
        _measurement(AREA, _quantity(lesion["area_mm2"], "mm2", 1)),
        _measurement(MEAN_ATTENUATION, _quantity(lesion["mean_hu"], "[hnsf'U]", 1)),
        _measurement(PROBABILITY, _quantity(100 * lesion["probability"], "%", 1)),
    ]
    if lesion["severity"]:
        components.append(
            {
                "code": _concept(SEVERITY),
                "valueCodeableConcept": _concept(SEVERITIES[lesion["severity"]]),
            }
        )
    return components


def _body_site(
    notice: dict[str, Any], place: dict[str, Any]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(Observation.bodySite, Observation.contained) of a located lesion.

    bodySite is the region (what every reader shows), its text the side and region in
    words. The side and the relation to the inner table have no element in R4's
    Observation: they are BodyStructure.locationQualifier, in a BodyStructure contained in
    the Observation that the core extension "bodySite" on bodySite points to (the DICOM
    SR's Finding Site with its Laterality and Topographical Modifier)."""
    region = REGIONS[place["region"]]
    words = place_words(Place.from_dict(place))
    site = _concept(region, words)
    qualifiers = [_concept(LATERALITIES[place["side"]])] if place["side"] else []
    qualifiers.append(_concept(RELATIONS[place["relation"]]))
    subject = _patient(notice)
    if subject is None:  # BodyStructure.patient is required: the words alone then
        return site, []
    structure = {
        "resourceType": "BodyStructure",
        "id": "site",
        "location": _concept(region),
        "locationQualifier": qualifiers,
        "description": f"{words}, {place['relation']}",
        "patient": subject,
    }
    site["extension"] = [{"url": BODY_SITE_EXTENSION, "valueReference": {"reference": "#site"}}]
    return site, [structure]


def _lesion_observation(notice: dict[str, Any], lesion: dict[str, Any], url: str) -> dict[str, Any]:
    observation: dict[str, Any] = {
        "resourceType": "Observation",
        "identifier": [{"system": URI, "value": url}],
        **_common(notice),
        "category": [_concept(IMAGING)],
        "code": _concept(FINDING),
        "valueCodeableConcept": _concept(PRESENT),
        "derivedFrom": [_imaging_study(notice)],
        "device": _device(notice),
        "note": [{"text": f"Lesion {lesion['number']}: {lesion['summary']}"}],
        "component": _components(lesion),
    }
    if lesion["place"] is not None:
        observation["bodySite"], contained = _body_site(notice, lesion["place"])
        if contained:
            observation["contained"] = contained
    return observation


def _shift_observation(notice: dict[str, Any], shift_mm: float, url: str) -> dict[str, Any]:
    """The septum's displacement (mm, always >= 0) and the side it is pushed to."""
    observation: dict[str, Any] = {
        "resourceType": "Observation",
        "identifier": [{"system": URI, "value": url}],
        **_common(notice),
        "category": [_concept(IMAGING)],
        "code": _concept(MIDLINE_SHIFT, "Midline shift"),
        "valueQuantity": _quantity(abs(shift_mm), "mm", 1),
        "derivedFrom": [_imaging_study(notice)],
        "device": _device(notice),
    }
    if round(shift_mm, 1) != 0:
        side = LATERALITIES["left" if shift_mm > 0 else "right"]
        observation["component"] = [
            {"code": _concept(MIDLINE_SHIFT_DIRECTION), "valueCodeableConcept": _concept(side)}
        ]
    return observation


def _narrative(notice: dict[str, Any]) -> dict[str, str]:
    """The report as a person reads it: impression, lesions, notes, use statement, links."""
    result = notice["result"]
    lines = [result["impression"], *(les["summary"] for les in result["lesions"])]
    lines += [*result["notes"], notice["use_statement"]]
    links = notice["links"]
    lines += [f"Study page: {links['study_page']}"] if links["study_page"] else []
    body = "".join(f"<p>{escape(line)}</p>" for line in lines if line)
    return {"status": "generated", "div": f'<div xmlns="{_XHTML}">{body}</div>'}


def _report_code(notice: dict[str, Any]) -> dict[str, Any]:
    """LOINC's "CT Head" for a CT series, and the study's description as its text."""
    text = notice["study"]["study_description"].strip() or REPORT_CODE.display
    if notice["series"]["modality"] != "CT":
        return {"text": text}
    return {"coding": [_coding(REPORT_CODE)], "text": text}


def _report(notice: dict[str, Any], results: list[str]) -> dict[str, Any]:
    identifiers = [
        {"use": "official", "system": URI, "value": f"urn:oid:{notice['message_id']}"},
        {"use": "secondary", "system": URI, "value": report_key(notice)},
    ]
    if notice["replaces"]:  # found by the earlier notice's id too
        identifiers.append({"use": "old", "system": URI, "value": f"urn:oid:{notice['replaces']}"})
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "text": _narrative(notice),
        "identifier": identifiers,
        **_common(notice),
        "category": [_concept(RADIOLOGY)],
        "code": _report_code(notice),
        "imagingStudy": [_imaging_study(notice)],
        "conclusion": notice["result"]["impression"],
    }
    if results:
        report["result"] = [{"reference": url} for url in results]
    if notice["result"]["positive"]:
        report["conclusionCode"] = [_concept(FINDING)]
    accession = notice["study"]["accession_number"].strip()
    if accession:  # the order the study was made for
        acsn = _concept(Code(_V2_0203, "ACSN", "Accession ID"))
        identifier = {"type": acsn, "value": accession}
        report["basedOn"] = [{"type": "ServiceRequest", "identifier": identifier}]
    return report


def _report_request(notice: dict[str, Any]) -> dict[str, str]:
    """A first report: created unless this model's report of the series is there (a
    re-send, or a late retry after its correction). A correction: that report updated
    (or created, where the first never arrived)."""
    condition = f"identifier={URI}|{report_key(notice)}"
    if notice["status"] == "corrected":
        return {"method": "PUT", "url": f"DiagnosticReport?{condition}"}
    return {"method": "POST", "url": "DiagnosticReport", "ifNoneExist": condition}


def build_bundle(notice: dict[str, Any]) -> Bundle:
    """The transaction Bundle of one notice (see the module's docstring): the same
    Bundle, fullUrls included, every time for the same notice."""
    message_id = notice["message_id"]
    entries: list[dict[str, Any]] = []
    for lesion in notice["result"]["lesions"]:
        url = _urn(message_id, "lesion", str(lesion["number"]))
        entries.append(_entry(url, _lesion_observation(notice, lesion, url)))
    shift = notice["result"]["midline_shift_mm"]
    if shift is not None:
        url = _urn(message_id, "midline-shift")
        entries.append(_entry(url, _shift_observation(notice, shift, url)))
    report = _report(notice, [entry["fullUrl"] for entry in entries])
    report_url = _urn(message_id, "report")
    entries.insert(
        0, {"fullUrl": report_url, "resource": report, "request": _report_request(notice)}
    )
    return Bundle.model_validate(
        {
            "resourceType": "Bundle",
            "identifier": {"system": URI, "value": f"urn:oid:{message_id}"},
            "type": "transaction",
            "timestamp": notice["created_at"],
            "entry": entries,
        }
    )


def _entry(url: str, observation: dict[str, Any]) -> dict[str, Any]:
    """An Observation created once: a re-send finds it by its identifier."""
    request = {"method": "POST", "url": "Observation", "ifNoneExist": f"identifier={URI}|{url}"}
    return {"fullUrl": url, "resource": observation, "request": request}


# -- sending -------------------------------------------------------------------------------

#: Answers that mean "not now": retried by the outbox, as 5xx are. 409 is FHIR's
#: version conflict (two writers at once): the same transaction goes through later.
RETRIED_STATUSES = frozenset({408, 409, 429})
#: How much of an answer is read: an OperationOutcome, a transaction-response.
_ANSWER_BYTES = 256 * 1024
_DETAIL_CHARS = 300


class FhirSender:
    """POST each notice, as a transaction Bundle (`build_bundle`), to a FHIR destination's
    base URL, with its bearer token when it has one.

    Answers, as the outbox takes them: 2xx is "sent" (the detail names the report the
    server keeps, from its transaction-response); 408, 409, 429, 5xx, a refused
    connection and no answer within `timeout_seconds` are "failed" (retried with
    back-off); 401, 403 and every other 4xx are "rejected" (sent again, the same
    transaction would be refused again), with what the server's OperationOutcome says,
    so the study page shows why. Redirects are not followed (a notice names a patient:
    it goes to the configured URL or nowhere) and are "rejected"."""

    def __call__(self, paths: Sequence[Path], destination: Destination) -> list[SendResult]:
        """One SendResult per path, in order; never raises for a server that fails."""
        with requests.Session() as session:
            return [self._send(session, path, destination) for path in paths]

    def _send(self, session: requests.Session, path: Path, destination: Destination) -> SendResult:
        try:
            notice = read_notice(path)
        except OSError as exc:  # the file may be back (shared storage): retried
            return SendResult(path, None, "failed", f"cannot read {path.name}: {exc.strerror}")
        except ValueError as exc:  # not JSON, or not a notice: it never will be
            return SendResult(path, None, "rejected", f"not sent: {exc}")
        # A notice the models refuse is our bug: it raises, and the outbox says so.
        body = build_bundle(notice).model_dump_json().encode()
        headers = {
            "Content-Type": "application/fhir+json",
            "Accept": "application/fhir+json",
            "Prefer": "return=minimal",
            "User-Agent": USER_AGENT,
        }
        if destination.token:
            headers["Authorization"] = f"Bearer {destination.token}"
        where = origin(destination.url)
        try:
            with session.post(
                destination.url,
                data=body,
                headers=headers,
                timeout=destination.timeout_seconds,
                allow_redirects=False,
                stream=True,
            ) as response:
                code = response.status_code
                answer = _read(response)
                location = response.headers.get("Location", "")
        except requests.Timeout:
            detail = f"no answer from {where} within {destination.timeout_seconds:g} s"
            return SendResult(path, None, "failed", detail)
        except requests.RequestException as exc:
            return SendResult(path, None, "failed", f"cannot reach {where}: {root_cause(exc)}")
        return _outcome(path, code, answer, location)


def _read(response: requests.Response) -> bytes:
    """The start of the answer (all of any answer a FHIR server gives us)."""
    try:
        return response.raw.read(_ANSWER_BYTES, decode_content=True) or b""
    except (requests.RequestException, OSError):  # the answer stopped: the status stands
        return b""


def _outcome(path: Path, code: int, answer: bytes, location: str) -> SendResult:
    """The outbox's outcome of the server's answer."""
    if 200 <= code < 300:
        return SendResult(path, code, "sent", _report_location(answer))
    said = _said(answer)
    if code in RETRIED_STATUSES or code >= 500:
        return SendResult(path, code, "failed", f"HTTP {code}{said}")
    if 300 <= code < 400:
        to = f" to {origin(location)}" if location else ""
        detail = f"HTTP {code}: redirected{to}, not followed; set the destination's url"
        return SendResult(path, code, "rejected", detail)
    if code in (401, 403):
        why = "the token was refused" if code == 401 else "the token may not write here"
        return SendResult(path, code, "rejected", f"HTTP {code} ({why}){said}")
    if 400 <= code < 500:
        return SendResult(path, code, "rejected", f"refused with HTTP {code}{said}")
    return SendResult(path, code, "failed", f"unexpected HTTP {code}{said}")


def _json(answer: bytes) -> dict[str, Any] | None:
    try:
        document = json.loads(answer)
    except ValueError:  # not JSON (an HTML error page, a cut-off answer)
        return None
    return document if isinstance(document, dict) else None


def _said(answer: bytes) -> str:
    """ ": <what the server said>": its OperationOutcome's diagnostics (or the issues'
    details, or codes), else the start of its answer on one line; "" for nothing."""
    document = _json(answer)
    if document is not None and document.get("resourceType") == "OperationOutcome":
        parts = []
        for issue in document.get("issue") or []:
            if isinstance(issue, dict):
                details = issue.get("details")
                text = details.get("text") if isinstance(details, dict) else None
                parts.append(str(issue.get("diagnostics") or text or issue.get("code") or ""))
        text = "; ".join(p for p in parts if p)
    else:
        text = answer.decode("utf-8", errors="replace")
    text = " ".join(text.split())
    if len(text) > _DETAIL_CHARS:
        text = text[: _DETAIL_CHARS - 1] + "…"
    return f": {text}" if text else ""


def _report_location(answer: bytes) -> str:
    """Where the server keeps the report ("DiagnosticReport/123/_history/1"): the first
    entry of its transaction-response, our first entry being the report; "" if unsaid."""
    document = _json(answer)
    entries = document.get("entry") if document is not None else None
    if not isinstance(entries, list) or not entries or not isinstance(entries[0], dict):
        return ""
    response = entries[0].get("response")
    if not isinstance(response, dict):
        return ""
    return " ".join(str(response.get(k) or "") for k in ("location", "status")).strip()


__all__ = ["RETRIED_STATUSES", "FhirSender", "build_bundle", "report_key"]
