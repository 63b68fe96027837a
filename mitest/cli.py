"""The ``mitest`` command: run a suite, re-render a run's reports, compare two runs.

mitest run [pytest args]          run hypothesis suites (pytest with the mitest plugin)
mitest report RUN.json [--out D]  re-render summary.md, report.html and per_prompt.csv
mitest compare OLD.json NEW.json  exit status 1 when a claim regressed
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mitest`` command; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "run":  # everything after 'run' belongs to pytest, unparsed
        import pytest

        return int(pytest.main(args[1:]))
    parser = argparse.ArgumentParser(
        prog="mitest", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="run hypothesis suites: pytest with the mitest plugin")
    report = commands.add_parser("report", help="re-render the reports of a run.json")
    report.add_argument("run", type=Path)
    report.add_argument("--out", type=Path, default=None, help="output folder (default: the run file's folder)")
    compare = commands.add_parser("compare", help="compare two run.json files claim by claim")
    compare.add_argument("old", type=Path)
    compare.add_argument("new", type=Path)
    compare.add_argument("--margin", type=float, default=0.2, help="allowed relative drop of an effect (default 0.2)")
    compare.add_argument("--gate", choices=("evidence", "prove"), default="evidence", help="the gate (docs/gating.md)")
    options = parser.parse_args(args)
    try:
        if options.command == "report":
            return _report(options.run, options.out)
        return _compare(options.old, options.new, options.margin, options.gate)
    except ValueError as error:  # ReportError and BaselineError are ValueErrors with readable messages
        print(f"mitest: {error}", file=sys.stderr)
        return 2
    except (KeyError, TypeError) as error:
        print(
            f"mitest: the run file is missing or has a malformed field ({error}); was it written by mitest?",
            file=sys.stderr,
        )
        return 2


def _report(path: Path, out: Path | None) -> int:
    from mitest.results.report import load_run, write_reports

    for written in write_reports(load_run(path), out or path.parent):
        print(written)
    return 0


def _compare(old_path: Path, new_path: Path, margin: float, gate: str) -> int:
    from mitest.results import baseline
    from mitest.results.report import load_run

    old = {c["key"]: c for c in load_run(old_path)["claims"]}
    new_run = load_run(new_path)
    regressed = 0
    for claim in new_run["claims"]:
        before = old.pop(claim["key"], None)
        result = baseline.compare(
            None if before is None else baseline.entry(before), claim, margin=margin, alpha=claim["alpha"], gate=gate
        )
        regressed += result["status"] in ("regressed", "error")
        print(f"{result['status']:<10} {claim['outcome']:<13} {claim['claim']}  [{claim['test']}]")
        if result["status"] in ("regressed", "changed", "error"):
            print(f"           {result['message']}")
    undecided = {entry.get("key") for entry in new_run.get("undecided") or ()}
    for key, claim in sorted(old.items()):  # claims of the old run that the new one did not decide
        held = claim["outcome"] == "HOLDS"
        regressed += held
        why = "its test raised before deciding it" if key in undecided else "no claim of the new run has its key"
        print(f"{'regressed' if held else 'missing':<10} {'UNDECIDED':<13} {claim['claim']}  [{claim['test']}]")
        print(f"           {claim['outcome']} in the old run; {why}")
    print(f"{regressed} regression(s)")
    return 1 if regressed else 0


if __name__ == "__main__":
    sys.exit(main())
