"""The baseline side of a pytest session: find each claim's entry, gate it, list stale entries and
write the accepted baselines in one all-or-nothing transaction.

Torch-free: the plugin imports it when a test decides a claim or the session ends.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mitest.errors import MitestError
from mitest.results import baseline
from mitest.results.atomic import recover, write_files

if TYPE_CHECKING:
    from mitest.results.record import ClaimRecord


@dataclass
class Gate:
    """Baselines of one run: read once per file, compared per claim, written at the end."""

    root: Path  # the suite's root (pytest's rootdir): paths in records are relative to it
    folder: Path | None  # one folder for every baseline, or None for baselines/ beside each test file
    update: bool
    profile: str
    gate: str
    max_bytes: int = baseline.MAX_BYTES
    stored: dict[Path, dict[str, dict[str, Any]]] = field(default_factory=dict)
    broken: dict[Path, str] = field(default_factory=dict)

    def path_for(self, test_file: str | os.PathLike) -> Path:
        """The baseline file of a test module."""
        test_file = Path(test_file)
        return (self.folder or test_file.parent / "baselines") / f"{test_file.stem}.json"

    def key(self, test_file: str | os.PathLike, test: str, claim: str) -> str:
        return baseline.key(test_file, baseline.anchor(test_file, self.path_for(test_file), self.root), test, claim)

    def shown(self, path: str | os.PathLike) -> str:
        """``path`` relative to the suite's root (as run.json stores it)."""
        return Path(os.path.relpath(os.path.abspath(path), self.root)).as_posix()

    def entries(self, path: Path) -> dict[str, dict[str, Any]] | None:
        """The stored claims of a baseline file, or None when it cannot be used (see :attr:`broken`)."""
        if path not in self.stored and path not in self.broken:
            try:
                recover(path.parent)  # finish or undo an interrupted write before reading
                self.stored[path] = baseline.load(path, max_bytes=self.max_bytes)
            except (baseline.BaselineError, MitestError, OSError) as error:
                self.broken[path] = str(error).replace(str(path), self.shown(path))
        return self.stored.get(path)

    def check(self, records: Sequence[ClaimRecord], test_file: str | os.PathLike, margin: float) -> list[str]:
        """Compare each claim of one test with its baseline; the messages of claims that must fail it."""
        if not records:
            return []
        path = self.path_for(test_file)
        for record in records:
            record["baseline_file"] = self.shown(path)
        if self.update:
            for record in records:
                record["baseline"] = {"status": "updated", "message": "baseline rewritten from this run"}
            return []
        stored = self.entries(path)
        if stored is None:
            for record in records:
                record["baseline"] = {"status": "error", "message": self.broken[path]}
            return [f"BASELINE ERROR: {self.broken[path]}"]
        problems = []
        for record in records:
            comparison = baseline.compare(
                stored.get(record["key"]), record, margin=margin, alpha=record["alpha"], gate=self.gate
            )
            record["baseline"] = comparison
            status = comparison["status"]
            if status == "regressed":
                problems.append(f"BASELINE REGRESSION: {record['claim']}: {comparison['message']}")
            elif status == "error":
                problems.append(f"BASELINE ERROR: {record['claim']}: {comparison['message']}")
            elif status in ("new", "changed") and self.profile == "ci":
                what = (
                    f"has no baseline entry {record['key']!r}"
                    if status == "new"
                    else f"changed since its baseline ({'; '.join(comparison['changes'])})"
                )
                problems.append(
                    f"NO BASELINE: {record['claim']} {what} in {self.shown(path)}; the ci profile does not write "
                    "baselines. Run the suite with --mitest-update-baseline locally on the model the baseline "
                    "should describe, review the diff and commit the file."
                )
                comparison["message"] += " (ci profile: not written)"
        return problems

    def undecided(self, test_file: str | os.PathLike, test: str, decided: set[str], error: str) -> list[dict]:
        """Claims of ``test`` that held in the baseline but were not decided: the test raised first."""
        if self.update:
            return []
        path = self.path_for(test_file)
        stored = self.entries(path) or {}
        prefix = self.key(test_file, test, "")
        return [
            {
                "test": test,
                "key": entry_key,
                "claim": entry.get("claim", "claim"),
                "old_estimate": entry["estimate"],
                "error": error,
                "baseline_file": self.shown(path),
            }
            for entry_key, entry in sorted(stored.items())
            if entry_key.startswith(prefix) and entry_key not in decided and entry["outcome"] == "HOLDS"
        ]

    def stale(self, tests: dict[str, dict[str, Any]], decided: set[str]) -> list[dict[str, Any]]:
        """Baseline entries of fully collected modules that no test decides any more.

        ``tests`` maps each collected test's key prefix (``<file>::<test>``) to its module's
        ``file``, whether the module was collected ``whole`` and whether the test ``passed``.
        """
        found = []
        modules = {info["file"] for info in tests.values() if info["whole"]}
        for module in sorted(modules):
            path = self.path_for(module)
            stored = self.entries(path)
            if not stored:
                continue
            prefix = self.key(module, "", "").removesuffix("::")
            ran = {test: info["passed"] for test, info in tests.items() if info["file"] == module}
            for entry_key, reason in baseline.stale(stored, decided, ran, [prefix]).items():
                found.append({"key": entry_key, "baseline_file": self.shown(path), "reason": reason})
        return found

    def orphans(self, tests: dict[str, dict[str, Any]]) -> list[str]:
        """Baseline files beside collected modules whose own test module no longer exists (renamed or
        deleted); only with baselines/ beside each test file, where a file names its module."""
        if self.folder is not None:
            return []
        folders = {Path(info["file"]).parent / "baselines" for info in tests.values() if info["whole"]}
        return sorted(
            self.shown(path)
            for folder in folders
            for path in folder.glob("*.json")
            if not (folder.parent / f"{path.stem}.py").exists()
        )

    def write(self, records: Iterable[ClaimRecord], stale: list[dict[str, Any]], whole: set[str]) -> list[str]:
        """Write the baselines this run accepts, every file or none; returns what it left unwritten.

        New claims are added (not under the ci profile); ``--mitest-update-baseline`` rewrites every
        claim that ran and removes the ``stale`` entries. A broken file is replaced only when its
        module (one of ``whole``, absolute paths) was collected whole, so no entry of a test that did
        not run is lost. A claim whose numbers cannot be stored (not finite) is left out, with a message.
        """
        accepted: dict[Path, list[ClaimRecord]] = {}
        for record in records:
            status = (record.get("baseline") or {}).get("status")
            if self.update or (status == "new" and self.profile != "ci"):
                accepted.setdefault(self.root / record["baseline_file"], []).append(record)
        removed: dict[Path, list[str]] = {}
        for entry in stale if self.update else ():
            removed.setdefault(self.root / entry["baseline_file"], []).append(entry["key"])
        modules = {self.path_for(module) for module in whole}
        texts, left = {}, []
        for path in sorted(set(accepted) | set(removed)):
            current = self.entries(path)
            if current is None and not (self.update and path in modules):
                if self.update:
                    left.append(
                        f"{self.shown(path)} was not rewritten: it cannot be read ({self.broken[path]}) and this run "
                        "did not collect its whole test module, so entries of tests that did not run would be lost; "
                        "rerun --mitest-update-baseline on the whole module"
                    )
                continue  # a broken file fails its tests; only a whole-module update replaces it
            claims = dict(current or {})
            for entry_key in removed.get(path, ()):
                claims.pop(entry_key, None)
            for record in accepted.get(path, ()):
                entry = baseline.entry(record)
                problem = baseline.entry_problem(record["key"], entry)
                if problem:
                    left.append(f"{record['key']} not written to {self.shown(path)}: it {problem}")
                    record["baseline"] = {"status": "error", "message": f"not written to the baseline: it {problem}"}
                    continue
                claims[record["key"]] = entry
            texts[path] = baseline.render(claims)
        if texts:
            write_files(texts)
        for path, written in accepted.items():
            for record in written:
                if path in texts and record["baseline"]["status"] == "new":
                    record["baseline"] = {"status": "created", "message": f"baseline created in {self.shown(path)}"}
        for entry in stale if self.update else ():
            entry["removed"] = True
        return left
