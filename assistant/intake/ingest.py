"""What the DICOM node does with an instance: keep the file, record it, feed completion.

:class:`Ingest` is the :class:`dicom_node.InstanceSink` the SCP is built with (and the
STOW-RS endpoint will use the same path). It returns only once the file is on disk and
its row is committed; anything else raises, and the SCP answers a failure status.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from sqlalchemy import Connection, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from assistant.db import (
    Database,
    Instance,
    InstanceChange,
    InstanceChangeAction,
    Patient,
    Series,
    SeriesState,
    Study,
    utcnow,
)
from assistant.geometry import position_along, slice_normal
from assistant.intake.completion import SeriesCompletion
from assistant.intake.resend import same_content
from assistant.settings import CHANGED_DUPLICATE_POLICIES
from assistant.storage import InstanceStore, InvalidUID
from dicom_node import AssociationSummary, ReceivedInstance, Status, StoreRefused

LOGGER = logging.getLogger(__name__)


def _text(header: Dataset, keyword: str, length: int) -> str:
    """A header value as text that fits its column (values are never trusted to fit)."""
    value = header.get(keyword)
    if value is None:
        return ""
    try:
        text = str(value).strip()
    except Exception:  # an undecodable value is not worth refusing the instance for
        return ""
    return text[:length]


def _integer(header: Dataset, keyword: str) -> int | None:
    try:
        value = header.get(keyword)
        return None if value in (None, "") else int(value)
    except (TypeError, ValueError, OverflowError):
        return None


def slice_thickness(header: Dataset) -> float | None:
    """Slice Thickness (mm): the image's, or a multi-frame image's shared pixel measures';
    None where absent or not a positive number (routes then fall back to no condition)."""
    try:
        value = header.get("SliceThickness")
        if value in (None, ""):
            shared = header.get("SharedFunctionalGroupsSequence")
            measures = shared[0].get("PixelMeasuresSequence") if shared else None
            value = measures[0].get("SliceThickness") if measures else None
        thickness = None if value in (None, "") else float(value)
    except (TypeError, ValueError, OverflowError, IndexError, AttributeError):
        return None
    return thickness if thickness is not None and 0 < thickness < 1000 else None


def slice_geometry(header: Dataset) -> tuple[float | None, str]:
    """Position along the slice normal (mm) and the orientation text, where present.

    A multi-frame image has no one position (its frames have theirs): its orientation is
    the shared functional groups' (or the first frame's), its position None."""
    try:
        orientation = [float(v) for v in header.ImageOrientationPatient]
        position = [float(v) for v in header.ImagePositionPatient]
    except (AttributeError, TypeError, ValueError):
        return None, _frames_orientation(header)
    if len(orientation) != 6 or len(position) != 3:
        return None, ""
    along = position_along(slice_normal(orientation), position)
    return along, _orientation_text(orientation)


def _orientation_text(orientation: list[float]) -> str:
    return "\\".join(f"{v:g}" for v in orientation)[:128]


def _frames_orientation(header: Dataset) -> str:
    for keyword in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        try:
            group = header.get(keyword)[0]
            values = [float(v) for v in group.PlaneOrientationSequence[0].ImageOrientationPatient]
        except (AttributeError, IndexError, KeyError, TypeError, ValueError):
            continue
        if len(values) == 6:
            return _orientation_text(values)
    return ""


def _instance_from_file(path: Path, study: str, series: str, sop: str) -> ReceivedInstance:
    """A stored file described as the SCP described it on arrival (for re-recording)."""
    header = dcmread(path, stop_before_pixels=True)
    meta = header.file_meta
    return ReceivedInstance(
        association_id=0,
        calling_ae_title=str(meta.get("SourceApplicationEntityTitle", "")).strip(),
        sop_class_uid=str(meta.MediaStorageSOPClassUID),
        sop_instance_uid=sop,
        study_instance_uid=study,
        series_instance_uid=series,
        transfer_syntax_uid=str(meta.TransferSyntaxUID),
        header=header,
        file_meta_bytes=b"",
        encoded=memoryview(b""),
    )


@dataclass(frozen=True)
class _SeriesKey:
    pk: int
    state: SeriesState


class Ingest:
    """Stores instances for the SCP and STOW-RS, and tells completion when peers finish."""

    def __init__(
        self,
        store: InstanceStore,
        db: Database,
        data_dir: Path,
        completion: SeriesCompletion,
        on_changed_duplicate: str = "replace",
    ) -> None:
        self._store = store
        if on_changed_duplicate not in CHANGED_DUPLICATE_POLICIES:
            raise ValueError(f"unknown on_changed_duplicate policy {on_changed_duplicate!r}")
        self._on_changed_duplicate = on_changed_duplicate
        self._engine = db.engine
        self._write_lock = db.write_lock
        self._data_dir = data_dir
        self._completion = completion
        #: Study Instance UID → (Patient ID, issuer) as committed: a study's patient never
        #: changes (another one's instances are refused), so the check before each
        #: C-STORE reads the database once a study, not once an instance.
        self._study_patients: dict[str, tuple[str, str]] = {}

    # -- InstanceSink --------------------------------------------------------------------

    def store(self, instance: ReceivedInstance) -> None:
        # Before a byte is written: an instance of another patient must not even replace a
        # file of this study (a re-sent SOP Instance UID lands on the same path).
        self._check_patient(instance)
        try:
            stored = self._store.write(
                instance.study_instance_uid,
                instance.series_instance_uid,
                instance.sop_instance_uid,
                instance.file_chunks(),
            )
        except InvalidUID as exc:
            raise StoreRefused(Status.MISSING_OR_INVALID_UID, str(exc)) from exc
        relative = stored.path.relative_to(self._data_dir).as_posix()
        if not stored.created and not same_content(stored.path, instance):
            try:
                with self._store.changes_lock(stored.path):
                    # Under the lock, against the file as it is now (another process may
                    # have just put this very copy in place).
                    if not same_content(stored.path, instance):
                        self._changed_copy(instance, stored.path)
                        return
            except OperationalError as exc:
                LOGGER.error("database unavailable while recording a changed copy: %s", exc.orig)
                raise StoreRefused(Status.OUT_OF_RESOURCES, "database unavailable") from exc
        for attempt in (1, 2):
            try:
                self._record(instance, relative, stored.size_bytes)
                return
            except IntegrityError:
                # Another association created the same patient/study/series (or stored
                # the same instance) between our read and our write: read again.
                if attempt == 2:
                    raise
            except OperationalError as exc:
                LOGGER.error("database unavailable while recording an instance: %s", exc.orig)
                raise StoreRefused(Status.OUT_OF_RESOURCES, "database unavailable") from exc

    # -- a changed copy of a stored instance -------------------------------------------

    def _changed_copy(self, instance: ReceivedInstance, final: Path) -> None:
        """Apply storage.on_changed_duplicate to a copy whose content differs from the
        stored file. Called under the series' changes lock (see InstanceStore)."""
        row = self._instance_row(instance.sop_instance_uid)
        stamp = utcnow().strftime("%Y%m%dT%H%M%S%fZ")
        if row is None:
            # The first copy is on disk but its row is not committed yet (another
            # association is recording it): keep this one and have the sender try again.
            kept = self._store.keep_beside(
                final, instance.file_chunks(), f"{instance.sop_instance_uid}.not-used-{stamp}.dcm"
            )
            LOGGER.warning(
                "a changed copy arrived while the first copy was being recorded; kept as %s, "
                "the sender is asked to try again",
                self._relative(kept),
            )
            raise StoreRefused(
                Status.OUT_OF_RESOURCES,
                "the first copy of this instance is still being recorded; try again",
            )
        policy = self._on_changed_duplicate
        if policy == "reject":
            self._record_change(instance, row, InstanceChangeAction.REFUSED, "", row.version)
            LOGGER.warning(
                "instance of series %d sent again with other content; refused "
                "(storage.on_changed_duplicate = reject)",
                row.series_pk,
            )
            raise StoreRefused(
                Status.CHANGED_DUPLICATE,
                "this SOP Instance UID is stored with other content; changed copies are refused",
            )
        if policy == "keep-first":
            kept = self._store.keep_beside(
                final, instance.file_chunks(), f"{instance.sop_instance_uid}.not-used-{stamp}.dcm"
            )
            self._record_change(
                instance, row, InstanceChangeAction.KEPT_FIRST, self._relative(kept), row.version
            )
            LOGGER.warning(
                "instance of series %d sent again with other content; the first copy stays "
                "in use, the changed one is kept as %s",
                row.series_pk,
                self._relative(kept),
            )
            return
        version = row.version
        while (self._store.versions_folder(final) / _version_name(final.stem, version)).exists():
            version += 1  # a name left by a crash that start-up has not looked at yet
        earlier = self._store.replace(
            final, instance.file_chunks(), _version_name(final.stem, version)
        )
        try:
            self._record_change(
                instance,
                row,
                InstanceChangeAction.REPLACED,
                self._relative(earlier),
                version + 1,
                final.stat().st_size,
            )
        except BaseException:
            # Unrecorded, the swap would make the sender's retry look identical and the
            # correction would never be analysed: the recorded copy goes back.
            self._store.restore(earlier, final)
            raise
        LOGGER.warning(
            "instance of series %d replaced by the sender (version %d; the earlier copy is "
            "kept as %s); the series is analysed again",
            row.series_pk,
            version + 1,
            self._relative(earlier),
        )

    def _instance_row(self, sop_uid: str, wait_seconds: float = 2.0) -> Any:
        """The instance's row, waiting a little for a commit in flight on another
        association; None when it has not appeared by then."""
        deadline = time.monotonic() + wait_seconds
        while True:
            with self._write_lock, self._engine.connect() as connection:
                row = connection.execute(_INSTANCE_VERSION, {"uid": sop_uid}).first()
            if row is not None or time.monotonic() >= deadline:
                return row
            time.sleep(0.05)

    def _relative(self, path: Path) -> str:
        return path.relative_to(self._data_dir).as_posix()

    def _record_change(
        self,
        instance: ReceivedInstance,
        row: Any,
        action: InstanceChangeAction,
        kept_path: str,
        version: int,
        size: int | None = None,
    ) -> None:
        """Record a changed copy; a replacement also updates the instance and reopens
        (or keeps open) its series, so that the correction is analysed."""
        now = utcnow()
        with self._write_lock, self._engine.begin() as connection:
            connection.execute(
                insert(InstanceChange).values(
                    instance_pk=row.id,
                    series_pk=row.series_pk,
                    action=action.value,
                    version=version,
                    kept_path=kept_path,
                    calling_ae_title=instance.calling_ae_title[:16],
                    received_at=now,
                )
            )
            state = connection.scalar(select(Series.state).where(Series.id == row.series_pk))
            if action is not InstanceChangeAction.REPLACED:
                if state is SeriesState.RECEIVING:
                    connection.execute(_STILL_SENDING, {"pk": row.series_pk, "now": now})
                return
            position, orientation = slice_geometry(instance.header)
            connection.execute(
                update(Instance)
                .where(Instance.id == row.id)
                .values(
                    version=version,
                    sop_class_uid=instance.sop_class_uid,
                    transfer_syntax_uid=instance.transfer_syntax_uid,
                    instance_number=_integer(instance.header, "InstanceNumber"),
                    frame_count=max(1, _integer(instance.header, "NumberOfFrames") or 1),
                    slice_position=position,
                    image_orientation=orientation,
                    size_bytes=size if size is not None else row.size_bytes,
                    calling_ae_title=instance.calling_ae_title[:16],
                    received_at=now,
                )
            )
            self._correct_patient_and_study(connection, instance.header, row.series_pk)
            reopen = state is not SeriesState.RECEIVING
            connection.execute(
                _REOPEN_UNCOUNTED if reopen else _STILL_SENDING, {"pk": row.series_pk, "now": now}
            )
        if reopen:
            LOGGER.info(
                "series %d reopened: an instance was replaced after it was %s", row.series_pk, state
            )

    @staticmethod
    def _correct_patient_and_study(connection: Connection, header: Dataset, series_pk: int) -> None:
        """A replacing copy's patient and study attributes are the sender's correction
        (a misspelt name, a wrong accession number): the dashboard, the API and QIDO-RS
        show them as the new SR does. Patient ID and issuer cannot change (checked)."""
        study_pk = connection.scalar(select(Series.study_pk).where(Series.id == series_pk))
        patient_pk = connection.scalar(select(Study.patient_pk).where(Study.id == study_pk))
        connection.execute(
            update(Patient).where(Patient.id == patient_pk).values(**_patient_attributes(header))
        )
        connection.execute(
            update(Study).where(Study.id == study_pk).values(**_study_attributes(header))
        )

    def _check_patient(self, instance: ReceivedInstance) -> None:
        uid = instance.study_instance_uid
        known = self._study_patients.get(uid)
        if known is None:
            with self._write_lock, self._engine.connect() as connection:
                study = connection.execute(_STUDY_PATIENT, {"uid": uid}).first()
            if study is None:  # a new study: _series checks its first instances
                return
            known = (study.patient_id, study.issuer_of_patient_id)
            if len(self._study_patients) >= 10_000:  # bounded; refilled as studies arrive
                self._study_patients.clear()
            self._study_patients[uid] = known
        _same_patient(_patient(instance.header), known)

    def record_unrecorded_files(self) -> int:
        """Record instance files that are on disk but not in the database; return how many.

        Every file was fsync'd before its Success; after a power loss or OS crash an
        SQLite commit made just before may be gone (see assistant/db/session.py). The
        receiver runs this at start-up after an unclean stop.
        """
        with self._engine.connect() as connection:
            known = set(connection.scalars(select(Instance.path)))
        recorded = 0
        for study, series, sop, path in self._store.stored_files():
            relative = path.relative_to(self._data_dir).as_posix()
            if relative in known:
                continue
            try:
                instance = _instance_from_file(path, study, series, sop)
            except Exception:  # leave it for a person; never delete received data
                LOGGER.exception("cannot read back %s; left in place", relative)
                continue
            try:
                self._record(instance, relative, path.stat().st_size)
            except StoreRefused as refusal:  # e.g. another patient's than its study's
                LOGGER.error("%s not recorded: %s; left in place", relative, refusal.reason)
                continue
            recorded += 1
        return recorded

    def record_unrecorded_replacements(self) -> int:
        """Record replacements whose files were swapped but whose row was not updated
        (a process killed between the two): a kept ``<sop>.v<N>.dcm`` with N at or above
        the row's version means the file in use is version N + 1. A kept name that is
        still the file in use (killed before the swap) is only a link: removed. Run at
        every start; returns how many were recorded."""
        recorded = 0
        for study, series, sop, version, path in self._store.earlier_versions():
            final = self._store.path_for(study, series, sop)
            with self._store.changes_lock(final):
                if final.exists() and path.samefile(final):
                    path.unlink()
                    continue
                row = self._instance_row(sop, wait_seconds=0)
                if row is None or row.version > version:
                    continue
                try:
                    instance = _instance_from_file(final, study, series, sop)
                except Exception:
                    LOGGER.exception("cannot read back %s; left in place", final)
                    continue
                self._record_change(
                    instance,
                    row,
                    InstanceChangeAction.REPLACED,
                    self._relative(path),
                    version + 1,
                    final.stat().st_size,
                )
                recorded += 1
        return recorded

    def association_ended(self, summary: AssociationSummary) -> None:
        if summary.released and summary.series:
            self._completion.association_released([series for _study, series in summary.series])

    # -- recording ---------------------------------------------------------------------

    def _record(self, instance: ReceivedInstance, relative_path: str, size: int) -> None:
        """Insert the instance row and touch its series, in one transaction.

        Core statements built once (at the end of this module) on a plain connection:
        this runs once per C-STORE, and building statements every time would cost
        several times the commit itself.
        """
        header = instance.header
        now = utcnow()
        with self._write_lock, self._engine.begin() as connection:
            series = self._series(connection, instance, now)
            if connection.scalar(_INSTANCE_EXISTS, {"uid": instance.sop_instance_uid}):
                # A sender going over the series again (as after a failed transfer) is
                # still sending it: not quiet yet.
                if series.state is SeriesState.RECEIVING:
                    connection.execute(_STILL_SENDING, {"pk": series.pk, "now": now})
                LOGGER.info("duplicate instance in series %d stored once", series.pk)
                return
            position, orientation = slice_geometry(header)
            connection.execute(
                _INSERT_INSTANCE,
                {
                    "sop_instance_uid": instance.sop_instance_uid,
                    "series_pk": series.pk,
                    "sop_class_uid": instance.sop_class_uid,
                    "transfer_syntax_uid": instance.transfer_syntax_uid,
                    "instance_number": _integer(header, "InstanceNumber"),
                    "frame_count": max(1, _integer(header, "NumberOfFrames") or 1),
                    "slice_position": position,
                    "image_orientation": orientation,
                    "path": relative_path,
                    "size_bytes": size,
                    "calling_ae_title": instance.calling_ae_title[:16],
                    "received_at": now,
                },
            )
            reopened = series.state is not SeriesState.RECEIVING
            touch = _REOPEN_SERIES if reopened else _TOUCH_SERIES
            connection.execute(touch, {"pk": series.pk, "now": now})
        if reopened:
            LOGGER.info(
                "series %d reopened: an instance arrived after it was %s", series.pk, series.state
            )

    def _series(
        self, connection: Connection, instance: ReceivedInstance, now: datetime
    ) -> _SeriesKey:
        header = instance.header
        patient = _patient(header)
        row = connection.execute(_FIND_SERIES, {"uid": instance.series_instance_uid}).first()
        if row is not None:
            _same_patient(patient, (row.patient_id, row.issuer_of_patient_id))
            return _SeriesKey(row.id, row.state)
        study = connection.execute(
            select(Study.id, Patient.patient_id, Patient.issuer_of_patient_id)
            .join(Patient, Patient.id == Study.patient_pk)
            .where(Study.study_instance_uid == instance.study_instance_uid)
        ).first()
        if study is None:
            study_pk = self._create_study(connection, instance, now)
        else:
            _same_patient(patient, (study.patient_id, study.issuer_of_patient_id))
            study_pk = study.id
        # INSERT ... RETURNING yields exactly one row: scalar_one(), not the Optional scalar().
        series_pk = connection.execute(
            insert(Series)
            .values(
                series_instance_uid=instance.series_instance_uid,
                study_pk=study_pk,
                modality=_text(header, "Modality", 16),
                series_number=_integer(header, "SeriesNumber"),
                series_description=_text(header, "SeriesDescription", 64),
                body_part_examined=_text(header, "BodyPartExamined", 16),
                slice_thickness_mm=slice_thickness(header),
                calling_ae_title=instance.calling_ae_title[:16],
                instance_count=0,
                state=SeriesState.RECEIVING,
                first_received_at=now,
                last_received_at=now,
                reopened_count=0,
            )
            .returning(Series.id)
        ).scalar_one()
        return _SeriesKey(series_pk, SeriesState.RECEIVING)

    def _create_study(
        self, connection: Connection, instance: ReceivedInstance, now: datetime
    ) -> int:
        header = instance.header
        patient_id = _text(header, "PatientID", 64)
        issuer = _text(header, "IssuerOfPatientID", 64)
        patient_pk = connection.scalar(
            select(Patient.id).where(
                Patient.patient_id == patient_id, Patient.issuer_of_patient_id == issuer
            )
        )
        if patient_pk is None:
            patient_pk = connection.scalar(
                insert(Patient)
                .values(
                    patient_id=patient_id,
                    issuer_of_patient_id=issuer,
                    created_at=now,
                    **_patient_attributes(header),
                )
                .returning(Patient.id)
            )
        return int(
            connection.execute(
                insert(Study)
                .values(
                    study_instance_uid=instance.study_instance_uid,
                    patient_pk=patient_pk,
                    study_id=_text(header, "StudyID", 16),
                    received_at=now,
                    **_study_attributes(header),
                )
                .returning(Study.id)
            ).scalar_one()
        )


