"""The registry and routes on SQLite and PostgreSQL: adding checked model folders,
refusing bad ones with a one-line reason, states and their audit, and the jobs a
complete series gets from the routes (live, shadow, none)."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from pydicom import dcmread
from pynetdicom import AE
from sqlalchemy import select

from assistant.analysis.imaging.synthetic import write_demo_series
from assistant.analysis.model.card import CARD_FILE, ModelCardError
from assistant.analysis.model.folder import ModelIntegrityError
from assistant.analysis.model.registering import ModelCheckFailed, add_model
from assistant.cli import register_first_model
from assistant.db import AuditEvent, Database, Job, JobState, ModelState
from assistant.intake.receiver import Receiver
from assistant.registry import Registry, RegistryError, Route, Routes
from assistant.settings import Settings
from tests.helpers import NODE_AE
from tests.peers.tools import wait_until
from tests.support.models import model_variant, rehash

BUNDLED = "radassist-hyperdense:0.1.0"


@pytest.fixture
def db(migrated_url: str) -> Iterator[Database]:
    database = Database.connect(migrated_url)
    yield database
    database.dispose()


@pytest.fixture
def registry(db: Database, tmp_path: Path) -> Registry:
    return Registry(db, tmp_path / "var")


def test_first_start_adds_the_bundled_model_live_and_files_read_only(
    make_settings: Callable[..., Settings], migrated_url: str, db: Database
) -> None:
    settings = make_settings(database_url=migrated_url)
    registry = register_first_model(settings, db)
    register_first_model(settings, db)  # the second process to start adds nothing
    [entry] = registry.models()
    assert (entry.ref, entry.state, entry.slot, entry.format) == (
        BUNDLED,
        ModelState.LIVE,
        0,
        "state_dict",
    )
    assert entry.folder == settings.storage.data_dir / "models" / "radassist-hyperdense" / "0.1.0"
    for path in entry.folder.iterdir():
        assert not path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    assert entry.card["classes"] == ["no finding", "hyperdense lesion"]


def test_add_checks_and_refuses_with_one_line(registry: Registry, tmp_path: Path) -> None:
    good = model_variant(tmp_path / "good", name="site-head", version="2.0")
    entry = add_model(registry, good, state=ModelState.SHADOW, by="test")
    assert (entry.ref, entry.state, entry.slot) == ("site-head:2.0", ModelState.SHADOW, 0)
    with pytest.raises(RegistryError, match="already registered"):
        add_model(registry, good, state=ModelState.SHADOW, by="test")

    tampered = model_variant(tmp_path / "tampered", name="site-head", version="2.1")
    weights = tampered / "weights.pt"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelCheckFailed, match="sha256") as refused:
        add_model(registry, tampered, state=ModelState.SHADOW, by="test")
    assert "\n" not in str(refused.value)

    missing = model_variant(tmp_path / "missing", name="site-head", version="2.2")
    card = json.loads((missing / CARD_FILE).read_text())
    del card["threshold"]
    (missing / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(ModelCardError, match=r"missing field.*threshold"):
        add_model(registry, missing, state=ModelState.SHADOW, by="test")

    # A pickled module (code runs when it is unpickled) in place of the state dict, its
    # hash put in the card: weights_only refuses it before any of it runs.
    pickled = model_variant(tmp_path / "pickled", name="site-head", version="2.3")
    torch.save(torch.nn.Linear(2, 2), pickled / "weights.pt")
    rehash(pickled)
    with pytest.raises(ModelIntegrityError) as refused:
        add_model(registry, pickled, state=ModelState.SHADOW, by="test")
    assert "\n" not in str(refused.value)
    assert [e.ref for e in registry.models()] == ["site-head:2.0"]


def test_states_one_live_version_per_name_and_audited(
    registry: Registry, db: Database, tmp_path: Path
) -> None:
    first = model_variant(tmp_path / "a", name="site-head", version="1")
    second = model_variant(tmp_path / "b", name="site-head", version="2")
    other = model_variant(tmp_path / "c", name="site-chest", version="1")
    add_model(registry, first, state=ModelState.LIVE, by="ada", test_run=False)
    add_model(registry, second, state=ModelState.SHADOW, by="ada", test_run=False)
    add_model(registry, other, state=ModelState.LIVE, by="ada", test_run=False)
    assert registry.get("site-chest").slot == 1 and registry.get("site-head:2").slot == 0
    assert registry.get("site-head").version == "1"  # no version: the live one

    changes = registry.set_state("site-head:2", ModelState.LIVE, by="bob", reason="better")
    assert changes == ["site-head:1: live → retired", "site-head:2: shadow → live"]
    states = {e.ref: e.state for e in registry.models()}
    assert states == {
        "site-head:1": ModelState.RETIRED,
        "site-head:2": ModelState.LIVE,
        "site-chest:1": ModelState.LIVE,  # another name keeps its live version
    }
    assert registry.get("site-head:2").state_changed_by == "bob"
    with db.sessions() as session:
        audit = session.execute(
            select(AuditEvent.username, AuditEvent.action, AuditEvent.target, AuditEvent.detail)
            .where(AuditEvent.username == "bob")
            .order_by(AuditEvent.id)
        ).all()
    assert [(a.action, a.target) for a in audit] == [
        ("model-state", "site-head:1"),
        ("model-state", "site-head:2"),
    ]
    assert "better" in audit[1].detail
    with pytest.raises(RegistryError, match="no model site-head:9"):
        registry.set_state("site-head:9", ModelState.LIVE, by="bob")
    with pytest.raises(RegistryError, match="which version"):
        registry.set_state("site-head", ModelState.LIVE, by="bob")


def test_routes_are_kept_and_checked(db: Database) -> None:
    routes = Routes(db)
    routes.add(
        Route(
            "heads", "site-head", series_description_patterns=("*HEAD*",), max_slice_thickness_mm=5
        ),
        by="ada",
    )
    with pytest.raises(RegistryError, match="exists"):
        routes.add(Route("heads", "other"), by="ada")
    with pytest.raises(RegistryError, match="above the max"):
        Route("thin", "m", min_slice_thickness_mm=3, max_slice_thickness_mm=1)
    [route] = routes.all()
    assert route.describe() == "description *HEAD*, thickness <= 5 mm"
    routes.remove("heads", by="ada")
    assert routes.all() == []
    with pytest.raises(RegistryError, match="no route"):
        routes.remove("heads", by="ada")


def _send_series(
    node: Receiver, folder: Path, description: str, thickness: float, seed: int
) -> str:
    """A 12-slice series with this description and slice thickness, in one association."""
    paths = write_demo_series(folder, count=12, seed=seed)
    datasets = []
    for path in paths:
        dataset = dcmread(path)
        dataset.SeriesDescription = description
        dataset.SliceThickness = thickness
        datasets.append(dataset)
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(datasets[0].SOPClassUID, datasets[0].file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", node.scp.port, ae_title=NODE_AE)
    assert assoc.is_established
    try:
        assert [int(assoc.send_c_store(d).Status) for d in datasets] == [0] * len(datasets)
    finally:
        assoc.release()
    return str(datasets[0].SeriesInstanceUID)


def _jobs(node: Receiver, series_uid: str) -> set[tuple[str, str, bool, JobState, str]]:
    from assistant.db import Series

    with node.db.sessions() as session:
        rows = session.execute(
            select(Job.model_name, Job.model_version, Job.shadow, Job.state, Job.reason)
            .join(Series, Series.id == Job.series_pk)
            .where(Series.series_instance_uid == series_uid)
        ).all()
    return {tuple(row) for row in rows}  # type: ignore[misc]


def test_a_complete_series_gets_a_job_per_routed_model(
    start_node: Callable[..., Receiver], migrated_url: str, tmp_path: Path
) -> None:
    node = start_node(database_url=migrated_url, quiet_seconds=0.3)
    registry = Registry(node.db, node.settings.storage.data_dir)
    add_model(
        registry,
        model_variant(tmp_path / "a", name="radassist-hyperdense", version="0.2.0"),
        state=ModelState.SHADOW,
        by="t",
        test_run=False,
    )
    add_model(
        registry,
        model_variant(tmp_path / "b", name="site-body", version="1"),
        state=ModelState.LIVE,
        by="t",
        test_run=False,
    )
    add_model(
        registry,
        model_variant(tmp_path / "c", name="site-old", version="1"),
        state=ModelState.RETIRED,
        by="t",
        test_run=False,
    )
    routes = Routes(node.db)

    # No route: every live and shadow model reads every selected series.
    everything = _send_series(node, tmp_path / "s1", "HEAD ROUTINE", 5.0, seed=1)
    expected = {
        ("radassist-hyperdense", "0.1.0", False, JobState.QUEUED, ""),
        ("radassist-hyperdense", "0.2.0", True, JobState.QUEUED, ""),
        ("site-body", "1", False, JobState.QUEUED, ""),
    }
    assert wait_until(lambda: _jobs(node, everything) == expected or None), _jobs(node, everything)

    # Routes are read for each series (no restart). A route for one name leaves the
    # others as they were: site-body, with no route yet, still reads every series.
    routes.add(
        Route("heads", "radassist-hyperdense", series_description_patterns=("*HEAD*",)), by="t"
    )
    head = _send_series(node, tmp_path / "s2", "HEAD ROUTINE", 5.0, seed=2)
    assert wait_until(lambda: _jobs(node, head) == expected or None), _jobs(node, head)
    # Thin slices only for site-body: a thick head series is the head model's alone.
    routes.add(Route("body", "site-body", max_slice_thickness_mm=2.0), by="t")
    thick_head = _send_series(node, tmp_path / "s5", "HEAD ROUTINE", 5.0, seed=5)
    assert wait_until(
        lambda: (
            _jobs(node, thick_head)
            == {
                ("radassist-hyperdense", "0.1.0", False, JobState.QUEUED, ""),
                ("radassist-hyperdense", "0.2.0", True, JobState.QUEUED, ""),
            }
            or None
        )
    )
    thin = _send_series(node, tmp_path / "s3", "CHEST THIN", 1.0, seed=3)
    assert wait_until(
        lambda: _jobs(node, thin) == {("site-body", "1", False, JobState.QUEUED, "")} or None
    )
    neither = _send_series(node, tmp_path / "s4", "CHEST", 5.0, seed=4)
    assert wait_until(
        lambda: (
            _jobs(node, neither)
            == {("", "", False, JobState.SKIPPED, "no route sends it to a live or shadow model")}
            or None
        )
    )


def test_model_add_on_the_command_line_refuses_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """What an operator sees: exit status 2 and one line saying why, nothing added."""
    from assistant.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["db", "upgrade"]) == 0
    tampered = model_variant(tmp_path / "tampered", name="site-head", version="3")
    (tampered / "weights.pt").write_bytes(b"not the weights the card hashed")
    capsys.readouterr()
    assert main(["model", "add", str(tampered)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("radassist: ") and "sha256" in error and "\n" not in error
    assert main(["model", "list"]) == 0
    listed = capsys.readouterr().out
    assert "radassist-hyperdense:0.1.0" in listed and "site-head" not in listed
