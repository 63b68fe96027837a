"""All-or-nothing writes (mitest.results.atomic): unit tests, a crash at every step, SIGKILL and Ctrl-C trials.

The crash tests run the writer in child processes forked from one small helper process (the
"forker", which imports little beyond mitest.results.atomic), so a trial costs a fork, not an interpreter start.
"""

from __future__ import annotations

import errno
import json
import os
import random
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest

import mitest as mt
from mitest.results import atomic
from mitest.results.report import build_run, write_reports

SIGKILL_TRIALS = 200  # about 2.5 s; the slow variant runs 1000
SIGINT_TRIALS = 100  # about 1 s; the slow variant runs 500
SEED = 20240611
HINT = "--mitest-baseline-dir / --mitest-report-dir"

needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="the crash trials fork child processes")


def layout(root: Path, n: int = 10) -> tuple[list[Path], list[Path]]:
    """``n`` files spread over 3 folders: a report folder and two baseline folders at different depths."""
    folders = [root / "reports", root / "suite" / "baselines", root / "suite" / "deep" / "baselines"]
    return folders, [folders[i % 3] / f"test_{i}.json" for i in range(n)]


def content(path: Path | str, version: int) -> str:
    return json.dumps({"file": str(path), "version": version, "padding": "x" * 3000}) + "\n"


def versions(paths: list[Path]) -> set[int]:
    """The version every file carries; each must be complete and be the file it claims to be."""
    found = set()
    for path in paths:
        data = json.loads(path.read_text())  # a half-written file fails here
        assert data["file"] == str(path) and data["padding"] == "x" * 3000, path
        found.add(data["version"])
    return found


def extras(folders: list[Path], paths: list[Path]) -> list[str]:
    """Every file in the folders that is not one of the targets (temporary files, pointers, journals)."""
    expected = {path.name for path in paths}
    return sorted(f"{folder.name}/{name}" for folder in folders for name in os.listdir(folder) if name not in expected)