def _patient_attributes(header: Dataset) -> dict[str, str]:
    """The patient's columns a header sets (at its first study, and when a sender's
    replacing copy corrects them)."""
    return {
        "patient_name": _text(header, "PatientName", 324),
        "birth_date": _text(header, "PatientBirthDate", 8),
        "sex": _text(header, "PatientSex", 16),
    }


def _study_attributes(header: Dataset) -> dict[str, str]:
    """The study's columns a header sets, as for the patient's."""
    return {
        "study_date": _text(header, "StudyDate", 8),
        "study_time": _text(header, "StudyTime", 16),
        "accession_number": _text(header, "AccessionNumber", 16),
        "study_description": _text(header, "StudyDescription", 64),
        "referring_physician_name": _text(header, "ReferringPhysicianName", 324),
    }


def _version_name(sop_uid: str, version: int) -> str:
    """The name a replaced copy is kept under in the series' versions/ folder."""
    return f"{sop_uid}.v{version}.dcm"


def _patient(header: Dataset) -> tuple[str, str]:
    """(Patient ID, Issuer of Patient ID) as recorded."""
    return _text(header, "PatientID", 64), _text(header, "IssuerOfPatientID", 64)


def _same_patient(instance: tuple[str, str], study: tuple[str, str]) -> None:
    """Refuse an instance whose patient (Patient ID and its issuer) is not its study's:
    two patients' images are never merged into one study, silently or otherwise."""
    if instance != study:
        raise StoreRefused(
            Status.PATIENT_MISMATCH,
            "Patient ID or its issuer differs from the study's already stored",
        )


