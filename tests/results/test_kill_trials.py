"""End-to-end kill trials: a pytest run with ``--mitest-update-baseline`` killed (SIGKILL) or interrupted
(Ctrl-C) at random moments, most of them inside its session-finish writes, leaves every baseline file
old or every one new, the four reports likewise, and no temporary file: after Ctrl-C at once, after
SIGKILL once the next run (or ``mitest.results.atomic.recover``) has been through the folders.

The inner suite has 11 test modules in 3 folders (``a/``, ``b/``, ``c/``), each deciding one claim with
``mt.Effect.from_values`` whose estimate is ``VERSION + index / 100``; ``VERSION`` is read from
``version.txt`` at import, so every baseline file and every report tells which run wrote it. A trial
starts an update run with the next version, signals it, and checks what is left.

The inner runs are ``pytest.main`` in children forked from one helper process (the "forker") that has
imported pytest, numpy, scipy, pandas and mitest once, with plugin autoloading off and mitest's plugin
given with ``-p``: a run costs under a second instead of an interpreter start and every installed
plugin's import (about 6 s on 2 cores). A slow test also signals real ``python -m pytest`` processes.

The signals are aimed. The parent watches the suite for the first test's mark (``progress.txt``) and
for mitest's ``.mitest-*`` pointers, temporary files and journals in the baseline and report folders,
and in turn signals a run: during its tests; just after its first pointer appears (before the baseline
write's commit point); just after its journal appears (after it); or a random time after the first
pointer (in either write, in the rendering of the reports between them, or at the end of the run). The
delays are scaled by a timed run. Where each signal landed is read from the files it left, and counted;
the counts are printed (``-s`` shows them).
"""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from statistics import mean

import pytest

from mitest.results import atomic, baseline

SIGKILL_TRIALS = 16  # about 10 s on 2 cores (every fifth followed by a normal run); 15 s under load
SIGINT_TRIALS = 16  # about 10 s; 18 s under load
SLOW = 3  # the slow variants run 3 times as many trials: about 30 s each
SUBPROCESS_TRIALS = 2  # per signal, real `python -m pytest` processes (slow test, about 6 s each)
SEED = 20240612
FOLDERS = ("a", "b", "c")
MODULES = [f"{FOLDERS[i % 3]}/test_kill_{i:02d}.py" for i in range(11)]
REPORTS = ("run.json", "summary.md", "report.html", "per_prompt.csv")
PROMPTS = 64  # enough to decide each of the 11 claims at alpha 0.05 / 11 (min_prompts is 52)
UPDATE = ("--mitest-update-baseline",)
REWRITE_WARNING = "pytest.PytestAssertRewriteWarning"  # mitest.plugin is imported before the run is
ESCAPED = 130  # a Ctrl-C out of pytest.main (in pytest_sessionfinish, or at pytest's start or end): a traceback

needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="the kill trials fork pytest runs")

MODULE = """
from pathlib import Path

import numpy as np

import mitest as mt

VERSION = int((Path(__file__).resolve().parents[1] / "version.txt").read_text())
INDEX = {index}


def test_claim(mi):
    with open(Path(__file__).resolve().parents[1] / "progress.txt", "a") as progress:
        progress.write(f"{{INDEX}}\\n")  # the parent's sign that the tests are running
    clean = np.linspace(0.0, 1.0, {prompts})
    spread = np.tile([-0.25, 0.25], {prompts} // 2)
    effect = mt.Effect.from_values(clean, clean + VERSION + INDEX / 100 + spread, metric="logit_diff")
    effect.expect_increase(at_least=0.5)
"""