def dead_pid() -> int:
    """The id of a process that has exited and been reaped."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# -- writing ------------------------------------------------------------------------------------------


def test_every_file_is_written_across_folders_and_the_paths_come_back_as_given(tmp_path):
    folders, paths = layout(tmp_path)
    written = atomic.write_files({str(path): content(path, 1) for path in paths})
    assert written == paths and versions(paths) == {1} and extras(folders, paths) == []
    assert atomic.write_text(paths[0], "one file\n") == paths[0] and paths[0].read_text() == "one file\n"
    assert atomic.write_files({}) == []


@pytest.mark.parametrize("failing_call", [1, 3, 4, 8, 12])
def test_a_write_that_fails_before_its_commit_leaves_every_file_old_and_nothing_else(
    tmp_path, monkeypatch, failing_call
):
    folders, paths = layout(tmp_path, n=5)
    atomic.write_files({path: content(path, 0) for path in paths})
    real_open, calls = os.open, []

    def full_disk(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == failing_call:  # 3 pointers, 5 temporary files, 3 folder syncs, the journal
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(atomic.os, "open", full_disk)
    with pytest.raises(mt.WriteError, match="the disk holding .* is full .*; free some space, or choose") as caught:
        atomic.write_files({path: content(path, 1) for path in paths})
    assert caught.value.errno == errno.ENOSPC and str(tmp_path) in str(caught.value)
    assert versions(paths) == {0} and extras(folders, paths) == []


def test_a_failed_commit_rename_leaves_every_file_old(tmp_path, monkeypatch):
    folders, paths = layout(tmp_path, n=4)
    atomic.write_files({path: content(path, 0) for path in paths})

    def refuse(*args):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(atomic.os, "replace", refuse)
    with pytest.raises(mt.WriteError, match=r"is not writable \(Permission denied\); make .* writable, or choose"):
        atomic.write_files({path: content(path, 1) for path in paths})
    assert versions(paths) == {0} and extras(folders, paths) == []


def test_a_rename_that_fails_after_the_commit_point_is_finished_by_the_next_recovery(tmp_path, monkeypatch):
    folders, paths = layout(tmp_path, n=4)
    atomic.write_files({path: content(path, 0) for path in paths})
    real_replace, calls = os.replace, []

    def busy(source, target):
        calls.append(target)
        if len(calls) == 3:  # the journal and one file are renamed
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY))
        return real_replace(source, target)

    monkeypatch.setattr(atomic.os, "replace", busy)
    with pytest.raises(mt.WriteError, match=r"busy; check .*; the write is recorded in .*journal and the next run"):
        atomic.write_files({path: content(path, 1) for path in paths})
    monkeypatch.undo()
    assert versions(paths) == {0, 1}  # split on disk, until a reader recovers a folder
    atomic.recover(folders[2])
    assert versions(paths) == {1} and extras(folders, paths) == []


def test_a_write_first_finishes_an_interrupted_one_so_that_it_cannot_overwrite_the_newer_files(tmp_path, monkeypatch):
    folders, paths = layout(tmp_path, n=4)
    atomic.write_files({path: content(path, 0) for path in paths})
    real_replace, calls = os.replace, []

    def crash(source, target):
        calls.append(target)
        if len(calls) == 3:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real_replace(source, target)

    monkeypatch.setattr(atomic.os, "replace", crash)
    with pytest.raises(mt.WriteError):
        atomic.write_files({path: content(path, 1) for path in paths})
    monkeypatch.undo()
    atomic.write_files({path: content(path, 2) for path in paths})  # no recover() in between
    for folder in folders:
        atomic.recover(folder)
    assert versions(paths) == {2} and extras(folders, paths) == []


def test_a_replaced_file_keeps_its_mode_and_a_new_one_follows_the_umask(tmp_path):
    kept, new = tmp_path / "kept.json", tmp_path / "new.json"
    kept.write_text("old")
    kept.chmod(0o604)
    previous = os.umask(0o027)
    try:
        atomic.write_files({kept: "new", new: "new"})
    finally:
        os.umask(previous)
    assert stat.S_IMODE(kept.stat().st_mode) == 0o604 and stat.S_IMODE(new.stat().st_mode) == 0o640
    assert kept.read_text() == "new" and new.read_text() == "new"


def test_a_symlinked_target_stays_a_link_and_its_file_is_written(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "real.json").write_text("old")
    link = tmp_path / "baselines" / "test_x.json"
    link.parent.mkdir()
    link.symlink_to(shared / "real.json")
    assert atomic.write_files({link: "new", tmp_path / "baselines" / "other.json": "other"}) == [
        link,
        tmp_path / "baselines" / "other.json",
    ]
    assert link.is_symlink() and (shared / "real.json").read_text() == "new"
    assert sorted(os.listdir(shared)) == ["real.json"] and sorted(os.listdir(link.parent)) == [
        "other.json",
        "test_x.json",
    ]


def test_a_folder_path_that_is_a_file_is_a_clear_error_and_nothing_is_written(tmp_path):
    (tmp_path / "reports").write_text("not a folder")
    (tmp_path / "ok").mkdir()
    files = {tmp_path / "ok" / "a.json": "new", tmp_path / "reports" / "run.json": "new"}
    blocking = re.escape(f"{tmp_path / 'reports'} is a file, not a folder; move that file away, or choose")
    with pytest.raises(mt.WriteError, match=blocking):
        atomic.write_files(files)
    with pytest.raises(mt.WriteError, match=blocking):
        atomic.write_files({tmp_path / "reports" / "deeper" / "run.json": "new"})
    assert os.listdir(tmp_path / "ok") == [] and (tmp_path / "reports").read_text() == "not a folder"


def test_a_target_that_is_a_folder_is_a_clear_error_and_no_other_file_changes(tmp_path):
    folders, paths = layout(tmp_path, n=4)
    atomic.write_files({path: content(path, 0) for path in paths})
    blocked = folders[1] / "test_9.json"
    blocked.mkdir()
    (blocked / "keep.txt").write_text("mine")
    with pytest.raises(mt.WriteError, match=re.escape(f"cannot write {blocked}: it is a folder, not a file; move")):
        atomic.write_files({**{path: content(path, 1) for path in paths}, blocked: "new"})
    assert versions(paths) == {0} and (blocked / "keep.txt").read_text() == "mine"
    assert extras(folders, [*paths, blocked]) == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_a_clear_error(tmp_path):
    folder = tmp_path / "baselines"
    folder.mkdir()
    (folder / "test_x.json").write_text("old")
    folder.chmod(0o555)
    try:
        with pytest.raises(mt.WriteError, match=re.escape(f"make {folder} writable, or choose another folder")):
            atomic.write_files({folder / "test_x.json": "new"})
    finally:
        folder.chmod(0o755)
    assert os.listdir(folder) == ["test_x.json"] and (folder / "test_x.json").read_text() == "old"


def test_a_folder_that_refuses_new_files_is_a_clear_error(tmp_path, monkeypatch):
    # As root, chmod does not stop writes: refuse them where a read-only folder would.
    folder = tmp_path / "baselines"
    folder.mkdir()
    real_open = os.open

    def read_only(path, flags, *args, **kwargs):
        if flags & os.O_CREAT:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(atomic.os, "open", read_only)
    with pytest.raises(mt.WriteError) as caught:
        atomic.write_text(folder / "test_x.json", "new")
    message = str(caught.value)
    assert message.startswith(f"cannot write {folder / 'test_x.json'}: {folder} is not writable (Permission denied)")
    assert message.endswith(f"make {folder} writable, or choose another folder with {HINT}")
    assert caught.value.errno == errno.EACCES and os.listdir(folder) == []


def test_write_error_is_exported_beside_the_other_errors():
    from mitest.errors import WriteError

    assert mt.WriteError is WriteError and "WriteError" in mt.__all__
    assert issubclass(WriteError, mt.MitestError) and issubclass(WriteError, OSError)


def test_reports_are_one_write_and_an_unusable_reports_path_is_a_clear_error(tmp_path, monkeypatch):
    run = build_run([], alpha=0.05, correction="bonferroni", seed=0, profile="default")
    reports, names = tmp_path / "reports", ["run.json", "summary.md", "report.html", "per_prompt.csv"]
    calls = []
    monkeypatch.setattr(
        "mitest.results.report.write_files", lambda files: calls.append(list(files)) or atomic.write_files(files)
    )
    assert [p.name for p in write_reports(run, reports)] == names
    assert [[p.name for p in files] for files in calls] == [names]  # one write for all four
    before = {name: (reports / name).read_bytes() for name in names}
    with pytest.raises(mt.WriteError, match="run.json is a file, not a folder"):
        write_reports(run, reports / "run.json")
    assert {name: (reports / name).read_bytes() for name in names} == before and json.loads(before["run.json"]) == run


def test_one_path_given_twice_is_refused(tmp_path):
    (tmp_path / "real.json").write_text("old")
    (tmp_path / "link.json").symlink_to(tmp_path / "real.json")
    with pytest.raises(ValueError, match="twice"):
        atomic.write_files({tmp_path / "real.json": "a", tmp_path / "link.json": "b"})
    assert sorted(os.listdir(tmp_path)) == ["link.json", "real.json"] and (tmp_path / "real.json").read_text() == "old"


# -- Ctrl-C in this process -----------------------------------------------------------------------------


def test_ctrl_c_after_the_commit_point_is_held_back_until_every_file_is_new(tmp_path, monkeypatch):
    folders, paths = layout(tmp_path, n=6)
    atomic.write_files({path: content(path, 0) for path in paths})
    real_replace, renamed = os.replace, []

    def interrupted(source, target):
        real_replace(source, target)
        renamed.append(target)
        if len(renamed) == 2:  # the journal and the first file are renamed: press Ctrl-C
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(atomic.os, "replace", interrupted)
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        atomic.write_files({path: content(path, 1) for path in paths})
    assert len(renamed) == 7 and versions(paths) == {1} and extras(folders, paths) == []
    assert signal.getsignal(signal.SIGINT) is handler


def test_ctrl_c_before_the_commit_point_leaves_every_file_old(tmp_path, monkeypatch):
    folders, paths = layout(tmp_path, n=6)
    atomic.write_files({path: content(path, 0) for path in paths})
    real_fsync, synced = os.fsync, []

    def interrupted(handle):
        real_fsync(handle)
        synced.append(handle)
        if len(synced) == 5:  # the pointers and two temporary files are written
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(atomic.os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic.write_files({path: content(path, 1) for path in paths})
    assert versions(paths) == {0} and extras(folders, paths) == []


# -- recovery -----------------------------------------------------------------------------------------


def test_recover_accepts_a_folder_that_does_not_exist_or_is_a_file(tmp_path):
    atomic.recover(tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    atomic.recover(tmp_path / "file")
    assert sorted(os.listdir(tmp_path)) == ["file"]


def test_recover_deletes_stale_temporary_files_of_both_namings_and_nothing_else(tmp_path):
    folder = tmp_path / "baselines"
    folder.mkdir()
    (folder / "test_x.json").write_text("current")
    dead, alive = dead_pid(), os.getppid()
    stale = [f".test_x.json.mitest-{dead}-0123456789ab.tmp", ".test_x.json.i6sogfa3.tmp"]
    kept = [
        f".test_x.json.mitest-{alive}-0123456789ab.tmp",  # a running process is writing it
        ".test_y.json.k2_9zzq1.tmp",  # old naming, but no test_y.json next to it: not surely mitest's
        ".test_x.json.fresh123.tmp",  # old naming, but written just now
        ".test_x.json.short.tmp",
        "notes.tmp",
        f".mitest-{alive}-0123456789ab.pending",
    ]
    for name in stale + kept:
        (folder / name).write_text("?")
    (folder / f".mitest-{alive}-0123456789ab.pending").write_text("{}")
    hour_ago = time.time() - 3600
    for name in [stale[1], kept[1]]:
        os.utime(folder / name, (hour_ago, hour_ago))
    atomic.recover(folder)
    assert sorted(os.listdir(folder)) == sorted(["test_x.json", *kept])
    assert (folder / "test_x.json").read_text() == "current"


def test_a_write_removes_the_stale_temporary_files_of_its_folders(tmp_path):
    folder = tmp_path / "baselines"
    folder.mkdir()
    (folder / "test_x.json").write_text("old")
    (folder / f".test_x.json.mitest-{dead_pid()}-00000000000f.tmp").write_text("half")
    (folder / ".test_x.json.a1b2c3d4.tmp").write_text("half")
    os.utime(folder / ".test_x.json.a1b2c3d4.tmp", (0, 0))
    atomic.write_text(folder / "test_x.json", "new")
    assert os.listdir(folder) == ["test_x.json"] and (folder / "test_x.json").read_text() == "new"


def test_a_damaged_journal_is_a_clear_error_and_its_files_are_left_for_a_person(tmp_path):
    folder = tmp_path / "baselines"
    folder.mkdir()
    run = f"{dead_pid()}-0123456789ab"
    (folder / f".mitest-{run}.journal").write_text('{"files": [["../../etc/x", "../../etc/passwd"]]}')
    with pytest.raises(mt.WriteError, match=r"the journal is damaged; check the files next to it, then delete it"):
        atomic.recover(folder)
    assert os.listdir(folder) == [f".mitest-{run}.journal"]


# -- crashes in child processes -------------------------------------------------------------------------

FORKER = r"""
import json, os, signal, sys, traceback
from pathlib import Path
from mitest.results import atomic

