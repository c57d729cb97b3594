"""FHIR destinations: a notice as an R4 transaction Bundle (a DiagnosticReport and its
Observations) that the R4B models read back, sent to a real HTTP server once, corrected
in place, refused for a wrong token, retried when the server is away."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.observation import Observation

from assistant.delivery.fhir_report import FhirSender, build_bundle, report_key
from assistant.delivery.notice import notice_bytes
from assistant.findings import Findings, Lesion, ModelIdentity, Place, SliceProbability
from assistant.settings import Destination
from tests.support.fhir_server import FhirServer, fhir_server, operation_outcome
from tests.support.notices import notice_of

LEFT_FRONTAL_SUBDURAL = Place("left", "supratentorial", "frontal", "extra-axial", "crescent")
TOKEN = "s3cret"


def _findings(positive: bool = True, volume: float = 18.0) -> Findings:
    slices = [SliceProbability(f"1.2.3.4.{n}", 0.9 if positive else 0.1) for n in range(6)]
    lesion = Lesion(
        first_slice=2,
        last_slice=3,
        key_slice=2,
        key_sop_instance_uid="1.2.3.4.2",
        outline=[(1.0, 1.0), (5.0, 1.0), (3.0, 4.0)],
        area_mm2=300.0,
        longest_diameter_mm=61.04,
        volume_ml=volume,
        mean_hu=70.26,
        probability=0.953,
        place=LEFT_FRONTAL_SUBDURAL,
        abc2_volume_ml=volume * 1.1,
        thickness_mm=9.44,
        severity="medium",
    )
    return Findings(
        series_instance_uid="1.2.3.4",
        study_probability=0.97 if positive else 0.1,
        positive=positive,
        threshold=0.5,
        slices=slices,
        flagged_instance_uids=["1.2.3.4.2"] if positive else [],
        model=ModelIdentity("m", "1", "ab" * 32),
        lesions=[lesion] if positive else [],
        midline_shift_mm=-4.2 if positive else None,
        anatomy_read=positive,
    )


def _notice(
    message_id: str = "1.2.5", replaces: str | None = None, **findings: Any
) -> dict[str, Any]:
    return notice_of(_findings(**findings), message_id, replaces)


def _resources(bundle: Bundle) -> tuple[DiagnosticReport, list[Observation]]:
    resources = [entry.resource for entry in bundle.entry or []]
    reports = [r for r in resources if isinstance(r, DiagnosticReport)]
    assert len(reports) == 1
    return reports[0], [r for r in resources if isinstance(r, Observation)]


def _codes(concept: Any) -> set[tuple[str, str]]:
    return {(c.system, c.code) for c in concept.coding or []}


def _write(folder: Path, notice: dict[str, Any]) -> Path:
    path = folder / f"{notice['message_id']}.json"
    path.write_bytes(notice_bytes(notice))
    return path


@pytest.fixture
def server() -> Iterator[FhirServer]:
    with fhir_server(token=TOKEN) as running:
        yield running


def _destination(url: str, token: str = TOKEN, timeout: float = 5.0) -> Destination:
    return Destination("ehr", kind="fhir", url=url, token=token, timeout_seconds=timeout)


# -- the Bundle ---------------------------------------------------------------------------


def test_the_bundle_reads_back_through_the_r4b_models_and_is_the_same_every_time() -> None:
    bundle = build_bundle(_notice())
    text = bundle.model_dump_json()
    assert Bundle.model_validate_json(text) == bundle
    assert text == build_bundle(_notice()).model_dump_json()  # a re-send sends the same
    assert bundle.type == "transaction"
    full_urls = [entry.fullUrl for entry in bundle.entry or []]
    assert len(set(full_urls)) == 3 and all(u.startswith("urn:uuid:") for u in full_urls)


def test_the_report_gives_the_impression_for_the_patient_and_the_study() -> None:
    notice = _notice()
    bundle = build_bundle(notice)
    report, observations = _resources(bundle)
    assert report.status == "final"
    assert report.conclusion == notice["result"]["impression"]
    assert report.subject.identifier.value == "P1"
    assert report.subject.display == "DOE JANE"
    study = report.imagingStudy[0]
    assert (study.identifier.system, study.identifier.value) == ("urn:dicom:uid", "urn:oid:1.2.3")
    assert {(i.system, i.value) for i in report.identifier} >= {
        ("urn:ietf:rfc:3986", "urn:oid:1.2.5")
    }
    assert _codes(report.category[0]) == {("http://terminology.hl7.org/CodeSystem/v2-0074", "RAD")}
    assert _codes(report.code) == {("http://loinc.org", "24725-4")}
    assert str(report.effectiveDateTime) == "2026-12-05"
    assert report.basedOn[0].identifier.value == "A1"
    assert "NOT FOR CLINICAL USE" in report.text.div
    entries = bundle.entry or []
    assert [r.reference for r in report.result] == [e.fullUrl for e in entries[1:]]
    assert len(observations) == 2  # the lesion, the midline shift
    request = entries[0].request
    assert (request.method, request.url) == ("POST", "DiagnosticReport")
    assert request.ifNoneExist == f"identifier=urn:ietf:rfc:3986|{report_key(notice)}"


def test_a_lesion_observation_has_its_place_and_ucum_measurements() -> None:
    _report, observations = _resources(build_bundle(_notice()))
    lesion = observations[0]
    assert lesion.status == "final"
    assert _codes(lesion.code) == {("http://snomed.info/sct", "1386000")}
    assert _codes(lesion.bodySite) == {("http://snomed.info/sct", "83251001")}
    assert lesion.bodySite.text == "left frontal"
    pointer = lesion.bodySite.extension[0]
    assert pointer.url == "http://hl7.org/fhir/StructureDefinition/bodySite"
    structure = lesion.contained[0]
    assert pointer.valueReference.reference == f"#{structure.id}"
    qualifiers = set().union(*(_codes(q) for q in structure.locationQualifier))
    assert qualifiers == {
        ("http://snomed.info/sct", "7771000"),
        ("http://snomed.info/sct", "1231004"),
    }
    measured = {
        c.code.coding[0].code: (float(c.valueQuantity.value), c.valueQuantity.code)
        for c in lesion.component
        if c.valueQuantity is not None
    }
    assert measured == {
        "118565006": (18.0, "mL"),
        "121221": (19.8, "mL"),
        "59089-3": (9.4, "mm"),
        "103339001": (61.0, "mm"),
        "42798000": (300.0, "mm2"),
        "112181": (70.3, "[hnsf'U]"),
        "122157": (95.3, "%"),
    }
    assert all(
        c.valueQuantity.system == "http://unitsofmeasure.org"
        for c in lesion.component
        if c.valueQuantity
    )
    (severity,) = [c for c in lesion.component if c.valueCodeableConcept is not None]
    assert _codes(severity.valueCodeableConcept) == {("http://snomed.info/sct", "255508009")}


def test_the_midline_shift_is_measured_with_the_side_it_is_pushed_to() -> None:
    _report, observations = _resources(build_bundle(_notice()))
    shift = observations[1]
    assert (float(shift.valueQuantity.value), shift.valueQuantity.code) == (4.2, "mm")
    assert _codes(shift.component[0].valueCodeableConcept) == {
        ("http://snomed.info/sct", "24028007")
    }


def test_a_negative_notice_is_a_report_alone() -> None:
    report, observations = _resources(build_bundle(_notice(positive=False)))
    assert observations == [] and not report.result and not report.conclusionCode
    assert report.conclusion


def test_a_corrected_notice_amends_the_same_report() -> None:
    notice = _notice("1.2.6", replaces="1.2.5", volume=25.0)
    bundle = build_bundle(notice)
    report, observations = _resources(bundle)
    assert report.status == "amended" and {o.status for o in observations} == {"amended"}
    request = (bundle.entry or [])[0].request
    assert (request.method, request.url) == (
        "PUT",
        f"DiagnosticReport?identifier=urn:ietf:rfc:3986|{report_key(notice)}",
    )
    assert report_key(notice) == report_key(_notice())  # the same report as the first
    assert ("old", "urn:oid:1.2.5") in {(i.use, i.value) for i in report.identifier}


# -- sending --------------------------------------------------------------------------------


def test_a_notice_is_sent_once_and_a_correction_amends_it(
    server: FhirServer, tmp_path: Path
) -> None:
    first, corrected = _write(tmp_path, _notice()), _write(tmp_path, _notice("1.2.6", "1.2.5"))
    send = FhirSender()
    (result,) = send([first], _destination(server.url))
    assert (result.outcome, result.status) == ("sent", 200)
    assert result.detail.startswith("DiagnosticReport/")
    assert len(server.state.bundles) == 1
    (report,) = server.state.of_kind("DiagnosticReport")
    assert report.resource["status"] == "final"
    assert len(server.state.of_kind("Observation")) == 2
    assert report.resource["result"][0]["reference"].startswith("Observation/")

    assert send([first], _destination(server.url))[0].outcome == "sent"  # a retry
    assert (len(server.state.of_kind("Observation")), report.version) == (2, 1)

    assert send([corrected], _destination(server.url))[0].outcome == "sent"
    assert server.state.of_kind("DiagnosticReport") == [report]
    assert (report.version, report.resource["status"]) == (2, "amended")
    assert send([first], _destination(server.url))[0].outcome == "sent"  # late: left alone
    assert (report.version, report.resource["status"]) == (2, "amended")


def test_a_wrong_token_is_rejected_with_the_servers_words(
    server: FhirServer, tmp_path: Path
) -> None:
    (result,) = FhirSender()([_write(tmp_path, _notice())], _destination(server.url, "wrong"))
    assert (result.outcome, result.status) == ("rejected", 401)
    assert "Invalid or missing bearer token" in result.detail
    assert server.state.bundles == []


@pytest.mark.parametrize(
    ("status", "outcome"), [(503, "failed"), (429, "failed"), (409, "failed"), (422, "rejected")]
)
def test_a_refusal_is_final_and_a_busy_server_is_tried_again(
    server: FhirServer, tmp_path: Path, status: int, outcome: str
) -> None:
    server.state.answer = (status, operation_outcome("business-rule", "Subject is unknown"))
    (result,) = FhirSender()([_write(tmp_path, _notice())], _destination(server.url))
    assert (result.outcome, result.status) == (outcome, status)
    assert "Subject is unknown" in result.detail


def test_a_server_that_is_down_is_tried_again(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    destination = _destination(f"http://127.0.0.1:{port}/fhir")
    (result,) = FhirSender()([_write(tmp_path, _notice())], destination)
    assert (result.outcome, result.status) == ("failed", None)
    assert f"127.0.0.1:{port}" in result.detail and "refused" in result.detail.lower()


def test_a_server_that_does_not_answer_is_tried_again(tmp_path: Path) -> None:
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/fhir"
        (result,) = FhirSender()([_write(tmp_path, _notice())], _destination(url, timeout=0.3))
    assert (result.outcome, result.status) == ("failed", None)
    assert "within 0.3 s" in result.detail


def test_what_is_sent_is_the_bundle_as_fhir_json(server: FhirServer, tmp_path: Path) -> None:
    FhirSender()([_write(tmp_path, _notice())], _destination(server.url))
    (received,) = server.state.bundles
    assert json.loads(received.model_dump_json()) == json.loads(
        build_bundle(_notice()).model_dump_json()
    )
