"""All-or-nothing writes: after a run, every file of one write is its old version or every one is new.

:func:`write_files` runs this protocol (``R``, the run id, is the pid and random hex):

1. in every target folder, a pointer ``.mitest-R.pending`` naming the journal and every folder;
2. each file's content in ``.<name>.mitest-R.tmp`` next to its target; files and folders fsynced;
3. the commit point: the journal ``.mitest-R.journal`` (temporary file, fsync, rename, fsync of
   its folder) in the first target's folder, listing every (temporary, target) pair;
4. the renames, then the pointers are deleted, then the journal.

A crash before the commit point leaves temporary files and pointers, which :func:`recover` deletes
(every file old); a crash after it leaves the journal, and :func:`recover` finishes the renames
(every file new). Readers call :func:`recover` on a folder before reading it; :func:`write_files`
does so for its own folders. Ctrl-C is held back from the commit point to the end of a write.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import signal
import stat
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from mitest.errors import WriteError

_RUN = r"(?P<run>(?P<pid>\d+)-[0-9a-f]{12})"
_TEMP = re.compile(rf"\.(?P<name>.+)\.mitest-{_RUN}\.tmp")
_POINTER = re.compile(rf"\.mitest-{_RUN}\.pending")
_JOURNAL = re.compile(rf"\.mitest-{_RUN}\.journal")
# Earlier mitest wrote through tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp"): 8 random characters.
_OLD_TEMP = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp")
_OLD_TEMP_AGE = 60.0  # seconds; such a write took milliseconds, so an older temporary file is an orphan
_HINT = "or choose another folder with --mitest-baseline-dir / --mitest-report-dir"
_ACTIVE: set[str] = set()  # run ids of this process's writes in progress (other threads' are left alone)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write one file all-or-nothing (see :func:`write_files`)."""
    return write_files({path: text})[0]


PathT = TypeVar("PathT", bound="str | os.PathLike[str]")  # Mapping keys are invariant: accept any one path type


def write_files(files: Mapping[PathT, str]) -> list[Path]:
    """Write every file (path -> UTF-8 text), in any number of folders, or none of them.

    Missing folders are created. A replaced file keeps its permissions, a new one follows the
    umask, and a symbolic link is written through (it stays a link). Raises :class:`WriteError`,
    with no file changed and no temporary file left, when a folder or file cannot be written.
    Returns the paths as given.
    """
    given = [Path(path) for path in files]
    contents: dict[Path, bytes] = {}
    for path, text in files.items():
        target = Path(os.path.realpath(Path(path)))
        if target in contents:
            raise ValueError(f"write_files got {target} twice (through {path} and another path)")
        contents[target] = text.encode("utf-8")  # a UnicodeEncodeError leaves every file as it was
    if not contents:
        return given
    folders = list(dict.fromkeys(target.parent for target in contents))
    run = f"{os.getpid()}-{secrets.token_hex(6)}"
    journal = folders[0] / f".mitest-{run}.journal"
    pointers = {folder / f".mitest-{run}.pending": folder for folder in folders}
    temps = {target: target.with_name(f".{target.name}.mitest-{run}.tmp") for target in contents}
    journal_temp = journal.with_name(f".{journal.name}.mitest-{run}.tmp")
    current, committed = next(iter(contents)), False
    _ACTIVE.add(run)
    try:
        for folder in folders:
            current = next(target for target in contents if target.parent == folder)
            folder.mkdir(parents=True, exist_ok=True)
            recover(folder)  # a write left unfinished here must not overwrite this one later
        for current in contents:
            if current.is_dir():
                raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
        for pointer, folder in pointers.items():
            current = next(target for target in contents if target.parent == folder)
            pointed = {"journal": _relative(journal, folder), "folders": [_relative(f, folder) for f in folders]}
            _create(pointer, json.dumps(pointed).encode())
        for current, content in contents.items():
            mode = stat.S_IMODE(current.stat().st_mode) if current.exists() else None
            _create(temps[current], content, mode)
        for folder in folders:
            _fsync_folder(folder)
        current = next(iter(contents))
        pairs = [[_relative(temps[t], folders[0]), _relative(t, folders[0])] for t in contents]
        _create(journal_temp, json.dumps({"files": pairs}).encode())
        with hold_interrupts():
            os.replace(journal_temp, journal)
            committed = True
            _fsync_folder(folders[0])
            _finish(run, journal, list(temps.items()))
    except BaseException as error:
        if not committed:
            with hold_interrupts():
                for leftover in [*pointers, *temps.values(), journal_temp]:
                    _unlink(leftover)
            if isinstance(error, OSError) and not isinstance(error, WriteError):
                raise _failed(current, error) from None
        raise
    finally:
        _ACTIVE.discard(run)
    return given


