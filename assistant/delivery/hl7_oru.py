"""HL7 v2.5.1 ORU^R01 over MLLP: a notice (assistant/delivery/notice.py) told to a RIS,
an EHR or an interface engine, for ``kind = "hl7"`` destinations.

`build_oru` translates one notice into one ORU^R01 (MSH, PID, ORC, OBR, NTE, OBX rows),
built with python-hl7's containers and escaped with its escaping, never joined by hand:
a name or an impression holding ``| ^ ~ \\ &`` reaches the receiver as it was written.
Non-ASCII text travels as UTF-8 (MSH-18 "UNICODE UTF-8"), not as the library's \\X..\\
escapes, which are wrong past U+00FF. `Hl7Sender` sends each message on an MLLP
connection and reads the receiver's ACK (original acknowledgment mode): AA/CA is sent,
AE/CE is retried, AR/CR is not. The layout, every OBX code and the ACK rules are in
docs/notifications.md ("HL7 v2").

The codes are the concepts the SR uses (assistant/findings/concepts.py): a site that
maps a finding, a site or a measurement differently changes it there, and the SR, the
HL7 message and the FHIR bundle follow.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import hl7  # type: ignore[import-untyped]  # python-hl7 ships no type information
from hl7.mllp import InvalidBlockError, open_hl7_connection  # type: ignore[import-untyped]
from pydicom.sr.coding import Code

from assistant.delivery.notice import read_notice
from assistant.findings import concepts
from assistant.findings.wording import shift_side
from assistant.settings import Destination
from dicom_node import SendResult

LOGGER = logging.getLogger(__name__)

HL7_VERSION = "2.5.1"
#: MSH-18: text is sent as UTF-8 (HL7 table 0211).
CHARACTER_SET = "UNICODE UTF-8"
#: MSH-10 is at most 20 characters (HL7 v2.5.1 2.15.9.10).
CONTROL_ID_LENGTH = 20


class Coded(NamedTuple):
    """A coded concept as HL7 writes it (CWE/CE: identifier ^ text ^ coding system).
    The coding systems are HL7 table 0396's: SCT, LN, DCM, UCUM, HL70nnn, and 99zzz for
    a local one."""

    code: str
    text: str
    system: str


def _coded(code: Code) -> Coded:
    """A concept of assistant.findings.concepts (the SR's) as HL7 writes it."""
    return Coded(code.value, code.meaning, code.scheme_designator)


def _coded_each(codes: Mapping[str, Code]) -> Mapping[str, Coded]:
    return {word: _coded(code) for word, code in codes.items()}


#: Our own codes where no standard one says it: the SR's private scheme.
PRIVATE = concepts.PRIVATE_SCHEME

# The SR's concepts (a site that maps them differently changes assistant/findings/
# concepts.py, and the HL7 message follows)...
PROCEDURE = _coded(concepts.PROCEDURE)
FINDING = _coded(concepts.FINDING)
PRESENT = _coded(concepts.PRESENT)
ABSENT = _coded(concepts.ABSENT)
PROBABILITY = _coded(concepts.PROBABILITY)
IMPRESSION = _coded(concepts.IMPRESSION)
MIDLINE_SHIFT = _coded(concepts.MIDLINE_SHIFT)
MIDLINE_SHIFT_DIRECTION = _coded(concepts.MIDLINE_SHIFT_DIRECTION)
SITE_CERTAINTY = _coded(concepts.SITE_CERTAINTY)
UNCERTAIN = _coded(concepts.UNCERTAIN)
VOLUME = _coded(concepts.VOLUME)
ABC2_VOLUME = _coded(concepts.ABC2_VOLUME)
ABC2_METHOD = _coded(concepts.ABC2_METHOD)
THICKNESS = _coded(concepts.THICKNESS)
SEVERITY = _coded(concepts.SEVERITY)
#: The finding site of a lesion that was not located.
BRAIN = _coded(concepts.FINDING_SITE)
REGIONS: Mapping[str, Coded] = _coded_each(concepts.REGIONS)
LATERALITIES: Mapping[str, Coded] = _coded_each(concepts.LATERALITIES)
RELATIONS: Mapping[str, Coded] = _coded_each(concepts.RELATIONS)
SEVERITIES: Mapping[str, Coded] = _coded_each(concepts.SEVERITIES)

# ...and the names of the message's own rows (DICOM's and SNOMED CT's, as in TID 1500).
LESION = Coded("121071", "Finding", "DCM")
FINDING_SITE = Coded("363698007", "Finding Site", "SCT")
LATERALITY = Coded("272741003", "Laterality", "SCT")
TOPOGRAPHICAL_MODIFIER = Coded("106233006", "Topographical modifier", "SCT")
STUDY_UID = Coded("110180", "Study Instance UID", "DCM")
SERIES_UID = Coded("112002", "Series Instance UID", "DCM")
SR_UID = Coded("SRUID", "SR SOP Instance UID", PRIVATE)
ALGORITHM_NAME = Coded("111001", "Algorithm Name", "DCM")
ALGORITHM_VERSION = Coded("111003", "Algorithm Version", "DCM")
STUDY_PAGE = Coded("STUDYPAGE", "Study page", PRIVATE)
VIEWER = Coded("VIEWER", "Viewer link", PRIVATE)
REMARK = Coded("RE", "Remark", "HL70364")

MILLILITRE = Coded("mL", "milliliter", "UCUM")
MILLIMETRE = Coded("mm", "millimeter", "UCUM")
PERCENT = Coded("%", "percent", "UCUM")

#: A field's value: one text, or its components (each a text or its subcomponents).
FieldValue = str | Sequence[str | Sequence[str]]

_NON_ASCII = re.compile(r"([^\x00-\x7f]+)")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_DATE = re.compile(r"\d{8}")


def control_id(message_id: str, destination: Destination) -> str:
    """MSH-10 of the notice `message_id` sent to `destination`: 20 hex digits of a hash
    of the two. The same on every retry, so a receiver that keeps the first message of
    each control id drops a repeat; different per destination and per notice."""
    digest = hashlib.sha256(f"{message_id}\n{destination.name}".encode()).hexdigest()
    return digest[:CONTROL_ID_LENGTH].upper()


def _escape(message: hl7.Message, text: str) -> str:
    """`text` escaped for one HL7 value: the separators and the escape character by the
    library's rules (| → \\F\\, ^ → \\S\\, & → \\T\\, ~ → \\R\\, \\ → \\E\\, a line
    break → \\.br\\); non-ASCII kept as it is (the message is UTF-8: the library would
    write \\Xe9\\ for é and \\X141\\ for Ł, which no receiver reads back); tabs as spaces,
    other control characters and lone surrogates dropped (the library writes a tab as
    "\\X 9\\")."""
    text = text.encode("utf-8", errors="ignore").decode("utf-8")
    text = _CONTROL.sub("", text.replace("\r\n", "\n").replace("\n", "\r").replace("\t", " "))
    parts = _NON_ASCII.split(text)  # ASCII runs at even indices, non-ASCII at odd ones
    return "".join(part if i % 2 else message.escape(part) for i, part in enumerate(parts))


def _field(message: hl7.Message, value: FieldValue) -> hl7.Field:
    if isinstance(value, str):
        return message.create_field([_escape(message, value)])
    components = [
        _escape(message, part)
        if isinstance(part, str)
        else message.create_component([_escape(message, sub) for sub in part])
        for part in value
    ]
    while components and components[-1] == "":
        components.pop()
    return message.create_field([message.create_repetition(components)])


def _segment(message: hl7.Message, name: str, fields: Mapping[int, FieldValue]) -> None:
    """Append segment `name` with `fields` by position (1-based, as HL7 numbers them)."""
    items = [message.create_field([name])]
    items += [message.create_field([]) for _ in range(max(fields, default=0))]
    for position, value in fields.items():
        items[position] = _field(message, value)
    if name == "MSH":  # MSH-1 and MSH-2 are the separators themselves, never escaped
        items[1] = message.create_field([message.separators[1]])
        items[2] = message.create_field(
            [message.separators[3] + message.separators[2] + message.esc + message.separators[4]]
        )
    message.append(message.create_segment(items))


def _timestamp(moment: datetime) -> str:
    """HL7 DTM to the second with its UTC offset; a naive time is taken to be UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.strftime("%Y%m%d%H%M%S%z")


def _date(value: str) -> str:
    """A DICOM DA (YYYYMMDD) as an HL7 DT; "" for anything else."""
    return value if _DATE.fullmatch(value) else ""


def _number(value: float, places: int = 1) -> str:
    """An NM value: fixed-point, no exponent (HL7 NM has none)."""
    return f"{value:.{places}f}"


def _person_name(dicom_name: str) -> list[str]:
    """A DICOM PN (family^given^middle^prefix^suffix, alphabetic group) as an XPN
    (family^given^middle^suffix^prefix)."""
    family, given, middle, prefix, suffix = (dicom_name.split("=")[0].split("^") + [""] * 5)[:5]
    name = [family, given, middle, suffix, prefix]
    while name and not name[-1]:
        name.pop()
    return name


def _sex(value: str) -> str:
    """DICOM's M/F/O as HL7 table 0001; other values U; nothing where the images said
    nothing."""
    return value if value in ("M", "F", "O") else ("U" if value else "")


@dataclass(frozen=True)
class _Observation:
    """One OBX row: value type, identifier, value, and what goes with it."""

    kind: str
    code: Coded
    value: FieldValue
    units: Coded | None = None
    sub_id: str = ""
    flag: str = ""
    method: Coded | None = None


def _study_rows(notice: Mapping[str, Any]) -> list[_Observation]:
    """The verdict, the probability, the impression, the shift, the model, the UIDs and
    the links: one row each, with no sub-ID."""
    result = notice["result"]
    rows = [
        _Observation(
            "CWE",
            FINDING,
            PRESENT if result["positive"] else ABSENT,
            flag="A" if result["positive"] else "",
        ),
        _Observation("NM", PROBABILITY, _number(100 * result["study_probability"]), PERCENT),
        _Observation("TX", IMPRESSION, result["impression"]),
    ]
    shift = result["midline_shift_mm"]
    if shift is not None:
        rows.append(_Observation("NM", MIDLINE_SHIFT, _number(abs(shift)), MILLIMETRE))
        side = shift_side(shift)
        if side is not None:
            rows.append(_Observation("CWE", MIDLINE_SHIFT_DIRECTION, LATERALITIES[side]))
    rows += [
        _Observation("ST", ALGORITHM_NAME, notice["model"]["name"]),
        _Observation("ST", ALGORITHM_VERSION, notice["model"]["version"]),
        _Observation("ST", STUDY_UID, notice["study"]["study_instance_uid"]),
        _Observation("ST", SERIES_UID, notice["series"]["series_instance_uid"]),
    ]
    if notice["report"]["sr_sop_instance_uid"]:
        rows.append(_Observation("ST", SR_UID, notice["report"]["sr_sop_instance_uid"]))
    for code, link in ((STUDY_PAGE, "study_page"), (VIEWER, "viewer")):
        if notice["links"][link]:
            rows.append(_Observation("ST", code, notice["links"][link]))
    return rows


def _lesion_rows(lesion: Mapping[str, Any]) -> list[_Observation]:
    """One lesion's rows, grouped by its number in OBX-4: what and where in words, where
    in codes (site, side, relation, certainty), its sizes, its severity band and the
    model's probability."""
    sub = str(lesion["number"])
    place = lesion["place"]
    rows = [
        _Observation("ST", LESION, lesion["summary"], sub_id=sub),
        _Observation("CWE", FINDING_SITE, REGIONS[place["region"]] if place else BRAIN, sub_id=sub),
    ]
    if place and place["side"]:
        rows.append(_Observation("CWE", LATERALITY, LATERALITIES[place["side"]], sub_id=sub))
    if place:
        relation = RELATIONS[place["relation"]]
        rows.append(_Observation("CWE", TOPOGRAPHICAL_MODIFIER, relation, sub_id=sub))
        if place["approximate"]:
            rows.append(_Observation("CWE", SITE_CERTAINTY, UNCERTAIN, sub_id=sub))
    sizes = [
        (VOLUME, lesion["volume_ml"], MILLILITRE),
        (ABC2_VOLUME, lesion["abc2_volume_ml"], MILLILITRE),
        (THICKNESS, lesion["thickness_mm"], MILLIMETRE),
    ]
    for code, value, unit in sizes:
        if value is not None:
            method = ABC2_METHOD if code is ABC2_VOLUME else None
            rows.append(_Observation("NM", code, _number(value), unit, sub, method=method))
    if lesion["severity"]:
        rows.append(_Observation("CWE", SEVERITY, SEVERITIES[lesion["severity"]], sub_id=sub))
    probability = _number(100 * lesion["probability"])
    rows.append(_Observation("NM", PROBABILITY, probability, PERCENT, sub))
    return rows


def build_oru(
    notice: Mapping[str, Any], destination: Destination, control_id: str, now: datetime
) -> hl7.Message:
    """The ORU^R01 (an `hl7.Message`) that tells `destination` of `notice`.

    `control_id` is MSH-10 (see `control_id()`), `now` MSH-7. Raises ValueError for a
    control id HL7 cannot carry, KeyError for a notice that lacks a field."""
    if not 0 < len(control_id) <= CONTROL_ID_LENGTH:
        raise ValueError(f"control_id: {control_id!r} is not 1 to 20 characters")
    status = "C" if notice["status"] == "corrected" else "F"
    patient, study, series = notice["patient"], notice["study"], notice["series"]
    accession = study["accession_number"]
    reported = _timestamp(datetime.fromisoformat(notice["created_at"]))
    study_date = _date(study["study_date"])
    message = hl7.Message(sequence=[])
    _segment(
        message,
        "MSH",
        {
            3: destination.sending_application,
            4: destination.sending_facility,
            5: destination.receiving_application,
            6: destination.receiving_facility,
            7: _timestamp(now),
            9: ["ORU", "R01", "ORU_R01"],
            10: control_id,
            11: "P",
            12: HL7_VERSION,
            18: CHARACTER_SET,
        },
    )
    _segment(
        message,
        "PID",
        {
            1: "1",
            3: patient["id"],
            5: _person_name(patient["name"]),
            7: _date(patient["birth_date"]),
            8: _sex(patient["sex"]),
        },
    )
    _segment(message, "ORC", {1: "RE", 2: accession, 3: accession, 5: "CM"})
    _segment(
        message,
        "OBR",
        {
            1: "1",
            2: accession,
            3: accession,
            # CWE-9, the original text: what the site called the study
            4: [*PROCEDURE, "", "", "", "", "", study["study_description"]],
            7: study_date,
            22: reported,
            24: "CT" if series["modality"] == "CT" else "RAD",
            25: status,
        },
    )
    notes = [notice["use_statement"], *notice["result"]["notes"]]
    for number, note in enumerate((n for n in notes if n), start=1):
        _segment(message, "NTE", {1: str(number), 2: "L", 3: note, 4: REMARK})
    rows = _study_rows(notice)
    for lesion in notice["result"]["lesions"]:
        rows += _lesion_rows(lesion)
    for number, row in enumerate(rows, start=1):
        fields: dict[int, FieldValue] = {
            1: str(number),
            2: row.kind,
            3: row.code,
            4: row.sub_id,
            5: row.value,
            6: row.units or "",
            8: row.flag,
            11: status,
            14: study_date,
            19: reported,
        }
        if row.method is not None:
            fields[17] = row.method
        _segment(message, "OBX", fields)
    return message


# -- sending ------------------------------------------------------------------------------

#: MSA-1 (HL7 table 0008) → the outbox's outcome: accepted, refused for now (retried),
#: refused for good (not retried). Any other code is a failure, retried.
ACK_OUTCOMES: Mapping[str, str] = {
    "AA": "sent",
    "CA": "sent",
    "AE": "failed",
    "CE": "failed",
    "AR": "rejected",
    "CR": "rejected",
}


class NoAcknowledgement(Exception):
    """The peer did not acknowledge our message: no connection, no answer in time, or
    an answer that is not an ACK of it. The connection is not used again."""


def _answer_text(ack: hl7.Message) -> str:
    """What the receiver said besides the code: MSA-3 and its ERR rows' texts (ERR-8
    user message, ERR-7 diagnostics, ERR-3 error code, v2.4's ERR-1 error code)."""
    texts = [ack.segment("MSA").extract_field(1, 3)]
    errors = [segment for segment in ack if segment[0][0] == "ERR"]
    places = ((8, 1, 1), (7, 1, 1), (3, 2, 1), (3, 1, 1), (1, 4, 2), (1, 4, 1))
    for err in errors:
        for field, component, subcomponent in places:
            with suppress(IndexError):
                texts.append(err.extract_field(1, field, 1, component, subcomponent))
    seen: list[str] = []
    for text in texts:
        if text and text not in seen:
            seen.append(text)
    return "; ".join(seen)


def _judge(block: bytes, expected: str) -> tuple[str, str]:
    """(outcome, detail) of the receiver's answer to our message `expected`; raises
    NoAcknowledgement for an answer that does not acknowledge it."""
    try:
        ack = hl7.parse(block.decode("utf-8", errors="replace"))
        kind = ack.extract_field("MSH", 1, 9, 1, 1)
        code = ack.segment("MSA").extract_field(1, 1)
        acknowledged = ack.segment("MSA").extract_field(1, 2)
    except (hl7.HL7Exception, KeyError, IndexError, ValueError) as exc:
        raise NoAcknowledgement(f"the answer is not an HL7 ACK ({exc})") from exc
    if kind != "ACK" or acknowledged != expected:
        raise NoAcknowledgement(
            f"the answer ({kind or 'no type'}, MSA-2 {acknowledged!r}) is not an ACK of "
            f"message {expected}"
        )
    text = _answer_text(ack)
    detail = f"message {expected}: MSA-1 {code}" + (f": {text}" if text else "")
    return ACK_OUTCOMES.get(code, "failed"), detail


class _Connection:
    """One MLLP connection to a destination, each step bounded by its timeout."""

    def __init__(self, destination: Destination) -> None:
        self._destination = destination
        self._timeout = destination.timeout_seconds
        self._streams: tuple[Any, Any] | None = None

    async def exchange(self, message: hl7.Message, control: str) -> tuple[str, str]:
        """Send `message`, wait for its ACK: (outcome, detail)."""
        where = f"{self._destination.host}:{self._destination.port}"
        try:
            if self._streams is None:
                async with asyncio.timeout(self._timeout):
                    self._streams = await open_hl7_connection(
                        self._destination.host, self._destination.port, encoding="utf-8"
                    )
            reader, writer = self._streams
            async with asyncio.timeout(self._timeout):
                writer.writemessage(message)
                await writer.drain()
                block = await reader.readblock()
        except TimeoutError as exc:
            raise NoAcknowledgement(
                f"no acknowledgement from {where} within {self._timeout:g} s"
            ) from exc
        except asyncio.IncompleteReadError as exc:
            raise NoAcknowledgement(f"{where} closed the connection without answering") from exc
        except (OSError, InvalidBlockError, ValueError) as exc:  # refused, reset, bad framing
            raise NoAcknowledgement(f"{where}: {exc or type(exc).__name__}") from exc
        return _judge(block, control)

    async def close(self) -> None:
        if self._streams is None:
            return
        writer = self._streams[1]
        self._streams = None
        writer.close()
        with suppress(OSError, TimeoutError):
            async with asyncio.timeout(self._timeout):
                await writer.wait_closed()


class Hl7Sender:
    """The sender of ``hl7`` destinations (see assistant/delivery/senders.py): each notice
    of a batch as an ORU^R01, one after the other on one MLLP connection, each waiting
    for its ACK.

    It never raises for the peer: a refused connection, a silent peer (no ACK within the
    destination's `timeout_seconds`) or a reply that is not our ACK fails the message
    (retried) and, since the connection can no longer be trusted, the rest of the batch
    without trying them: a dead receiver costs one timeout per batch, not one per
    message. AE/CE fail the message alone (retried); AR/CR reject it (not retried). A
    file that is not a notice is rejected (sending it again cannot help)."""

    def __init__(self, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._clock = clock

    def __call__(self, paths: Sequence[Path], destination: Destination) -> list[SendResult]:
        # The outbox runs in its own thread, with no event loop: one loop per batch.
        return asyncio.run(self._send(list(paths), destination))

    async def _send(self, paths: list[Path], destination: Destination) -> list[SendResult]:
        connection = _Connection(destination)
        results: list[SendResult] = []
        broken = ""
        try:
            for path in paths:
                if broken:
                    results.append(SendResult(path, None, "failed", f"not sent: {broken}"))
                    continue
                built = self._message(path, destination)
                if isinstance(built, SendResult):
                    results.append(built)
                    continue
                message, control = built
                try:
                    outcome, detail = await connection.exchange(message, control)
                except NoAcknowledgement as exc:
                    broken = str(exc)
                    results.append(SendResult(path, None, "failed", broken))
                    await connection.close()
                    continue
                results.append(SendResult(path, None, outcome, detail))
        finally:
            await connection.close()
        return results

    def _message(
        self, path: Path, destination: Destination
    ) -> tuple[hl7.Message, str] | SendResult:
        """The ORU of the notice at `path` and its control id, or the SendResult that
        says why there is none: a file that cannot be read now (failed: retried), one
        that is not a notice or lacks a field (rejected: it would fail again)."""
        try:
            notice = read_notice(path)
        except OSError as exc:
            return SendResult(path, None, "failed", f"cannot read the notice: {exc}")
        except ValueError as exc:  # not JSON, or not a notice
            return SendResult(path, None, "rejected", f"not a notice: {exc}")
        try:
            control = control_id(notice["message_id"], destination)
            return build_oru(notice, destination, control, self._clock()), control
        except (KeyError, TypeError, ValueError) as exc:
            LOGGER.exception("no ORU can be built from %s", path.name)
            return SendResult(path, None, "rejected", f"no ORU from this notice: {exc!r}")
