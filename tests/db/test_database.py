"""The schema and the ingest path on SQLite and on PostgreSQL, always through migrations."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, select

from assistant.cli import build_receiver
from assistant.db import (
    Base,
    CompletionReason,
    Instance,
    Patient,
    Series,
    SeriesState,
    Study,
    make_engine,
)
from assistant.db.migrate import DatabaseNotMigrated, downgrade, is_up_to_date, upgrade
from assistant.intake.receiver import Receiver
from dicom_node import send_files
from tests.support.ct import dicom_files, shared_ct

TABLES = {"patient", "study", "series", "instance"}


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_migrations_upgrade_and_downgrade(database_url: str) -> None:
    upgrade(database_url)
    assert _tables(database_url) >= TABLES
    engine = make_engine(database_url)
    assert is_up_to_date(engine)
    engine.dispose()
    downgrade(database_url, "base")
    assert not TABLES & _tables(database_url)
    upgrade(database_url)
    assert _tables(database_url) >= TABLES


def test_migrations_match_the_models(database_url: str) -> None:
    # A model changed without its migration (or the reverse) would pass every test on a
    # fresh database and break the first site that upgrades.
    upgrade(database_url)
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    finally:
        engine.dispose()
    assert differences == []


def test_node_refuses_a_database_that_is_not_migrated(make_settings, database_url: str) -> None:
    with pytest.raises(DatabaseNotMigrated, match="radassist db upgrade"):
        build_receiver(make_settings(database_url=database_url))


def test_received_series_is_recorded(
    start_node: Callable[..., Receiver], database_url: str
) -> None:
    node = start_node(database_url=database_url)
    files = dicom_files(shared_ct("philips_brain_phantom_5mm"))
    results = send_files(
        files, host="127.0.0.1", port=node.scp.port, called_ae="RADASSIST", calling_ae="MODALITY"
    )
    assert [r.outcome for r in results] == ["sent"] * len(files)
    with node.db.sessions() as session:
        patient = session.scalars(select(Patient)).one()
        study = session.scalars(select(Study)).one()
        series = session.scalars(select(Series)).one()
        instances = session.scalars(select(Instance).order_by(Instance.slice_position)).all()
    assert study.patient_pk == patient.id and series.study_pk == study.id
    assert series.modality == "CT" and series.calling_ae_title == "MODALITY"
    assert series.instance_count == len(files) == len(instances)
    positions = [i.slice_position for i in instances]
    assert all(b - a == pytest.approx(5.0, abs=0.01) for a, b in itertools.pairwise(positions))
    for instance in instances:
        assert (node.settings.storage.data_dir / instance.path).is_file()
        assert instance.transfer_syntax_uid == "1.2.840.10008.1.2.1"


def test_the_same_study_twice_is_recorded_once(
    start_node: Callable[..., Receiver], database_url: str
) -> None:
    node = start_node(database_url=database_url)
    files = dicom_files(shared_ct("philips_brain_phantom_5mm"))[:6]
    for _ in range(2):
        results = send_files(files, host="127.0.0.1", port=node.scp.port, called_ae="RADASSIST")
        assert all(r.outcome == "sent" for r in results)
    with node.db.sessions() as session:
        assert len(session.scalars(select(Instance)).all()) == 6
        assert session.scalars(select(Series)).one().instance_count == 6


def test_quiet_period_completion_with_a_clock(
    start_node: Callable[..., Receiver], database_url: str
) -> None:
    """Completion decides from database timestamps only, so it is checked on both backends."""
    from assistant.db import utcnow
    from assistant.intake.completion import SeriesCompletion
    from assistant.settings import CompletionSettings

    node = start_node(database_url=database_url)
    files = dicom_files(shared_ct("ge_head_tilted"))  # irregular spacing: no early completion
    send_files(files, host="127.0.0.1", port=node.scp.port, called_ae="RADASSIST")
    now = utcnow()
    settings = CompletionSettings(quiet_seconds=10)
    early = SeriesCompletion(node.db, settings, clock=lambda: now + timedelta(seconds=5))
    assert early.sweep() == []
    late = SeriesCompletion(node.db, settings, clock=lambda: now + timedelta(seconds=11))
    [done] = late.sweep()
    assert done.reason is CompletionReason.QUIET_PERIOD and done.instance_count == 28
    assert late.sweep() == []  # never completed twice
    with node.db.sessions() as session:
        series = session.scalars(select(Series)).one()
    assert series.state is SeriesState.COMPLETE and series.completed_at is not None


def test_files_whose_rows_were_lost_are_recorded_after_an_unclean_stop(
    start_node: Callable[..., Receiver], database_url: str
) -> None:
    """A power loss can drop the last SQLite commits; the fsync'd files bring them back."""
    node = start_node(database_url=database_url)
    files = dicom_files(shared_ct("philips_brain_phantom_5mm"))[:4]
    send_files(files, host="127.0.0.1", port=node.scp.port, called_ae="RADASSIST")
    node.stop()
    with node.db.engine.begin() as connection:  # lose two rows, as a crash could
        lost = connection.scalars(select(Instance.id).limit(2)).all()
        connection.execute(Instance.__table__.delete().where(Instance.id.in_(lost)))
    marker = node.settings.storage.data_dir / "receiver.running"
    marker.touch()  # what a crash leaves behind

    again = build_receiver(node.settings)
    again.start()
    try:
        with again.db.sessions() as session:
            assert len(session.scalars(select(Instance)).all()) == 4
    finally:
        again.stop()
    assert not marker.exists()