FORKER = r"""
import gc, json, os, signal, sys, traceback

import numpy, pandas, pytest, scipy.stats  # what an inner run imports, so that a forked run starts warm
import mitest, mitest.claims.effect, mitest.results.gating, mitest.plugin
import mitest.results.report, mitest.results.report.html, mitest.results.report.markdown, mitest.results.report.table

gc.collect()
gc.freeze()  # the runs' garbage collections (pytest forces some) skip everything imported here

for line in sys.stdin:
    job = json.loads(line)
    if job["op"] == "wait":
        _, status = os.waitpid(job["pid"], 0)
        print(json.dumps({"code": os.waitstatus_to_exitcode(status)}), flush=True)
        continue
    ready, started = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(ready)
            log = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
            os.dup2(log, 1)
            os.dup2(log, 2)
            os.chdir(job["cwd"])
            signal.signal(signal.SIGINT, signal.default_int_handler)
            os.write(started, b"!")  # running: the parent's clock starts now
            os.close(started)
            code = int(pytest.main(job["args"]))
        except KeyboardInterrupt:  # as `python -m pytest` would: a traceback, and the process ends by SIGINT
            traceback.print_exc()
            code = 130
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    os.close(started)
    os.read(ready, 1)
    os.close(ready)
    print(json.dumps({"pid": pid}), flush=True)
"""


def inner_env(**extra: str) -> dict[str, str]:
    """This environment without what would change the inner runs (CI selects mitest's ci profile)."""
    package_root = str(Path(atomic.__file__).resolve().parents[2])  # the folder holding mitest/
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS", "PYTEST_PLUGINS")}
    env.pop("PYTEST_DISABLE_PLUGIN_AUTOLOAD", None)
    env["PYTHONPATH"] = os.pathsep.join([package_root, os.environ.get("PYTHONPATH", "")])
    return {**env, **extra}


class Forker:
    """A helper process that forks inner pytest runs on request and reaps them."""

    def __init__(self, log: Path) -> None:
        self.log = log.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-c", FORKER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            env=inner_env(PYTEST_DISABLE_PLUGIN_AUTOLOAD="1"),
        )

    def ask(self, **job: object) -> dict:
        self.process.stdin.write((json.dumps(job, default=str) + "\n").encode())
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        assert line, f"the forker died: {Path(self.log.name).read_text()}"
        return json.loads(line)

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)
        self.log.close()


class Forked:
    """Inner runs forked by the forker: ``pytest.main([".", "-p", "mitest.plugin", ...])`` in the suite."""

    def __init__(self, forker: Forker, root: Path, log: Path) -> None:
        self.forker, self.root, self.log = forker, root, log

    def start(self, *args: str) -> int:
        argv = [".", "-p", "mitest.plugin", "-p", "no:cacheprovider", "-q", "-W", f"ignore::{REWRITE_WARNING}", *args]
        return self.forker.ask(op="run", args=argv, cwd=self.root, log=self.log)["pid"]

    def done(self, pid: int) -> bool:
        """Whether the child has exited: it stays a zombie until the forker reaps it (Linux can tell)."""
        try:
            with open(f"/proc/{pid}/stat") as stat:
                return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
        except (OSError, IndexError):
            return False  # then the poll waits for its deadline

    def signal(self, pid: int, signum: int) -> None:
        os.kill(pid, signum)  # an exited child is not reaped before wait(): its pid is still its own

    def wait(self, pid: int) -> int:
        return self.forker.ask(op="wait", pid=pid)["code"]

    def run(self, *args: str) -> int:
        return self.wait(self.start(*args))