# Statements of the per-instance path, built once.
_STUDY_PATIENT = (
    select(Patient.patient_id, Patient.issuer_of_patient_id)
    .join(Study, Study.patient_pk == Patient.id)
    .where(Study.study_instance_uid == bindparam("uid"))
)
_FIND_SERIES = (
    select(Series.id, Series.state, Patient.patient_id, Patient.issuer_of_patient_id)
    .join(Study, Study.id == Series.study_pk)
    .join(Patient, Patient.id == Study.patient_pk)
    .where(Series.series_instance_uid == bindparam("uid"))
)
_INSTANCE_EXISTS = select(Instance.id).where(Instance.sop_instance_uid == bindparam("uid"))
_INSTANCE_VERSION = select(
    Instance.id, Instance.series_pk, Instance.version, Instance.size_bytes
).where(Instance.sop_instance_uid == bindparam("uid"))
_INSERT_INSTANCE = insert(Instance)
_TOUCH_SERIES = (
    update(Series)
    .where(Series.id == bindparam("pk"))
    .values(last_received_at=bindparam("now"), instance_count=Series.instance_count + 1)
)
_STILL_SENDING = (
    update(Series).where(Series.id == bindparam("pk")).values(last_received_at=bindparam("now"))
)
_REOPEN_UNCOUNTED = _STILL_SENDING.values(
    state=SeriesState.RECEIVING,
    completed_at=None,
    completion_reason=None,
    reopened_count=Series.reopened_count + 1,
)
_REOPEN_SERIES = _TOUCH_SERIES.values(
    state=SeriesState.RECEIVING,
    completed_at=None,
    completion_reason=None,
    reopened_count=Series.reopened_count + 1,
)
