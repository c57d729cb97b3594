"""Which destinations a result goes to: DICOM objects to DICOM peers, a notice to the
notification destinations whose rule it meets, a correction wherever the notice it
corrects went; notifications leave first; a peer's lasting refusal is not retried."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from sqlalchemy import select

from assistant.db import (
    Database,
    Delivery,
    DeliveryState,
    ResultKind,
    ResultObject,
    make_engine,
    utcnow,
)
from assistant.db.migrate import upgrade
from assistant.delivery.notice import NOTICE_SCHEMA, notice_bytes
from assistant.delivery.outbox import Outbox
from assistant.delivery.rules import wants
from assistant.findings import Findings, Lesion, ModelIdentity, Place, SliceProbability
from assistant.settings import DeliverySettings, Destination, SettingsError
from dicom_node import SendResult
from tests.support.notices import notice_of
from tests.support.results import record_result


def _findings(positive: bool = True, volume: float = 8.0, shift: float | None = 4.0) -> Findings:
    slices = [SliceProbability(f"1.2.3.4.{n}", 0.9 if positive else 0.1) for n in range(6)]
    lesion = Lesion(
        first_slice=2,
        last_slice=3,
        key_slice=2,
        key_sop_instance_uid="1.2.3.4.2",
        outline=[(1.0, 1.0), (5.0, 1.0), (3.0, 4.0)],
        area_mm2=300.0,
        longest_diameter_mm=25.0,
        volume_ml=volume,
        mean_hu=70.0,
        probability=0.95,
        place=Place("right", "supratentorial", "parietal", "intra-axial"),
        abc2_volume_ml=volume * 1.1,
        severity="small",
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
        midline_shift_mm=shift if positive else None,
        anatomy_read=positive,
    )


def _notice(findings: Findings, message_id: str, replaces: str | None = None) -> dict[str, Any]:
    return notice_of(findings, message_id, replaces)


def _hook(name: str = "hook", **rule: Any) -> Destination:
    return Destination(name, kind="webhook", url="http://127.0.0.1:9/hook", secret="s", **rule)


def test_a_notice_meets_its_schema() -> None:
    Draft202012Validator(NOTICE_SCHEMA).validate(_notice(_findings(), "1.2.5"))
    Draft202012Validator(NOTICE_SCHEMA).validate(_notice(_findings(False), "1.2.6", "1.2.5"))


@pytest.mark.parametrize(
    ("rule", "findings", "sent"),
    [
        ({}, _findings(), True),
        ({}, _findings(False), False),
        ({"send_on": "all"}, _findings(False), True),
        ({"min_volume_ml": 10.0}, _findings(volume=8.0), False),
        ({"min_volume_ml": 5.0}, _findings(volume=8.0), True),
        ({"min_midline_shift_mm": 5.0}, _findings(shift=-4.0), False),
        ({"min_midline_shift_mm": 3.0}, _findings(shift=-4.0), True),
        ({"min_midline_shift_mm": 3.0}, _findings(shift=None), False),
        ({"min_probability": 0.99}, _findings(), False),
        ({"modalities": ("MR",)}, _findings(), False),
        ({"modalities": ("ct",)}, _findings(), True),
        ({"calling_ae_titles": ("OTHER",)}, _findings(), False),
        ({"body_part_patterns": ("*HEAD*",)}, _findings(), True),
        ({"body_part_patterns": ("CHEST",)}, _findings(), False),
    ],
)
def test_a_rule_decides_which_notices_a_destination_gets(
    rule: dict[str, Any], findings: Findings, sent: bool
) -> None:
    assert wants(_hook(**rule), _notice(findings, "1.2.5")) is sent


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({"kind": "webhook", "url": "http://x/h"}, "secret_file"),
        ({"kind": "webhook", "url": "not a url", "secret": "s"}, "url"),
        ({"kind": "fhir", "url": "http://x:70000/fhir"}, "url"),
        ({"kind": "hl7", "port": 2575}, "host"),
        ({"kind": "hl7", "host": "h", "port": 0}, "port"),
        ({"kind": "dimse", "host": "h", "ae_title": "PACS", "min_volume_ml": 5.0}, "min_volume_ml"),
        (
            {"kind": "webhook", "url": "http://x/h", "secret": "s", "min_probability": 2.0},
            "min_probability",
        ),
    ],
)
def test_bad_notification_settings_name_their_key(settings: dict[str, Any], key: str) -> None:
    with pytest.raises(SettingsError, match=rf"destinations\[d\]\.{key}"):
        Destination("d", **settings)


class Recorder:
    """A sender that records the order of destinations and answers as told."""

    def __init__(self, log: list[str], outcome: str = "sent") -> None:
        self.log, self.outcome = log, outcome

    def __call__(self, paths: Sequence[Path], destination: Destination) -> list[SendResult]:
        self.log.append(destination.name)
        status = 200 if self.outcome == "sent" else 400
        return [SendResult(path, status, self.outcome, "as told") for path in paths]


@pytest.fixture
def env(tmp_path: Path):  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'radassist.db'}"
    upgrade(url)
    db = Database(make_engine(url))
    yield db, tmp_path
    db.dispose()


def _outbox(
    db: Database,
    data_dir: Path,
    destinations: list[Destination],
    log: list[str],
    outcome: str = "sent",
) -> Outbox:
    senders = {kind: Recorder(log, outcome) for kind in ("dimse", "webhook", "hl7", "fhir")}
    return Outbox(db, destinations, DeliverySettings(max_attempts=5), data_dir, senders)


def _queue(
    db: Database,
    outbox: Outbox,
    data_dir: Path,
    kind: ResultKind,
    uid: str,
    notice: dict[str, Any] | None = None,
) -> None:
    path = data_dir / f"{uid}.json"
    path.write_bytes(notice_bytes(notice) if notice else b"DICM")
    with db.sessions() as session, session.begin():
        result = record_result(session, kind, uid, path.name, utcnow())
        outbox.add(session, result, notice)


def _rows(db: Database) -> list[tuple[str, str, DeliveryState]]:
    with db.sessions() as session:
        rows = session.execute(
            select(ResultObject.sop_instance_uid, Delivery.destination, Delivery.state)
            .join(ResultObject, ResultObject.id == Delivery.result_pk)
            .order_by(Delivery.id)
        ).all()
    return [(r.sop_instance_uid, r.destination, r.state) for r in rows]


def test_objects_go_to_dicom_peers_and_notices_to_those_whose_rule_they_meet(env) -> None:  # type: ignore[no-untyped-def]
    db, data_dir = env
    pacs = Destination("pacs", host="127.0.0.1", port=104, ae_title="PACS")
    large_only = _hook("large", min_volume_ml=20.0)
    log: list[str] = []
    outbox = _outbox(db, data_dir, [pacs, _hook(), large_only], log)
    _queue(db, outbox, data_dir, ResultKind.SR, "1.2.10")
    _queue(
        db, outbox, data_dir, ResultKind.NOTICE, "1.2.11", _notice(_findings(volume=8.0), "1.2.11")
    )
    assert [(uid, name) for uid, name, _ in _rows(db)] == [("1.2.10", "pacs"), ("1.2.11", "hook")]
    assert outbox.deliver_due() == 2
    assert log == ["hook", "pacs"]  # the notification leaves first


def test_a_correction_goes_where_the_notice_it_corrects_went(env) -> None:  # type: ignore[no-untyped-def]
    """A positive told to the hook, then the series analysed again as negative: the hook
    (positives only) still gets the correction; another hook never told gets nothing."""
    db, data_dir = env
    late = _hook("late", send_on="positive")
    log: list[str] = []
    outbox = _outbox(db, data_dir, [_hook()], log)
    _queue(db, outbox, data_dir, ResultKind.NOTICE, "1.2.11", _notice(_findings(), "1.2.11"))
    outbox = _outbox(db, data_dir, [_hook(), late], log)
    correction = _notice(_findings(False), "1.2.12", replaces="1.2.11")
    assert correction["status"] == "corrected"
    _queue(db, outbox, data_dir, ResultKind.NOTICE, "1.2.12", correction)
    assert [(uid, name) for uid, name, _ in _rows(db)] == [("1.2.11", "hook"), ("1.2.12", "hook")]


def test_a_lasting_refusal_is_not_retried(env) -> None:  # type: ignore[no-untyped-def]
    db, data_dir = env
    log: list[str] = []
    outbox = _outbox(db, data_dir, [_hook()], log, outcome="rejected")
    _queue(db, outbox, data_dir, ResultKind.NOTICE, "1.2.11", _notice(_findings(), "1.2.11"))
    assert outbox.deliver_due() == 0
    with db.sessions() as session:
        delivery = session.scalars(select(Delivery)).one()
        assert (delivery.state, delivery.attempts, delivery.peer_status) == (
            DeliveryState.FAILED,
            1,
            400,
        )
        assert delivery.last_error == "as told"


def test_a_destination_that_only_notifies_needs_no_dicom(env) -> None:  # type: ignore[no-untyped-def]
    db, data_dir = env
    log: list[str] = []
    outbox = _outbox(db, data_dir, [replace(_hook(), name="only")], log)
    _queue(db, outbox, data_dir, ResultKind.SR, "1.2.10")
    assert _rows(db) == []
