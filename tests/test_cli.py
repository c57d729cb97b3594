"""The command line: db upgrade, send (per-file status, exit codes), bad settings, what
predict prints."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, select

from assistant.cli import build_parser, main
from assistant.db import Instance
from assistant.findings import Findings, Lesion, ModelIdentity, Place, SliceProbability
from assistant.intake.receiver import Receiver
from tests.helpers import assert_stored_as_sent, instance_count
from tests.support.ct import dicom_files, shared_ct
from tests.support.multiframe import enhanced_ct, legacy_converted, save

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"
LEGACY_CT = "1.2.840.10008.5.1.4.1.1.2.2"


def test_db_upgrade_creates_the_schema(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RADASSIST_STORAGE__DATA_DIR", str(tmp_path / "data"))
    assert main(["db", "upgrade"]) == 0
    engine = create_engine(f"sqlite:///{tmp_path / 'data' / 'radassist.db'}")
    assert {"patient", "study", "series", "instance"} <= set(inspect(engine).get_table_names())
    engine.dispose()
    assert main(["db", "downgrade", "base"]) == 0


@pytest.mark.parametrize(
    "argv",
    [["db", "upgrade", "--config", "{config}"], ["db", "--config", "{config}", "upgrade"]],
    ids=["after-the-action", "before-the-action"],
)
def test_config_is_taken_before_or_after_an_action(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, argv: list[str]
) -> None:
    """DESIGN §5: every subcommand takes --config after its name, actions included."""
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "site.toml"
    config.write_text('[storage]\ndata_dir = "site-data"\n')
    assert main([a.format(config=config) for a in argv]) == 0
    assert (tmp_path / "site-data" / "radassist.db").is_file()
    assert not (tmp_path / "var").exists()


def test_bad_settings_exit_2_naming_the_key(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("RADASSIST_NODE__PORT", "not-a-port")
    assert main(["db", "upgrade"]) == 2
    assert "node.port" in capsys.readouterr().err


def test_send_reports_each_file_and_skips_non_dicom_in_folders(node: Receiver, capsys) -> None:
    folder = shared_ct("philips_brain_phantom_5mm")  # 28 slices and a DIRFILE
    code = main(
        [
            "send",
            str(folder),
            "--host",
            "127.0.0.1",
            "--port",
            str(node.scp.port),
            "--aec",
            "RADASSIST",
        ]
    )
    out = capsys.readouterr()
    assert code == 0
    assert out.out.count("sent     0x0000") == 28
    assert "skipped" in out.out and "DIRFILE" in out.out
    assert instance_count(node) == 28


def test_send_exits_non_zero_when_a_file_fails(node: Receiver, tmp_path: Path, capsys) -> None:
    not_dicom = tmp_path / "notes.txt"
    not_dicom.write_text("not an image")
    good = dicom_files(shared_ct("philips_brain_phantom_5mm"))[0]
    code = main(
        [
            "send",
            str(good),
            str(not_dicom),
            "--host",
            "127.0.0.1",
            "--port",
            str(node.scp.port),
            "--aec",
            "RADASSIST",
        ]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert "failed" in out and "notes.txt" in out
    assert instance_count(node) == 1


def test_send_to_a_peer_that_is_not_there_fails(tmp_path: Path, capsys) -> None:
    good = dicom_files(shared_ct("philips_brain_phantom_5mm"))[0]
    from tests.peers.tools import free_port

    code = main(
        ["send", str(good), "--host", "127.0.0.1", "--port", str(free_port()), "--aec", "NOBODY"]
    )
    assert code == 1
    assert "association" in capsys.readouterr().out


def test_send_carries_multi_frame_objects(node: Receiver, tmp_path: Path, capsys) -> None:
    """`radassist send` proposes a context for every storage class it holds: a single-frame
    slice, a Legacy Converted and an Enhanced CT object go in one association."""
    files = dicom_files(shared_ct("ge_head_tilted"))
    legacy = legacy_converted(files[:12])
    enhanced = enhanced_ct(legacy_converted(files[12:24]))
    sent = [
        files[24],
        save(legacy, tmp_path / "legacy.dcm"),
        save(enhanced, tmp_path / "enhanced.dcm"),
    ]
    peer = ["--host", "127.0.0.1", "--port", str(node.scp.port), "--aec", "RADASSIST"]
    code = main(["send", *map(str, sent), *peer])
    assert code == 0, capsys.readouterr().out
    assert capsys.readouterr().out.count("sent     0x0000") == 3
    assert_stored_as_sent(node, sent, same_syntax=True)
    with node.db.sessions() as session:
        frames = dict(session.execute(select(Instance.sop_class_uid, Instance.frame_count)).all())
    assert frames == {CT_IMAGE: 1, LEGACY_CT: 12, ENHANCED_CT: 12}


def _command_paths() -> list[list[str]]:
    """Every command, and every action of the commands that have them."""
    paths = []
    for choices in _subcommands(build_parser()):
        for name, sub in choices.items():
            actions = [a for found in _subcommands(sub) for a in found]
            paths.extend([[name, action] for action in actions] if actions else [[name]])
    return paths


def _subcommands(parser: argparse.ArgumentParser) -> list[dict[str, argparse.ArgumentParser]]:
    return [
        a.choices  # type: ignore[misc]
        for a in parser._actions
        if isinstance(a, argparse._SubParsersAction)
    ]


@pytest.mark.parametrize("path", _command_paths(), ids=" ".join)
def test_every_command_takes_help_and_config_and_verbose_last(
    path: list[str], tmp_path: Path, capsys
) -> None:
    with pytest.raises(SystemExit) as done:
        main([*path, "--help"])
    assert done.value.code == 0
    assert "--config FILE" in capsys.readouterr().out
    # The options parse after the command, its action and their arguments alike.
    required = {
        ("send",): ["x.dcm", "--host", "h", "--port", "1", "--aec", "A"],
        ("train",): ["--dataset", "synthetic", "--out", "m"],
        ("evaluate",): ["--model", "m", "--dataset", "synthetic"],
        ("predict",): ["s"],
        ("fetch",): ["--study", "1.2.3", "--from", "pacs"],
        ("user", "add"): ["n", "--role", "viewer"],
        ("user", "set-role"): ["n", "--role", "viewer"],
        ("db", "downgrade"): ["base"],
        ("jobs", "retry"): ["1"],
        ("jobs", "run"): ["1.2.3", "--model", "m"],
        ("compare",): ["a", "b", "--dataset", "synthetic"],
        ("dataset", "export"): ["--out", "d"],
        ("model", "add"): ["dir"],
        ("model", "show"): ["m"],
        ("model", "set-state"): ["m:1", "live"],
        ("model", "export"): ["m", "--torchscript", "out"],
        ("route", "add"): ["head", "--model", "m"],
        ("route", "remove"): ["head"],
    }.get(tuple(path), ["n"] if path[0] == "user" and len(path) == 2 and path[1] != "list" else [])
    args = build_parser().parse_args([*path, *required, "--config", "site.toml", "-v"])
    assert (args.config, args.verbose) == ("site.toml", True)


def test_real_calls_with_config_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """What a script written from the README runs, --config last every time."""
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "site.toml"
    config.write_text('[storage]\ndata_dir = "site-data"\n')
    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough password 1\n"))
    calls = [
        ["db", "upgrade", "--config", str(config)],
        ["user", "add", "ada", "--role", "admin", "--password-stdin", "--config", str(config)],
        ["user", "list", "--config", str(config), "-v"],
        ["jobs", "list", "--config", str(config)],
        ["model", "list", "--config", str(config)],
        ["route", "list", "--config", str(config)],
    ]
    for call in calls:
        assert main(call) == 0, call
    out = capsys.readouterr().out
    assert "ada" in out
    assert "radassist-hyperdense:0.1.0" in out and "live" in out  # added at first use
    assert (tmp_path / "site-data" / "radassist.db").is_file()
    assert (tmp_path / "site-data" / "models" / "radassist-hyperdense" / "0.1.0").is_dir()
    assert not (tmp_path / "var").exists()


def _prediction(positive: bool, place: Place | None) -> Findings:
    """What a model could find in a 10-slice series: one lesion on slices 3-5 (placed or
    not) with a reading note, or nothing."""
    slices = [
        SliceProbability(f"1.2.3.{n}", 0.9 if positive and 2 <= n <= 4 else 0.01) for n in range(10)
    ]
    lesion = Lesion(
        first_slice=2,
        last_slice=4,
        key_slice=3,
        key_sop_instance_uid="1.2.3.3",
        outline=[(1.0, 1.0), (9.0, 1.0), (5.0, 8.0)],
        area_mm2=120.0,
        longest_diameter_mm=25.0,
        volume_ml=8.04,
        mean_hu=66.0,
        probability=0.93,
        place=place,
        abc2_volume_ml=7.5 if place else None,
        severity="small" if place else "",
    )
    return Findings(
        series_instance_uid="1.2.3",
        study_probability=0.96 if positive else 0.031,
        positive=positive,
        threshold=0.5,
        slices=slices,
        flagged_instance_uids=[s.sop_instance_uid for s in slices if s.probability >= 0.5],
        model=ModelIdentity("demo", "1"),
        lesions=[lesion] if positive else [],
        notes=["Incomplete volume: about 1 slice missing between slices 6 and 7."]
        if positive
        else [],
        midline_shift_mm=0.8 if place else None,
        anatomy_read=place is not None,
    )


@pytest.mark.parametrize(
    ("positive", "place", "expected"),
    [
        (
            True,
            Place("right", "supratentorial", "parietal", "intra-axial"),
            [
                "POSITIVE: study probability 96.0 % (threshold 50.0 %)",
                "Impression: Small right parietal intraparenchymal hyperdense lesion, 8.0 mL "
                "(ABC/2 7.5 mL), no midline shift.",
                "Incomplete volume: about 1 slice missing between slices 6 and 7.",
                "  1. Small right parietal intraparenchymal hyperdense lesion, 8.0 mL "
                "(ABC/2 7.5 mL), slices 3\u20135, probability 93.0 %",
            ],
        ),
        (
            True,
            None,
            [
                "POSITIVE: study probability 96.0 % (threshold 50.0 %)",
                "Impression: Hyperdense lesion, 8.0 mL.",
                "Incomplete volume: about 1 slice missing between slices 6 and 7.",
                "  1. Hyperdense lesion, 8.0 mL, slices 3\u20135, probability 93.0 %",
            ],
        ),
        (
            False,
            None,
            [
                "negative: study probability 3.1 % (threshold 50.0 %)",
                "Impression: No hyperdense lesion (probability 3.1 %).",
            ],
        ),
    ],
    ids=["located", "not-located", "negative"],
)
def test_predict_prints_the_verdict_the_impression_then_each_lesion(
    positive: bool,
    place: Place | None,
    expected: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys,
) -> None:
    """The model itself is stood in for (tests/analysis/inference runs the real one):
    what is checked here is what `predict` prints of what it found, and that `--json`
    prints the whole record, impression included."""
    prediction = _prediction(positive, place)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("assistant.analysis.model.folder.load_model", lambda folder: folder)
    monkeypatch.setattr(
        "assistant.analysis.inference.predict_series", lambda model, series: prediction
    )
    assert main(["predict", "--model", str(tmp_path), str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines() == expected
    assert main(["predict", "--model", str(tmp_path), str(tmp_path), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record == json.loads(json.dumps(prediction.to_dict()))
    assert f"Impression: {record['impression']}" == expected[1]
    places = [les["place"] for les in record["lesions"]]
    assert places == ([place.to_dict() if place else None] if positive else [])
