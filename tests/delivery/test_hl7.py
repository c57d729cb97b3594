"""HL7 v2.5.1 ORU^R01 over MLLP: the message as a receiver parses it (python-hl7), and
the sender against a real MLLP listener that accepts, errs, rejects, hangs or is not
there; AE retried and AR not, through the outbox."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import hl7  # type: ignore[import-untyped]
import pytest
from sqlalchemy import select

from assistant.db import (
    Database,
    Delivery,
    DeliveryState,
    ResultKind,
    make_engine,
)
from assistant.db.migrate import upgrade
from assistant.delivery.hl7_oru import Hl7Sender, build_oru, control_id
from assistant.delivery.notice import NoticeSubject, build_notice, notice_bytes
from assistant.delivery.outbox import Outbox
from assistant.findings import Findings, Lesion, ModelIdentity, SliceProbability
from assistant.findings.place import Place
from assistant.settings import DeliverySettings, Destination
from tests.support.mllp_listener import MllpListener
from tests.support.results import Clock, record_result

NOW = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
USE = "NOT FOR CLINICAL USE: research software, not a medical device."


def _lesion(first: int, **kwargs: Any) -> Lesion:
    return Lesion(
        first_slice=first,
        last_slice=first + 2,
        key_slice=first + 1,
        key_sop_instance_uid=f"1.2.826.0.1.3.{first + 1}",
        outline=[(1.0, 1.0), (5.0, 1.0), (5.0, 5.0)],
        area_mm2=120.0,
        longest_diameter_mm=30.2,
        mean_hu=62.0,
        **kwargs,
    )


def _notice(
    name: str = "Smith^Ann", replaces: str | None = None, message_id: str = "2.25.1001"
) -> dict[str, Any]:
    """A positive notice: a left frontal bleed, a right subdural collection, a 6.5 mm
    shift to the left."""
    findings = Findings(
        series_instance_uid="1.2.826.0.1.2",
        study_probability=0.97,
        positive=True,
        threshold=0.5,
        slices=[SliceProbability(f"1.2.826.0.1.3.{i}", 0.9) for i in range(12)],
        flagged_instance_uids=["1.2.826.0.1.3.4"],
        model=ModelIdentity("ich-demo", "3.1.0"),
        lesions=[
            _lesion(
                3,
                volume_ml=12.34,
                probability=0.93,
                place=Place("left", "supratentorial", "frontal", "intra-axial"),
                abc2_volume_ml=13.1,
                severity="medium",
            ),
            _lesion(
                7,
                volume_ml=4.0,
                probability=0.71,
                place=Place("right", "supratentorial", "parietal", "extra-axial", "crescent"),
                thickness_mm=6.2,
                severity="small",
            ),
        ],
        midline_shift_mm=6.5,
        anatomy_read=True,
    )
    subject = NoticeSubject(
        patient_id="PAT-7",
        patient_name=name,
        patient_birth_date="19600214",
        patient_sex="F",
        study_instance_uid="1.2.826.0.1",
        accession_number="ACC0042",
        study_date="20260105",
        study_description="CT HEAD W/O",
        series_instance_uid="1.2.826.0.1.2",
        series_number=2,
        series_description="Axial 5mm",
        modality="CT",
        body_part="HEAD",
        calling_ae="MODALITY",
    )
    return build_notice(
        findings,
        subject,
        message_id=message_id,
        created_at=datetime(2026, 1, 5, 9, 29, 58),
        replaces=replaces,
        use_statement=USE,
        clinical_use=False,
        study_page="https://node.example/studies/1.2.826.0.1",
        viewer="https://node.example/viewer?StudyInstanceUIDs=1.2.826.0.1&x=1",
        sr_sop_instance_uid="1.2.826.0.9",
        sr_series_instance_uid="1.2.826.0.8",
    )


def _destination(port: int = 2575, timeout: float = 5.0, name: str = "ris") -> Destination:
    return Destination(
        name,
        kind="hl7",
        host="127.0.0.1",
        port=port,
        sending_facility="RADIOLOGY",
        receiving_application="RIS",
        receiving_facility="GENERAL",
        timeout_seconds=timeout,
    )


def _wire(notice: dict[str, Any], destination: Destination | None = None) -> Any:
    """The message as the receiver parses it from the bytes on the wire."""
    destination = destination or _destination()
    message = build_oru(notice, destination, control_id(notice["message_id"], destination), NOW)
    return hl7.parse(str(message).encode("utf-8"))


def _obx(message: Any) -> dict[tuple[str, str], Any]:
    """The OBX rows by (OBX-3 identifier, OBX-4 sub-ID)."""
    rows = {}
    for segment in message.segments("OBX"):
        rows[(segment.extract_field(1, 3, 1, 1), segment.extract_field(1, 4))] = segment
    return rows


def _value(segment: Any, field: int = 5, component: int = 1) -> str:
    return str(segment.extract_field(1, field, 1, component, 1))


# -- the message ---------------------------------------------------------------------------


def test_the_header_names_both_ends_and_the_message() -> None:
    message = _wire(_notice())
    msh = message.segment("MSH")
    assert [_value(msh, f) for f in (3, 4, 5, 6)] == ["RADASSIST", "RADIOLOGY", "RIS", "GENERAL"]
    assert _value(msh, 7) == "20260105093000+0000"
    assert [_value(msh, 9, c) for c in (1, 2, 3)] == ["ORU", "R01", "ORU_R01"]
    assert _value(msh, 10) == control_id("2.25.1001", _destination())
    assert [_value(msh, f) for f in (11, 12, 18)] == ["P", "2.5.1", "UNICODE UTF-8"]


def test_the_control_id_is_stable_and_unique_per_notice_and_destination() -> None:
    ris, ehr = _destination(), _destination(name="ehr")
    first = control_id("2.25.1001", ris)
    assert len(first) <= 20
    assert control_id("2.25.1001", ris) == first  # a retry: the receiver can drop it
    assert control_id("2.25.1001", ehr) != first
    assert control_id("2.25.1002", ris) != first


def test_patient_order_and_result_status() -> None:
    message = _wire(_notice())
    pid = message.segment("PID")
    assert _value(pid, 3) == "PAT-7"
    assert (_value(pid, 5, 1), _value(pid, 5, 2)) == ("Smith", "Ann")
    assert (_value(pid, 7), _value(pid, 8)) == ("19600214", "F")
    orc, obr = message.segment("ORC"), message.segment("OBR")
    assert [_value(orc, f) for f in (1, 2, 3)] == ["RE", "ACC0042", "ACC0042"]
    assert [_value(obr, f) for f in (2, 3)] == ["ACC0042", "ACC0042"]
    assert [_value(obr, 4, c) for c in (1, 3, 9)] == ["303653007", "SCT", "CT HEAD W/O"]
    assert (_value(obr, 7), _value(obr, 22), _value(obr, 25)) == (
        "20260105",
        "20260105092958+0000",
        "F",
    )
    assert {_value(obx, 11) for obx in message.segments("OBX")} == {"F"}
    assert _value(message.segment("NTE"), 3) == USE


def test_a_corrected_notice_is_a_corrected_result() -> None:
    message = _wire(_notice(replaces="2.25.1000", message_id="2.25.1002"))
    assert _value(message.segment("OBR"), 25) == "C"
    assert {_value(obx, 11) for obx in message.segments("OBX")} == {"C"}


def test_the_observations_carry_the_verdict_the_impression_and_each_lesion() -> None:
    notice = _notice()
    rows = _obx(_wire(notice))
    verdict = rows[("1386000", "")]
    assert (_value(verdict, 2), _value(verdict, 5), _value(verdict, 8)) == ("CWE", "52101004", "A")
    probability = rows[("122157", "")]
    assert (_value(probability, 5), _value(probability, 6)) == ("97.0", "%")
    assert _value(rows[("121073", "")]) == notice["result"]["impression"]
    assert (_value(rows[("MLS", "")]), _value(rows[("MLSDIR", "")])) == ("6.5", "7771000")
    assert _value(rows[("110180", "")]) == "1.2.826.0.1"
    assert _value(rows[("SRUID", "")]) == "1.2.826.0.9"
    assert _value(rows[("VIEWER", "")]).endswith("StudyInstanceUIDs=1.2.826.0.1&x=1")
    # lesion 1: left frontal, intra-axial, 12.3 mL (ABC/2 13.1), medium
    assert _value(rows[("121071", "1")]) == notice["result"]["lesions"][0]["summary"]
    assert _value(rows[("363698007", "1")]) == "83251001"  # frontal lobe
    assert _value(rows[("272741003", "1")]) == "7771000"  # left
    assert _value(rows[("106233006", "1")]) == "91772007"  # parenchyma
    volume = rows[("118565006", "1")]
    assert (_value(volume, 2), _value(volume, 5), _value(volume, 6)) == ("NM", "12.3", "mL")
    assert _value(rows[("121221", "1")]) == "13.1"
    assert _value(rows[("121221", "1")], 17) == "126029"  # ABC/2: the LWH method
    assert _value(rows[("112025", "1")]) == "255508009"  # medium
    assert ("59089-3", "1") not in rows  # no thickness for an intra-axial lesion
    # lesion 2: right parietal extra-axial collection, 6.2 mm thick
    assert _value(rows[("272741003", "2")]) == "24028007"
    assert _value(rows[("106233006", "2")]) == "1231004"  # meninges
    assert (_value(rows[("59089-3", "2")]), _value(rows[("59089-3", "2")], 6)) == ("6.2", "mm")


def test_separators_in_names_and_text_survive_escaping() -> None:
    notice = _notice(name="O|Brien&Co~Smith\\Jr^Ann^Müller")
    notice["result"]["impression"] = "Bleed 3^2 cm | left & right ~ both \\ none\nnext line"
    wire = str(
        build_oru(notice, _destination(), control_id(notice["message_id"], _destination()), NOW)
    )
    assert "O\\F\\Brien\\T\\Co\\R\\Smith\\E\\Jr^Ann^Müller" in wire
    message = hl7.parse(wire.encode("utf-8"))
    pid = message.segment("PID")
    assert [_value(pid, 5, c) for c in (1, 2, 3)] == ["O|Brien&Co~Smith\\Jr", "Ann", "Müller"]
    impression = _value(_obx(message)[("121073", "")])
    assert impression == "Bleed 3^2 cm | left & right ~ both \\ none\rnext line"
    assert len(message.segments("OBX")) == len(_obx(message))  # no row split apart


# -- the sender against a real MLLP listener -----------------------------------------------


@pytest.fixture
def receiver() -> Iterator[MllpListener]:
    with MllpListener() as listener:
        yield listener


def _file(folder: Path, notice: dict[str, Any]) -> Path:
    path = folder / f"{notice['message_id']}.json"
    path.write_bytes(notice_bytes(notice))
    return path


def test_an_accepted_message_is_sent_once(tmp_path: Path, receiver: MllpListener) -> None:
    path = _file(tmp_path, _notice())
    destination = _destination(receiver.port)
    [result] = Hl7Sender()([path], destination)
    assert (result.path, result.outcome) == (path, "sent")
    assert "MSA-1 AA" in result.detail
    [message] = receiver.received
    assert _value(message.segment("MSH"), 10) == control_id("2.25.1001", destination)
    assert _value(message.segment("PID"), 3) == "PAT-7"


def test_a_rejected_message_is_rejected_with_the_receivers_words(
    tmp_path: Path, receiver: MllpListener
) -> None:
    receiver.answer_next("AR", text="unknown patient | PAT-7")
    [result] = Hl7Sender()([_file(tmp_path, _notice())], _destination(receiver.port))
    assert result.outcome == "rejected"
    assert "MSA-1 AR: unknown patient | PAT-7" in result.detail
    assert "Application internal error" in result.detail  # ERR-3's text


def test_a_silent_receiver_fails_the_batch_after_one_timeout(
    tmp_path: Path, receiver: MllpListener
) -> None:
    receiver.never_answer()
    paths = [_file(tmp_path, _notice(message_id=f"2.25.{n}")) for n in (1, 2, 3)]
    started = time.monotonic()
    results = Hl7Sender()(paths, _destination(receiver.port, timeout=0.5))
    assert time.monotonic() - started < 3
    assert [r.outcome for r in results] == ["failed"] * 3
    assert "no acknowledgement from 127.0.0.1" in results[0].detail
    assert "within 0.5 s" in results[0].detail
    assert results[1].detail.startswith("not sent: no acknowledgement")
    assert len(receiver.received) == 1  # the others were not sent into the void


def test_nothing_listening_fails(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago, and closed now
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    [result] = Hl7Sender()([_file(tmp_path, _notice())], _destination(port, timeout=2))
    assert result.outcome == "failed"
    assert f"127.0.0.1:{port}" in result.detail


def test_an_ack_of_another_message_fails(tmp_path: Path, receiver: MllpListener) -> None:
    receiver.answer_next("AA", acknowledges="SOMEONEELSE")
    [result] = Hl7Sender()([_file(tmp_path, _notice())], _destination(receiver.port))
    assert result.outcome == "failed"
    assert "'SOMEONEELSE'" in result.detail


def test_a_file_that_is_not_a_notice_is_rejected(tmp_path: Path, receiver: MllpListener) -> None:
    path = tmp_path / "other.json"
    path.write_text(json.dumps({"schema": "something/else"}))
    [result] = Hl7Sender()([path], _destination(receiver.port))
    assert result.outcome == "rejected"
    assert receiver.received == []


# -- through the outbox --------------------------------------------------------------------


@pytest.fixture
def outbox_env(tmp_path: Path, receiver: MllpListener) -> Iterator[tuple[Any, Outbox, Clock]]:
    """A migrated database with one positive notice queued for an HL7 destination."""
    data_dir = tmp_path / "var"
    url = f"sqlite:///{data_dir / 'radassist.db'}"
    upgrade(url)
    db = Database(make_engine(url))
    clock = Clock()
    settings = DeliverySettings(max_attempts=3, backoff_seconds=10, max_backoff_seconds=60)
    destinations = [_destination(receiver.port, timeout=5)]
    outbox = Outbox(db, destinations, settings, data_dir, {"hl7": Hl7Sender()}, clock=clock)
    notice = _notice()
    (data_dir / "results").mkdir(parents=True)
    path = _file(data_dir / "results", notice)
    with db.sessions() as session, session.begin():
        relative = path.relative_to(data_dir).as_posix()
        result = record_result(
            session, ResultKind.NOTICE, notice["message_id"], relative, clock.now
        )
        outbox.add(session, result, notice)
    yield db.sessions, outbox, clock
    db.dispose()


def _rows(sessions: Any) -> list[tuple[DeliveryState, int, str]]:
    with sessions() as session:
        return [(d.state, d.attempts, d.last_error) for d in session.scalars(select(Delivery))]


def test_an_application_error_is_retried_then_sent(outbox_env: Any, receiver: MllpListener) -> None:
    sessions, outbox, clock = outbox_env
    receiver.answer_next("AE", text="database busy")
    assert outbox.deliver_due() == 0
    [(state, attempts, error)] = _rows(sessions)
    assert (state, attempts) == (DeliveryState.PENDING, 1)
    assert "MSA-1 AE: database busy" in error
    clock.now += timedelta(seconds=10)
    assert outbox.deliver_due() == 1
    assert [row[:2] for row in _rows(sessions)] == [(DeliveryState.SENT, 2)]
    first, second = receiver.received
    assert str(first.segment("MSH")(10)) == str(second.segment("MSH")(10))  # the same message


def test_an_application_reject_is_not_retried(outbox_env: Any, receiver: MllpListener) -> None:
    sessions, outbox, clock = outbox_env
    receiver.answer_next("AR", text="no such order")
    assert outbox.deliver_due() == 0
    [(state, attempts, error)] = _rows(sessions)
    assert (state, attempts) == (DeliveryState.FAILED, 1)
    assert "MSA-1 AR: no such order" in error
    clock.now += timedelta(hours=1)
    assert outbox.deliver_due() == 0
    assert len(receiver.received) == 1
