"""File modes of the node's data: for its own user alone, whatever the umask.

The data folder holds patient data (instances, results, the database), password hashes
and the key that signs sessions. Folders are made 0700 and files 0600 when they are
created (mode given to mkdir/open, then chmod, so a permissive umask changes nothing),
and :func:`secure_data_folder` corrects what an older version or a hand left more open,
at start-up, with one log line per corrected path.

SQLite gives a database's ``-wal``, ``-shm`` and ``-journal`` files the mode of the
database file, so a database created 0600 before SQLite opens it keeps all of them 0600.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterable
from pathlib import Path

from sqlalchemy.engine import make_url

from assistant.settings import Settings

LOGGER = logging.getLogger(__name__)

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
#: Companion files SQLite creates beside a database, with the database's own mode.
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")
#: Files of the data folder that hold secrets or patient data (databases, the session
#: key, the demo's login); folders of patient data, made 0700 by the store as well.
DATA_FILES = ("radassist.db", "queue.db", "secret_key", "demo-login.txt")
DATA_FOLDERS = ("instances", "results")


def make_private_dirs(path: Path) -> None:
    """Create `path` and its missing parents 0700; folders that exist are left as they are
    (the start-up check corrects the data folder's)."""
    missing: list[Path] = []
    folder = path
    while not folder.is_dir() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, PRIVATE_DIR_MODE)
        except FileExistsError:  # made meanwhile by another thread or process
            if not folder.is_dir():
                raise
            continue
        os.chmod(folder, PRIVATE_DIR_MODE)  # the umask may have taken bits off


def create_private_file(path: Path) -> bool:
    """Create `path` empty and 0600 unless it exists (a symbolic link counts); True when
    created. SQLite takes an empty file as an empty database."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    except FileExistsError:
        return False
    try:
        os.fchmod(fd, PRIVATE_FILE_MODE)
    finally:
        os.close(fd)
    return True


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite database URL; None for another database or an in-memory one."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    name = parsed.database
    if not name or name == ":memory:" or name.startswith("file:"):
        return None
    return Path(name)


def prepare_sqlite_file(url: str) -> None:
    """Before SQLite opens `url`'s file: its folder (0700) and the file (0600) if missing."""
    path = sqlite_file(url)
    if path is None:
        return
    make_private_dirs(path.parent)
    create_private_file(path)


def _restrict(path: Path, directory: bool) -> str | None:
    """Take group and other bits off `path`; a line saying so when its mode changed."""
    try:
        found = path.stat()
    except FileNotFoundError:
        return None
    if directory != stat.S_ISDIR(found.st_mode):
        return None  # not what we expect there: neither ours to change nor a reason to fail
    mode = stat.S_IMODE(found.st_mode)
    if not mode & 0o077:
        return None
    wanted = mode & 0o700 | (PRIVATE_DIR_MODE if directory else 0)
    try:
        os.chmod(path, wanted)
    except OSError as exc:
        LOGGER.warning("%s is mode %04o and cannot be made %04o: %s", path, mode, wanted, exc)
        return None
    line = f"{path} was mode {mode:04o}; now {wanted:04o}"
    LOGGER.warning("%s", line)
    return line


def secure_data_folder(data_dir: Path, extra_files: Iterable[Path] = ()) -> list[str]:
    """Make the data folder 0700 (creating it if missing) and the node's private files
    0600: its databases with their SQLite companions, the session key, and `extra_files`
    (a database or key kept elsewhere, with their companions); returns one line per
    corrected path, each also logged. Missing files are not created.

    What lies deeper in the data folder (instance and result files, written 0600 in
    0700 folders) is not walked: the folder's own 0700 keeps other users out of it."""
    make_private_dirs(data_dir)
    corrected = [_restrict(data_dir, directory=True)]
    corrected += [_restrict(data_dir / name, directory=True) for name in DATA_FOLDERS]
    files = [data_dir / name for name in DATA_FILES]
    files += [Path(path) for path in extra_files]
    seen: set[Path] = set()
    for path in files:
        for candidate in (path, *(path.with_name(path.name + c) for c in SQLITE_COMPANIONS)):
            if candidate not in seen:
                seen.add(candidate)
                corrected.append(_restrict(candidate, directory=False))
    return [line for line in corrected if line is not None]


def secure_node_files(settings: Settings) -> list[str]:
    """:func:`secure_data_folder` for a node's settings: its data folder, and its session
    key and SQLite database wherever they are configured. Call it at start-up, before
    anything opens the database."""
    extra = [settings.secret_key_path]
    database = sqlite_file(settings.database_url)
    if database is not None:
        extra.append(database)
    return secure_data_folder(settings.storage.data_dir, extra)