signal.signal(signal.SIGINT, signal.default_int_handler)
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})  # children unblock it inside their try


def content(path, version):
    return json.dumps({"file": str(path), "version": version, "padding": "x" * 3000}) + "\n"


def crash_before_call(at):
    # os._exit just before the at-th file-system call that changes something (a write counts as one)
    calls = [0]

    def step():
        if calls[0] == at:
            os._exit(7)
        calls[0] += 1

    def wrapped(real):
        return lambda *args, **kwargs: (step(), real(*args, **kwargs))[1]

    class Stream:
        def __init__(self, stream):
            self.stream = stream
        def __enter__(self):
            return self
        def __exit__(self, *exc):
            self.stream.close()
        def write(self, data):
            if calls[0] == at:  # crash with half the content written
                self.stream.write(data[: len(data) // 2])
                self.stream.flush()
            step()
            return self.stream.write(data)
        def __getattr__(self, name):
            return getattr(self.stream, name)

    for name in ("open", "mkdir", "chmod", "fsync", "replace", "unlink"):
        setattr(os, name, wrapped(getattr(os, name)))
    real_fdopen = os.fdopen
    os.fdopen = lambda *args, **kwargs: Stream(real_fdopen(*args, **kwargs))


def child(job):
    if job["op"] == "writer":  # write new versions until killed or interrupted
        version = job["start"]
        while True:
            atomic.write_files({p: content(p, version) for p in job["paths"]})
            version += 1
    crash_before_call(job["at"])
    if job["op"] == "write":
        atomic.write_files({p: content(p, job["version"]) for p in job["paths"]})
    else:
        for folder in job["folders"]:
            atomic.recover(folder)


for line in sys.stdin:
    job = json.loads(line)
    if job["op"] == "wait":
        _, status = os.waitpid(job["pid"], 0)
        print(json.dumps({"code": os.waitstatus_to_exitcode(status)}), flush=True)
        continue
    ready, started = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 2
        try:
            os.close(ready)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
            os.write(started, b"!")  # running: the parent's random delay starts now
            os.close(started)
            child(job)
            code = 0
        except KeyboardInterrupt as interrupt:  # 131: held back by the write and delivered after it
            frames = traceback.extract_tb(interrupt.__traceback__)
            code = 131 if any(frame.name == "hold_interrupts" for frame in frames) else 130
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            os._exit(code)
    os.close(started)
    os.read(ready, 1)
    os.close(ready)
    print(json.dumps({"pid": pid}), flush=True)
"""


class Forker:
    """A helper process that forks writers on request and reaps them."""

    def __init__(self, log: Path) -> None:
        package_root = str(Path(atomic.__file__).resolve().parents[2])  # the folder holding mitest/
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([package_root, os.environ.get("PYTHONPATH", "")])}
        self.log = log.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-c", FORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, env=env
        )

    def ask(self, **job: object) -> dict:
        self.process.stdin.write((json.dumps(job, default=str) + "\n").encode())
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        assert line, f"the forker died: {Path(self.log.name).read_text()}"
        return json.loads(line)

    def run(self, **job: object) -> int:
        """Fork a child for ``job``, wait for it and return its exit code."""
        return self.ask(op="wait", pid=self.ask(**job)["pid"])["code"]

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=10)
        self.log.close()


@pytest.fixture(scope="module")
def forker(tmp_path_factory):
    helper = Forker(tmp_path_factory.mktemp("forker") / "stderr.txt")
    yield helper
    helper.close()


@pytest.fixture
def scratch(tmp_path):
    """A folder in memory (/dev/shm) where there is one, else on disk. The crash trials check what
    other processes see after a crash, which is the same on any file system; in memory each write's
    fsyncs cost nothing, so a trial takes milliseconds instead of a disk's tens of them."""
    memory = Path("/dev/shm")
    if not (memory.is_dir() and os.access(memory, os.W_OK)):
        yield tmp_path
        return
    folder = Path(tempfile.mkdtemp(prefix="mitest-atomic-", dir=memory))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def reset(folders: list[Path], paths: list[Path], version: int = 0) -> None:
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        for name in os.listdir(folder):
            (folder / name).unlink()
    for path in paths:
        path.write_text(content(path, version))


def _complete(pointer: Path) -> bool:
    try:
        json.loads(pointer.read_text())
    except ValueError:
        return False  # cut short by the crash
    return True


@needs_fork
def test_a_crash_at_every_step_of_a_write_recovers_to_all_old_or_all_new(scratch, forker):
    """The child exits (as if killed) before each file-system call of one write in turn. Recovering
    any one folder settles the whole write (and cleans every folder when it holds a pointer);
    recovering all of them leaves only the targets."""
    folders, paths = layout(scratch, n=5)
    outcomes, pending = [], []
    for at in range(1000):
        reset(folders, paths)
        code = forker.run(op="write", paths=paths, version=1, at=at)
        if code == 0:
            break  # the write finished before call number ``at``
        assert code == 7, Path(forker.log.name).read_text()
        split = len(versions(paths)) > 1
        chosen = folders[at % 3]
        pointed = any(name.endswith(".pending") and _complete(chosen / name) for name in os.listdir(chosen))
        atomic.recover(chosen)
        (version,) = versions(paths)
        if pointed:  # its pointer names every folder of the write: all are settled and cleaned
            assert extras(folders, paths) == [], f"crash before call {at}"
        for folder in folders:
            atomic.recover(folder)
        assert versions(paths) == {version} and extras(folders, paths) == [], f"crash before call {at}"
        outcomes.append(version)
        pending.append(split)
    assert versions(paths) == {1} and extras(folders, paths) == []
    steps = len(outcomes)
    assert steps > 40, "the write made fewer file-system calls than its protocol needs"
    # old up to the commit point, new from it on, and some crashes fell between the renames
    assert outcomes == sorted(outcomes) and outcomes[0] == 0 and outcomes[-1] == 1 and any(pending)


@needs_fork
def test_a_crash_at_every_step_of_recovery_is_recovered_again(scratch, forker):
    folders, paths = layout(scratch, n=5)
    # the first crash point that leaves files split between versions (inside the renames)
    for at in range(1000):
        reset(folders, paths)
        assert forker.run(op="write", paths=paths, version=1, at=at) == 7
        if len(versions(paths)) > 1:
            break
    steps = 0
    for recovery_at in range(1000):
        reset(folders, paths)
        assert forker.run(op="write", paths=paths, version=1, at=at) == 7
        code = forker.run(op="recover", folders=folders, at=recovery_at)
        if code == 0:
            break
        assert code == 7, Path(forker.log.name).read_text()
        steps += 1
        for folder in reversed(folders):
            atomic.recover(folder)
        assert versions(paths) == {1} and extras(folders, paths) == [], f"recovery crashed before call {recovery_at}"
    assert steps >= 5


@needs_fork
@pytest.mark.parametrize("trials", [SIGKILL_TRIALS, pytest.param(5 * SIGKILL_TRIALS, marks=pytest.mark.slow)])
def test_sigkill_at_random_moments_leaves_every_file_old_or_new(scratch, forker, trials):
    """``trials`` times: a child rewrites 10 files in 3 folders, each write a new version, and is
    killed at a random moment; after recover() every file is complete and all carry one version."""
    rng = random.Random(SEED + trials)
    folders, paths = layout(scratch)
    atomic.write_files({path: content(path, 0) for path in paths})
    started = time.perf_counter()
    for version in range(1, 4):
        atomic.write_files({path: content(path, version) for path in paths})
    span = 2.5 * (time.perf_counter() - started) / 3  # about two and a half writes
    current, seen = 3, Counter()
    for trial in range(trials):
        start = 1000 * (trial + 1)
        pid = forker.ask(op="writer", paths=paths, start=start)["pid"]
        time.sleep(rng.uniform(0, span))
        os.kill(pid, signal.SIGKILL)
        assert forker.ask(op="wait", pid=pid)["code"] == -signal.SIGKILL, Path(forker.log.name).read_text()
        left = extras(folders, paths)
        seen["split before recovery"] += len(versions(paths)) > 1
        seen["finished" if any(name.endswith(".journal") for name in left) else "undone" if left else "clean"] += 1
        for folder in folders:
            atomic.recover(folder)
        found = versions(paths)
        assert len(found) == 1, f"trial {trial}: files carry versions {sorted(found)}"
        (version,) = found
        assert version == current or version >= start, f"trial {trial}: version {version} is neither old nor new"
        assert extras(folders, paths) == [], f"trial {trial}"
        current = version
    # the kills fell both before and after commit points (else this test would prove little)
    assert seen["finished"] >= 1 and seen["undone"] >= 1, seen


@needs_fork
@pytest.mark.parametrize("trials", [SIGINT_TRIALS, pytest.param(5 * SIGINT_TRIALS, marks=pytest.mark.slow)])
def test_ctrl_c_at_random_moments_leaves_every_file_old_or_new_without_recovery(scratch, forker, trials):
    """``trials`` times: as above, but the child gets SIGINT and must leave, by itself, every file
    complete, all of one version, and no temporary file."""
    rng = random.Random(SEED + trials + 1)
    folders, paths = layout(scratch)
    atomic.write_files({path: content(path, 0) for path in paths})
    started = time.perf_counter()
    for version in range(1, 4):
        atomic.write_files({path: content(path, version) for path in paths})
    span = 2.5 * (time.perf_counter() - started) / 3
    current, codes = 3, Counter()
    for trial in range(trials):
        start = 1000 * (trial + 1)
        pid = forker.ask(op="writer", paths=paths, start=start)["pid"]
        time.sleep(rng.uniform(0, span))
        os.kill(pid, signal.SIGINT)
        code = forker.ask(op="wait", pid=pid)["code"]
        assert code in (130, 131), f"trial {trial}: exit {code}: {Path(forker.log.name).read_text()}"
        codes[code] += 1
        found = versions(paths)
        assert len(found) == 1, f"trial {trial}: files carry versions {sorted(found)}"
        (version,) = found
        assert version == current or version >= start, f"trial {trial}: version {version} is neither old nor new"
        assert extras(folders, paths) == [], f"trial {trial}"
        current = version
    assert codes[131] >= 1, f"no Ctrl-C fell inside a commit, so none was held back: {codes}"