def recover(folder: str | os.PathLike) -> None:
    """Finish or undo every interrupted write with files in ``folder``, and delete stale temporary files.

    A write whose journal exists is finished (all its files new, in every folder); one whose
    journal was never written is undone (all old). Writes of running processes are left alone,
    and so is every file mitest did not make. A folder that does not exist is fine.
    """
    folder = Path(os.path.realpath(folder))
    try:
        _recover(folder)
    except WriteError:
        raise
    except OSError as error:
        raise WriteError(
            f"cannot finish or undo the interrupted writes in {folder}: {error.strerror or error}; "
            f"make {folder} readable and writable, {_HINT}"
        ) from None


def _recover(folder: Path) -> None:
    names = _listing(folder)
    runs = sorted({m["run"] for name in names if (m := _POINTER.fullmatch(name) or _JOURNAL.fullmatch(name))})
    for run in runs:
        if _alive(run):
            continue
        journal, pointed = folder / f".mitest-{run}.journal", _pointer(folder / f".mitest-{run}.pending")
        if not journal.exists() and pointed is not None:
            journal = Path(os.path.realpath(folder / pointed["journal"]))
        if journal.name == f".mitest-{run}.journal" and journal.exists():
            _finish(run, journal, _journal_pairs(run, journal))
        else:
            others = [folder / name for name in (pointed or {}).get("folders", [])]
            _undo(run, list(dict.fromkeys([folder, *(Path(os.path.realpath(f)) for f in others)])))
    now = time.time()
    for name in _listing(folder):
        path = folder / name
        if m := _TEMP.fullmatch(name):
            if not _alive(m["run"]) and not (folder / f".mitest-{m['run']}.pending").exists():
                _unlink(path)
        elif (m := _OLD_TEMP.fullmatch(name)) and (folder / m["name"]).is_file():
            with contextlib.suppress(OSError):
                info = path.lstat()
                if stat.S_ISREG(info.st_mode) and now - info.st_mtime > _OLD_TEMP_AGE:
                    _unlink(path)


# -- steps ----------------------------------------------------------------------------------------


def _create(path: Path, content: bytes, mode: int | None = None) -> None:
    """Write a new file (never an existing one), set ``mode`` if given, and fsync it."""
    handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    with os.fdopen(handle, "wb") as stream:
        stream.write(content)
        stream.flush()
        if mode is not None:
            os.chmod(path, mode)
        os.fsync(stream.fileno())


def _finish(run: str, journal: Path, pairs: list[tuple[Path, Path]]) -> None:
    """Roll a committed write forward: rename what is left, then delete its pointers and journal."""
    with hold_interrupts():
        for target, temp in pairs:
            try:
                os.replace(temp, target)
            except OSError as error:
                if isinstance(error, FileNotFoundError) and not os.path.lexists(temp):
                    continue  # renamed before a crash
                raise _failed(
                    target, error, f"; the write is recorded in {journal} and the next run finishes it"
                ) from None
        folders = list(dict.fromkeys(target.parent for target, _ in pairs))
        for folder in folders:
            _fsync_folder(folder)
        for folder in folders:
            _unlink(folder / f".mitest-{run}.pending")
        _unlink(journal)
        _fsync_folder(journal.parent)


def _undo(run: str, folders: list[Path]) -> None:
    """Roll an uncommitted write back: delete its temporary files, then its pointers."""
    for folder in folders:
        for name in _listing(folder):
            if (m := _TEMP.fullmatch(name)) and m["run"] == run:
                _unlink(folder / name)
    for folder in folders:
        _unlink(folder / f".mitest-{run}.pending")


