"""The ``mitest claims`` section of pytest's terminal summary."""

from __future__ import annotations

from typing import Any

from mitest.plugin.session import State


def write_summary(terminalreporter: Any, state: State) -> None:
    """One line per claim (verdict, estimate, interval, baseline), then stale entries and problems."""
    if not (state.records or state.undecided or state.problems or state.stale or state.orphans):
        return
    write = terminalreporter.write_line
    terminalreporter.section("mitest claims")
    if state.records or state.undecided:
        header = f"{'verdict':<13} {'estimate':>10} {'CI':>23} {'threshold':>10}  {'baseline':<10} claim"
        write(header)
    for record in state.records:
        base = record.get("baseline") or {}
        delta = ""
        if "old_estimate" in base:
            delta = f" ({record['estimate'] - base['old_estimate']:+.3g})"
        ci = f"[{float(record['low']):.3g}, {float(record['high']):.3g}]"
        if record.get("kind") == "property":  # searched, not estimated
            ci = f"{record['n']} tried"
        write(
            f"{record['outcome']:<13} {float(record['estimate']):>10.4g} {ci:>23} {float(record['threshold']):>10.4g}  "
            f"{base.get('status', ''):<10} {record['claim']}{delta}  [{record['test']}]"
        )
    for entry in state.undecided:
        write(f"{'UNDECIDED':<13} {'':>10} {'':>23} {'':>10}  {'regressed':<10} {entry['claim']}  [{entry['test']}]")
    if state.stale:
        done = "removed" if state.options.update_baseline else "kept; --mitest-update-baseline removes them"
        write(f"{len(state.stale)} stale baseline entr{'y' if len(state.stale) == 1 else 'ies'} ({done}):")
        for entry in state.stale:
            write(f"  {entry['key']}  [{entry['baseline_file']}]: {entry['reason']}")
    for orphan in state.orphans:
        write(f"baseline file {orphan} has no test module any more (renamed or deleted?); remove it with git rm")
    for problem in state.problems:
        terminalreporter.write_line(f"mitest error: {problem}", red=True, bold=True)
    if state.report_files:
        write(f"reports: {', '.join(str(path) for path in state.report_files)}")