class Spawned:
    """Real inner runs: ``python -m pytest . -p no:cacheprovider ...`` with every installed plugin."""

    def __init__(self, root: Path, log: Path) -> None:
        self.root, self.log = root, log

    def start(self, *args: str) -> subprocess.Popen:
        argv = [sys.executable, "-m", "pytest", ".", "-p", "no:cacheprovider", "-p", "no:randomly", "-q", *args]
        with self.log.open("w") as log:
            return subprocess.Popen(
                argv, cwd=self.root, env=inner_env(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )

    def done(self, process: subprocess.Popen) -> bool:
        return process.poll() is not None

    def signal(self, process: subprocess.Popen, signum: int) -> None:
        process.send_signal(signum)  # does nothing once the process is reaped

    def wait(self, process: subprocess.Popen) -> int:
        code = process.wait(timeout=300)
        return ESCAPED if code == -signal.SIGINT else code  # Python ends by SIGINT on an uncaught Ctrl-C


@dataclass
class Template:
    """The suite with version-1 baselines and reports, and how long an update run takes."""

    root: Path
    until_tests: float  # from the start of an update run to its first test
    tests: float  # from then to its first .mitest-* file (the first pointer)
    to_commit: float  # from then to its first journal (the baseline write's commit point)
    committed: float  # from then until that journal is gone (the write finished)
    tail: float  # from the first .mitest-* file to the end of the run

    def timings(self) -> str:
        names = ("until_tests", "tests", "to_commit", "committed", "tail")
        return ", ".join(f"{name} {1000 * getattr(self, name):.0f} ms" for name in names)

    def delay(self, aim: str, rng: random.Random) -> float:
        """How long after the moment ``aim`` waits for to send the signal."""
        if aim == "tests":
            return rng.uniform(0, 0.5 * self.tests)  # the end of "tests" is the session finish before the writes
        if aim == "pointers":
            return rng.uniform(0, self.to_commit)
        if aim == "journal":
            return rng.uniform(0, self.committed / 3)
        return rng.uniform(0, 1.2 * self.tail)


def ending(log: Path) -> str:
    """The end of an inner run's output (for failure messages)."""
    return log.read_text()[-3000:]


def make_suite(root: Path) -> None:
    for index, module in enumerate(MODULES):
        (root / module).parent.mkdir(parents=True, exist_ok=True)
        (root / module).write_text(MODULE.format(index=index, prompts=PROMPTS))
    (root / "pytest.ini").write_text("[pytest]\n")
    (root / "version.txt").write_text("1\n")


def folders(root: Path) -> list[Path]:
    return [*(root / name / "baselines" for name in FOLDERS), root / "reports"]


def writing(root: Path) -> bool:
    """Whether mitest's pointers, temporary files or journals are in a baseline or report folder."""
    return any(folder.is_dir() and any(".mitest-" in name for name in os.listdir(folder)) for folder in folders(root))


def journals(root: Path) -> list[str]:
    """The folders (``baselines`` or ``reports``) that hold a journal: a write past its commit point."""
    found = {folder.name for folder in folders(root) if folder.is_dir() and any_journal(os.listdir(folder))}
    return sorted(found)


def any_journal(names: list[str]) -> bool:
    return any(name.endswith(".journal") for name in names)


def started(root: Path) -> int:
    """How many of the suite's tests a run started."""
    progress = root / "progress.txt"
    return len(progress.read_text().split()) if progress.exists() else 0


def reached(root: Path, aim: str) -> bool:
    """Whether a run reached the moment after which ``aim`` sends its signal."""
    if aim == "tests":
        return (root / "progress.txt").exists()
    return bool(journals(root)) if aim == "journal" else writing(root)


def leftovers(root: Path) -> list[str]:
    """Every pointer, temporary file and journal of mitest's, and any other ``*.tmp``, in the suite."""
    found = []
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = [name for name in subfolders if name != "__pycache__"]
        found += [
            os.path.relpath(os.path.join(folder, name), root)
            for name in names
            if ".mitest-" in name or name.endswith(".tmp")
        ]
    return sorted(found)


def baseline_versions(root: Path) -> dict[str, int]:
    """The version of each baseline file; each must be a complete, valid baseline of its module's claim."""
    found = {}
    for index, module in enumerate(MODULES):
        path = (root / module).parent / "baselines" / f"{Path(module).stem}.json"
        claims = baseline.load(path)  # raises on a file cut short or invalid; {} when it is missing
        assert len(claims) == 1 and f"{Path(module).name}::test_claim" in next(iter(claims), ""), path
        (entry,) = claims.values()
        version = round(entry["estimate"] - index / 100)
        assert entry["estimate"] == pytest.approx(version + index / 100) and entry["outcome"] == "HOLDS", path
        assert len(entry["claim_value"]) == PROMPTS, path
        found[module] = version
    return found


def snapshot(root: Path) -> dict[str, bytes]:
    return {name: (root / "reports" / name).read_bytes() for name in REPORTS}


def report_version(root: Path) -> int:
    """The version the four reports describe; each must be complete, and all must agree."""
    folder = root / "reports"
    run = json.loads((folder / "run.json").read_text())
    estimates = {claim["test"].split("::")[0]: claim["estimate"] for claim in run["claims"]}
    assert sorted(estimates) == sorted(MODULES) and run["summary"]["claims"] == len(MODULES)
    with (folder / "per_prompt.csv").open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == len(MODULES) * PROMPTS
    per_test = {m: mean(float(r["claim_value"]) for r in rows if r["test"].split("::")[0] == m) for m in MODULES}
    found = {round(estimates[m] - i / 100) for i, m in enumerate(MODULES)}
    found |= {round(per_test[m] - i / 100) for i, m in enumerate(MODULES)}
    assert f"**{len(MODULES)} claims**" in (folder / "summary.md").read_text()
    assert (folder / "report.html").read_text().rstrip().endswith("</html>")
    assert len(found) == 1, f"the reports describe versions {sorted(found)}"
    return found.pop()


def reports_state(root: Path, before: dict[str, bytes]) -> str:
    """``old`` when the four reports are the bytes they were, ``new`` when all four were rewritten."""
    now = snapshot(root)
    old = [name for name in REPORTS if now[name] == before[name]]
    assert old in ([], list(REPORTS)), f"the reports are split: {old} old, the others new"
    report_version(root)  # every file complete, all of one run
    return "old" if old else "new"


def landed(root: Path, before: dict[str, bytes], new: int) -> str:
    """Where the signal landed, read from the files the run left (before any recovery). Every file that
    exists must be complete and valid even now: only the versions may differ."""
    left = leftovers(root)
    on_disk = set(baseline_versions(root).values())
    run = json.loads((root / "reports" / "run.json").read_text())  # never half-written
    assert run["schema"] == "mitest.run"
    if started(root) < len(MODULES):
        assert not left and on_disk != {new}, f"a run stopped in its tests wrote files: {left}"
        assert reports_state(root, before) == "old", "a run stopped in its tests wrote its reports"
        return "in the tests"
    for write, names in (
        ("baseline", [n for n in left if "baselines" in n]),
        ("report", [n for n in left if "reports" in n]),
    ):
        if names:
            committed = any_journal(names)
            return f"inside the {write} write, {'after' if committed else 'before'} its commit point"
    if on_disk != {new}:
        return "after the tests, before the writes"
    return "after the writes" if reports_state(root, before) == "new" else "between the baseline and report writes"


# Where a trial's signal is aimed, in turn: a random moment of the tests (after the first one started);
# just after the first pointer appears (before the baseline write's commit point); just after its
# journal appears (after it); a random moment of the write phase (both writes, the reports' rendering
# between them, and the end of the run).
AIMS = ("tests", "pointers", "journal", "write phase")


def strike(runner, root: Path, signum: int, aim: str, rng: random.Random, template: Template) -> tuple[int, list]:
    """Start an update run and send it ``signum`` at a random moment chosen by ``aim``. Returns its exit
    code and the folders that held a journal just before the signal (those writes must end all new)."""
    (root / "progress.txt").unlink(missing_ok=True)
    run = runner.start(*UPDATE)
    deadline = time.perf_counter() + 10 * (template.until_tests + template.tests + template.tail) + 10
    while not reached(root, aim) and not runner.done(run) and time.perf_counter() < deadline:
        time.sleep(0.0002)
    time.sleep(template.delay(aim, rng))
    committed = journals(root)
    runner.signal(run, signum)
    return runner.wait(run), committed


@pytest.fixture(scope="module")
def forker(tmp_path_factory):
    helper = Forker(tmp_path_factory.mktemp("forker") / "stderr.txt")
    yield helper
    helper.close()


@pytest.fixture(scope="module")
def template(tmp_path_factory, forker) -> Template:
    """Version-1 baselines and reports, written by an update run, then rewritten by a timed one (which
    replaces files, as the trials' runs do)."""
    root = tmp_path_factory.mktemp("kill-trials") / "suite"
    make_suite(root)
    log = root.parent / "run.log"
    runner = Forked(forker, root, log)
    assert runner.run(*UPDATE) == 0, ending(log)
    (root / "progress.txt").unlink()
    pid = runner.start(*UPDATE)
    started = time.perf_counter()  # the run is running (the forker has imported everything)
    times = {}
    while "gone" not in times and time.perf_counter() < started + 60:
        now = time.perf_counter()
        for moment, aim in (("tests", "tests"), ("pointer", "pointers"), ("journal", "journal")):
            if moment not in times and reached(root, aim):
                times[moment] = now
        if "journal" in times and not journals(root):
            times["gone"] = now
        time.sleep(0.0002)
    assert runner.wait(pid) == 0, ending(log)
    ended = time.perf_counter()
    assert set(baseline_versions(root).values()) == {1} and report_version(root) == 1
    assert leftovers(root) == []
    assert "gone" in times, f"no journal seen (times: {times}): the writes take under a poll"
    return Template(
        root,
        until_tests=times["tests"] - started,
        tests=times["pointer"] - times["tests"],
        to_commit=times["journal"] - times["pointer"],
        committed=times["gone"] - times["journal"],
        tail=ended - times["pointer"],
    )


def clone(template: Template, tmp_path: Path) -> Path:
    root = tmp_path / "suite"
    shutil.copytree(template.root, root)
    return root


def recovered_reports_state(root: Path, before: dict[str, bytes], scratch: Path) -> str:
    """:func:`reports_state` of a recovered copy of the report folder (the folder itself is left as it is)."""
    shutil.rmtree(scratch, ignore_errors=True)
    shutil.copytree(root / "reports", scratch / "reports")
    atomic.recover(scratch / "reports")
    assert sorted(os.listdir(scratch / "reports")) == sorted(REPORTS)
    return reports_state(scratch, before)


def check_the_normal_run(root: Path, log: Path, on_disk: int) -> None:
    """The run compared every claim with the recovered baseline of ``on_disk`` and passed."""
    run = json.loads((root / "reports" / "run.json").read_text())
    for claim in run["claims"]:
        index = MODULES.index(claim["test"].split("::")[0])
        status = claim["baseline"]["status"]
        assert status in ("same", "ok"), f"{claim['test']}: {claim['baseline']}\n{ending(log)}"
        assert round(claim["baseline"]["old_estimate"] - index / 100) == on_disk, claim["test"]
    assert run["problems"] == [] and run["summary"]["regressions"] == 0


def check_committed(committed: list[str], version: int, reports: str, new: int, trial: int) -> None:
    """A write whose journal existed when the signal was sent had passed its commit point: all new."""
    if "baselines" in committed:
        assert version == new, f"trial {trial}: a committed baseline write was lost"
    if "reports" in committed:
        assert reports == "new", f"trial {trial}: a committed report write was lost"


@needs_fork
@pytest.mark.parametrize("trials", [SIGKILL_TRIALS, pytest.param(SLOW * SIGKILL_TRIALS, marks=pytest.mark.slow)])
def test_sigkill_at_random_moments_of_an_update_run_leaves_baselines_and_reports_all_old_or_all_new(
    template, forker, tmp_path, trials
):
    """``trials`` update runs, each with a new version, are killed; then either a normal run (every fifth
    trial: it recovers each baseline folder before reading it, and the report folder before writing it)
    or ``atomic.recover`` on each folder, in a random order. Every baseline is then complete and of one
    version, old or new (new when its journal was there before the kill), the reports are all old or all
    new, and no temporary file is left."""
    rng = random.Random(SEED + trials)
    root, log = clone(template, tmp_path), tmp_path / "run.log"
    runner = Forked(forker, root, log)
    current, current_reports, seen, notes = 1, 1, Counter(), Counter()
    for trial in range(trials):
        new = trial + 2
        (root / "version.txt").write_text(f"{new}\n")
        before = snapshot(root)
        code, committed = strike(runner, root, signal.SIGKILL, AIMS[trial % 4], rng, template)
        assert code in (-signal.SIGKILL, 0), f"trial {trial}: exit {code}\n{ending(log)}"
        notes["killed" if code else "ended before the kill"] += 1
        notes["killed with a journal on disk"] += bool(committed)
        notes["baselines split on disk before recovery"] += len(set(baseline_versions(root).values())) > 1
        seen[landed(root, before, new)] += 1
        if trial % 5 == 1:  # a normal run: it recovers what it reads and writes
            state = recovered_reports_state(root, before, tmp_path / "copy")  # what its report write will find
            notes["normal runs that found leftovers"] += bool(leftovers(root))
            assert runner.run() == 0, f"trial {trial}: the normal run failed\n{ending(log)}"
            on_disk = set(baseline_versions(root).values())
            assert len(on_disk) == 1, f"trial {trial}: baselines of versions {sorted(on_disk)}"
            check_the_normal_run(root, log, *on_disk)
            assert report_version(root) == new  # the normal run's own reports
            current_reports = new
        else:
            for folder in rng.sample(folders(root), k=4):
                atomic.recover(folder)
            state = reports_state(root, before)
            current_reports = new if state == "new" else current_reports
            assert report_version(root) == current_reports
            on_disk = set(baseline_versions(root).values())
            assert len(on_disk) == 1, f"trial {trial}: baselines of versions {sorted(on_disk)}"
        (version,) = on_disk
        assert version in (current, new), f"trial {trial}: version {version} is neither old ({current}) nor new"
        assert state == "old" or version == new, f"trial {trial}: new reports over old baselines"
        assert code != 0 or (version, state) == (new, "new"), f"trial {trial}: a finished run left old files"
        check_committed(committed, version, state, new, trial)
        assert leftovers(root) == [], f"trial {trial}"
        current = version
    print(f"\n{trials} SIGKILL trials ({template.timings()}): {dict(notes)}; {dict(seen)}")
    inside = sum(n for where, n in seen.items() if where.startswith("inside"))
    assert inside >= trials // 4, f"too few kills landed inside a write: {seen}"
    assert seen["in the tests"] >= 1, seen
    assert any("before its commit" in where for where in seen), seen
    assert any("after its commit" in where for where in seen), seen


@needs_fork
@pytest.mark.parametrize("trials", [SIGINT_TRIALS, pytest.param(SLOW * SIGINT_TRIALS, marks=pytest.mark.slow)])
def test_ctrl_c_at_random_moments_of_an_update_run_leaves_baselines_and_reports_all_old_or_all_new(
    template, forker, tmp_path, trials
):
    """``trials`` update runs get SIGINT (pytest's Ctrl-C) at random moments. Without any recovery, each
    leaves every baseline complete and of one version, the reports all old or all new, no temporary
    file; a run stopped in its tests writes nothing, a write whose journal existed at the signal (past its
    commit point: the signal is held back) ends all new, and a run that ends normally writes everything."""
    rng = random.Random(SEED + trials + 1)
    root, log = clone(template, tmp_path), tmp_path / "run.log"
    runner = Forked(forker, root, log)
    current, current_reports, seen = 1, 1, Counter()
    for trial in range(trials):
        new = trial + 2
        (root / "version.txt").write_text(f"{new}\n")
        before = snapshot(root)
        code, committed = strike(runner, root, signal.SIGINT, AIMS[trial % 4], rng, template)
        failed = f"trial {trial}: exit {code}\n{ending(log)}"
        assert code in (0, pytest.ExitCode.INTERRUPTED, ESCAPED), failed
        assert leftovers(root) == [], failed
        on_disk = set(baseline_versions(root).values())
        assert len(on_disk) == 1, f"baselines of versions {sorted(on_disk)}: {failed}"
        (version,) = on_disk
        assert version in (current, new), f"version {version} is neither old ({current}) nor new: {failed}"
        state = reports_state(root, before)
        assert report_version(root) == (new if state == "new" else current_reports)
        assert state == "old" or version == new, f"new reports over old baselines: {failed}"
        check_committed(committed, version, state, new, trial)
        seen["signalled with a journal on disk (held back until the write ended)"] += bool(committed)
        if started(root) < len(MODULES):
            assert (version, state) == (current, "old"), f"a run stopped in its tests wrote files: {failed}"
            seen[f"in the tests (exit {code}): nothing written"] += 1
        elif code == 0:
            assert (version, state) == (new, "new"), f"a finished run left old files: {failed}"
            seen["after the run ended"] += 1
        else:
            written = "nothing" if version == current else "baselines" if state == "old" else "everything"
            seen[f"after the tests (exit {code}): {written} written"] += 1
        current, current_reports = version, (new if state == "new" else current_reports)
    print(f"\n{trials} Ctrl-C trials ({template.timings()}): {dict(seen)}")
    finishing = sum(n for where, n in seen.items() if where.startswith("after the tests"))
    assert finishing >= trials // 4, f"too few interrupts landed in the session finish: {seen}"
    assert any(where.startswith("in the tests") for where in seen), f"no Ctrl-C fell in the tests: {seen}"
    assert seen["signalled with a journal on disk (held back until the write ended)"] >= 1, seen


@needs_fork
@pytest.mark.slow
def test_a_real_pytest_process_killed_or_interrupted_while_writing_leaves_all_old_or_all_new(template, tmp_path):
    """As above, with real ``python -m pytest`` processes (every installed plugin loaded), each signalled
    just after mitest's first pointer or journal appears, or a random time after the first pointer."""
    rng = random.Random(SEED)
    root, log = clone(template, tmp_path), tmp_path / "run.log"
    runner = Spawned(root, log)
    current, current_reports, seen = 1, 1, Counter()
    for trial, signum in enumerate([signal.SIGKILL, signal.SIGINT] * SUBPROCESS_TRIALS):
        new = trial + 2
        (root / "version.txt").write_text(f"{new}\n")
        before = snapshot(root)
        code, committed = strike(runner, root, signum, AIMS[1 + trial % 3], rng, template)
        failed = f"trial {trial}: exit {code}\n{ending(log)}"
        killed = signum == signal.SIGKILL
        assert code in ((-signal.SIGKILL, 0) if killed else (0, pytest.ExitCode.INTERRUPTED, ESCAPED)), failed
        seen[f"{signal.Signals(signum).name}: {landed(root, before, new)}"] += 1
        if killed:
            for folder in rng.sample(folders(root), k=4):
                atomic.recover(folder)
        assert leftovers(root) == [], failed
        on_disk = set(baseline_versions(root).values())
        assert len(on_disk) == 1 and on_disk <= {current, new}, f"versions {sorted(on_disk)}: {failed}"
        state = reports_state(root, before)
        assert report_version(root) == (new if state == "new" else current_reports)
        check_committed(committed, *on_disk, state, new, trial)
        current, current_reports = on_disk.pop(), (new if state == "new" else current_reports)
    print(f"\n{sum(seen.values())} real pytest processes: {dict(seen)}")