def _journal_pairs(run: str, journal: Path) -> list[tuple[Path, Path]]:
    """The (target, temporary) pairs of a journal; each temporary file must sit beside its target."""
    base = journal.parent
    try:
        files = json.loads(journal.read_bytes())["files"]
        pairs = [(Path(os.path.normpath(base / target)), Path(os.path.normpath(base / temp))) for temp, target in files]
        if all(
            temp.parent == target.parent and temp.name == f".{target.name}.mitest-{run}.tmp" for target, temp in pairs
        ):
            return pairs
    except FileNotFoundError:
        return []  # another process finished it just now
    except (ValueError, KeyError, TypeError):
        pass
    raise WriteError(
        f"cannot finish the interrupted write recorded in {journal}: the journal is damaged; check the files "
        "next to it, then delete it and its .mitest-*.pending and .mitest-*.tmp files"
    )


def _pointer(path: Path) -> dict[str, Any] | None:
    """A pointer's content, or None when it is missing or was cut short by a crash."""
    try:
        pointed = json.loads(path.read_bytes())
        journal, folders = pointed["journal"], pointed["folders"]
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None
    if isinstance(journal, str) and isinstance(folders, list) and all(isinstance(f, str) for f in folders):
        return {"journal": journal, "folders": folders}
    return None


# -- helpers ----------------------------------------------------------------------------------------


def _alive(run: str) -> bool:
    """Whether the process of a run may still be writing (when unsure: yes)."""
    pid = int(run.split("-")[0])
    if pid == os.getpid():
        return run in _ACTIVE
    if os.name == "nt":  # os.kill would send the process a signal, not test for it
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OverflowError:
        return False  # no process has such an id
    except OSError:
        return True  # it exists, owned by another user
    return True


@contextlib.contextmanager
def hold_interrupts(deliver: bool = True) -> Iterator[list[int]]:
    """Hold Ctrl-C (SIGINT) back until the block ends (main thread only); yields the signals held.

    With ``deliver`` the held signal is raised again when the block ends; without, the caller
    reads the list and decides (the pytest plugin reports an interrupted write instead of a traceback).
    """
    previous = signal.getsignal(signal.SIGINT)
    received: list[int] = []
    if previous is None or threading.current_thread() is not threading.main_thread():
        yield received  # signals reach only the main thread; None: a handler not set from Python
        return
    try:
        signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
        yield received
    finally:
        signal.signal(signal.SIGINT, previous)
        if received and deliver:
            signal.raise_signal(signal.SIGINT)


def _failed(target: Path, error: OSError, then: str = "") -> WriteError:
    """A WriteError naming the path, what is wrong with it and how to fix it."""
    folder, code = target.parent, error.errno
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        problem, fix = f"{folder} is not writable ({error.strerror})", f"make {folder} writable, {_HINT}"
    elif code in (errno.ENOSPC, errno.EDQUOT):
        problem, fix = f"the disk holding {folder} is full ({error.strerror})", f"free some space, {_HINT}"
    elif code == errno.EISDIR:
        problem, fix = "it is a folder, not a file", f"move that folder away, {_HINT}"
    elif code in (errno.ENOTDIR, errno.EEXIST) and (blocking := _file_in_the_way(folder)) is not None:
        problem, fix = f"{blocking} is a file, not a folder", f"move that file away, {_HINT}"
    else:
        problem, fix = error.strerror or str(error), f"check {folder}, {_HINT}"
    result = WriteError(f"cannot write {target}: {problem}; {fix}{then}")
    result.errno = code
    return result


def _file_in_the_way(folder: Path) -> Path | None:
    """The nearest existing path at or above ``folder`` when it is not a folder."""
    for path in (folder, *folder.parents):
        if os.path.lexists(path):
            return None if path.is_dir() else path
    return None


def _listing(folder: Path) -> list[str]:
    try:
        return os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _fsync_folder(folder: Path) -> None:
    """Make a folder's entries durable, where the platform can (best effort)."""
    with contextlib.suppress(OSError):
        handle = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)


def _unlink(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _relative(path: Path, folder: Path) -> str:
    return os.path.relpath(path, folder)
