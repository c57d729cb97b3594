"""The instance store: paths only from valid UIDs, atomic writes, duplicates kept once."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.storage import InstanceStore, InvalidUID
from dicom_node import is_valid_uid


@pytest.mark.parametrize(
    ("uid", "valid"),
    [
        ("1.2.840.10008.5.1.4.1.1.2", True),
        ("0.0", True),
        ("1." + "2" * 62, True),
        ("1." + "2" * 63, False),  # 65 characters
        ("", False),
        ("1.02.3", False),  # leading zero
        ("1..2", False),
        ("1.2.", False),
        ("../../etc/passwd", False),
        ("1.2/3", False),
        ("1.2\x003", False),
        (" 1.2", False),
        (None, False),
    ],
)
def test_uid_grammar(uid: object, valid: bool) -> None:
    assert is_valid_uid(uid) is valid


def test_write_is_durable_and_duplicates_keep_the_first(tmp_path: Path) -> None:
    store = InstanceStore(tmp_path / "instances")
    first = store.write("1.2", "1.2.3", "1.2.3.4", [b"first ", memoryview(b"copy")])
    assert first.created and first.path.read_bytes() == b"first copy" and first.size_bytes == 10
    again = store.write("1.2", "1.2.3", "1.2.3.4", [b"second copy"])
    assert not again.created and again.path.read_bytes() == b"first copy"
    assert sorted(p.name for p in first.path.parent.iterdir()) == ["1.2.3.4.dcm"]


@pytest.mark.parametrize("bad", ["..", "../x", "/etc", "1.2/../../x"])
def test_paths_are_never_built_from_invalid_uids(tmp_path: Path, bad: str) -> None:
    store = InstanceStore(tmp_path / "instances")
    with pytest.raises(InvalidUID):
        store.write(bad, "1.2", "1.2.3", [b"x"])
    with pytest.raises(InvalidUID):
        store.write("1.2", "1.2", bad, [b"x"])
    assert list(tmp_path.rglob("*")) == []


def test_partial_files_from_a_crash_are_removed_at_start(tmp_path: Path) -> None:
    store = InstanceStore(tmp_path / "instances")
    kept = store.write("1.2", "1.2.3", "1.2.3.4", [b"whole"])
    leftover = kept.path.parent / ".partial-1.2.3.5.dcm.abcd1234"
    leftover.write_bytes(b"half")
    assert store.remove_partial_files() == 1
    assert not leftover.exists() and kept.path.exists()


def test_a_failed_write_leaves_nothing_behind(tmp_path: Path) -> None:
    store = InstanceStore(tmp_path / "instances")

    def chunks():
        yield b"some bytes"
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        store.write("1.2", "1.2.3", "1.2.3.4", chunks())
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
