"""Instance files: ``<data>/instances/<study>/<series>/<sop>.dcm``, written atomically.

A file appears under its final name only once its bytes are on disk: it is written to
a hidden temporary name in the same folder, fsync'd, then hard-linked to the final name
(which fails instead of overwriting when the instance is already stored), and the
folder is fsync'd. A crash leaves at most a temporary file, which
:meth:`InstanceStore.remove_partial_files` deletes at start-up.

Patient data is the node user's alone: folders are made 0700 and files 0600, whatever
the umask (see assistant.db.files).
"""

from __future__ import annotations

import fcntl
import os
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from assistant.db.files import PRIVATE_FILE_MODE, make_private_dirs
from dicom_node import is_valid_uid

_TEMP_PREFIX = ".partial-"
#: Sub-folder of a series folder holding copies not in use: ``<sop>.v<N>.dcm`` (version
#: N, replaced by the sender's correction) and ``<sop>.not-used-<time>.dcm`` (a changed
#: copy kept out of use by storage.on_changed_duplicate = "keep-first").
VERSIONS_FOLDER = "versions"
#: The lock file of a series folder (see InstanceStore.changes_lock).
CHANGES_LOCK = ".changes.lock"


class InvalidUID(ValueError):
    """A UID that would not be safe or meaningful as a path part."""


@dataclass(frozen=True)
class StoredFile:
    path: Path
    size_bytes: int
    #: False when the instance was already stored (a duplicate; the first copy is kept).
    created: bool


def fsync_dir(path: Path) -> None:
    """Make a folder's entries (a file created, renamed or removed in it) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_temp(folder: Path, stem: str, chunks: Iterable[bytes | memoryview]) -> tuple[Path, int]:
    """Write `chunks` to a new hidden file in `folder`, fsync'd; returns it and its size."""
    temp = folder / f"{_TEMP_PREFIX}{stem}.{secrets.token_hex(4)}"
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
        try:
            os.fchmod(fd, PRIVATE_FILE_MODE)  # whatever the umask took off
            size = 0
            for chunk in chunks:
                view = memoryview(chunk)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                    size += written
            os.fdatasync(fd)  # data and the size: all a new file needs
        finally:
            os.close(fd)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return temp, size


class InstanceStore:
    """The folder of received instances."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, study_uid: str, series_uid: str, sop_uid: str, suffix: str = ".dcm") -> Path:
        """Where an instance lives; refuses anything that is not a valid UID."""
        for name, uid in (("study", study_uid), ("series", series_uid), ("SOP instance", sop_uid)):
            if not is_valid_uid(uid):
                raise InvalidUID(f"{name} UID {uid!r} is not a valid UID")
        return self.root / study_uid / series_uid / f"{sop_uid}{suffix}"

    def write(
        self,
        study_uid: str,
        series_uid: str,
        sop_uid: str,
        chunks: Iterable[bytes | memoryview],
        suffix: str = ".dcm",
    ) -> StoredFile:
        """Durably write an instance once; a second write of the same UID keeps the first
        (the caller decides, with :meth:`replace` or :meth:`keep_beside`, what becomes of a
        copy with other content). `suffix`: ".json" for a notice beside the results."""
        final = self.path_for(study_uid, series_uid, sop_uid, suffix)
        if final.exists():
            return StoredFile(final, final.stat().st_size, created=False)
        folder = final.parent
        if not folder.is_dir():
            make_private_dirs(folder)
            fsync_dir(folder.parent)
            fsync_dir(folder.parent.parent)
        temp, size = _write_temp(folder, sop_uid, chunks)
        try:
            try:
                os.link(temp, final)
                created = True
            except FileExistsError:  # the same instance arrived on another association
                created = False
        finally:
            temp.unlink(missing_ok=True)
        fsync_dir(folder)
        return StoredFile(final, final.stat().st_size if not created else size, created)

    @staticmethod
    def versions_folder(final: Path) -> Path:
        """Where the copies of a series' instances that are not in use are kept."""
        return final.parent / VERSIONS_FOLDER

    def replace(self, final: Path, chunks: Iterable[bytes | memoryview], earlier_name: str) -> Path:
        """Put a changed copy in place of the stored instance `final`, keeping the stored
        one as ``versions/<earlier_name>``; returns where the earlier copy now is.

        Each step leaves both copies on disk: the new one is written and fsync'd under a
        temporary name, the current one hard-linked into versions/, and only then the new
        one renamed over the current name."""
        versions = self._versions(final)
        earlier = versions / earlier_name
        temp, _size = _write_temp(final.parent, final.stem, chunks)
        try:
            os.link(final, earlier)
            try:
                fsync_dir(versions)
                os.replace(temp, final)
            except BaseException:
                earlier.unlink(missing_ok=True)  # not swapped: no earlier version
                raise
        finally:
            temp.unlink(missing_ok=True)
        fsync_dir(final.parent)
        return earlier

    def restore(self, earlier: Path, final: Path) -> None:
        """Undo :meth:`replace`: the kept copy goes back to its place (the replacing one
        is given up: its sender was not told it was stored)."""
        os.replace(earlier, final)
        fsync_dir(final.parent)
        fsync_dir(earlier.parent)

    @contextmanager
    def changes_lock(self, final: Path) -> Iterator[None]:
        """Hold the series' lock for changing an instance's file, across threads and
        processes on this machine (flock on ``<series>/.changes.lock``): the version
        read, the files swapped and the row updated happen for one copy at a time."""
        make_private_dirs(final.parent)
        fd = os.open(final.parent / CHANGES_LOCK, os.O_RDWR | os.O_CREAT, PRIVATE_FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def keep_beside(self, final: Path, chunks: Iterable[bytes | memoryview], name: str) -> Path:
        """Keep a copy that is not put in use as ``versions/<name>``; returns its path."""
        versions = self._versions(final)
        temp, _size = _write_temp(versions, final.stem, chunks)
        kept = versions / name
        try:
            os.link(temp, kept)
        finally:
            temp.unlink(missing_ok=True)
        fsync_dir(versions)
        return kept

    def _versions(self, final: Path) -> Path:
        versions = self.versions_folder(final)
        if not versions.is_dir():
            make_private_dirs(versions)
            fsync_dir(final.parent)
        return versions

    def earlier_versions(self) -> Iterator[tuple[str, str, str, int, Path]]:
        """Every replaced copy as (study UID, series UID, SOP Instance UID, version, path)."""
        for path in self.root.glob(f"*/*/{VERSIONS_FOLDER}/*.v*.dcm"):
            sop, _, version = path.name[: -len(".dcm")].rpartition(".v")
            if version.isdigit() and not path.name.startswith(_TEMP_PREFIX):
                yield (
                    path.parent.parent.parent.name,
                    path.parent.parent.name,
                    sop,
                    int(version),
                    path,
                )

    def stored_files(self) -> Iterator[tuple[str, str, str, Path]]:
        """Every complete instance file as (study UID, series UID, SOP Instance UID, path)."""
        for path in self.root.glob("*/*/*.dcm"):
            if not path.name.startswith(_TEMP_PREFIX):
                yield path.parent.parent.name, path.parent.name, path.name[: -len(".dcm")], path

    def remove_partial_files(self) -> int:
        """Delete temporary files left by a crash mid-write; returns how many."""
        removed = 0
        if self.root.is_dir():
            for pattern in (f"*/*/{_TEMP_PREFIX}*", f"*/*/{VERSIONS_FOLDER}/{_TEMP_PREFIX}*"):
                for leftover in self.root.glob(pattern):
                    leftover.unlink(missing_ok=True)
                    removed += 1
        return removed
