"""A Markdown summary sized for a CI step summary: capped, and cut at a row boundary."""

from __future__ import annotations

MAX_CHARS = 60_000  # below GitHub's 1 MiB step-summary limit, with room for other steps


def render_markdown(run: dict, max_chars: int = MAX_CHARS) -> str:
    """Summary counts and one table row per claim; rows past ``max_chars`` are left out with a note."""
    summary = run["summary"]
    head = [
        "# mitest claims",
        "",
        f"**{summary['claims']} claims**: {summary['holds']} hold, {summary['refuted']} refuted, "
        f"{summary['inconclusive']} inconclusive, {summary['regressions']} baseline regressions"
        f"{_undecided_count(summary)} "
        f"(alpha {run['settings']['alpha']}, correction {run['settings']['correction']}).",
        "",
        "| verdict | claim | test | estimate | CI | threshold | p | baseline |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    sections = _problems_section(run.get("problems") or []) + _undecided_section(run.get("undecided") or [])
    sections += _stale_section(run.get("stale") or [])
    text = "\n".join(head[:4]) + "\n" + sections + "\n".join(head[4:]) + "\n"
    for shown, claim in enumerate(run["claims"]):
        row = _row(claim)
        if len(text) + len(row) + 200 > max_chars:
            left = len(run["claims"]) - shown
            return text + f"\n_{left} more claims not shown (size cap); see run.json or report.html._\n"
        text += row
    return text


def _row(claim: dict) -> str:
    baseline = claim.get("baseline") or {}
    status = baseline.get("status", "")
    notes = "".join(f"<br>⚠ {_escape(note)}" for note in claim.get("notes") or ())
    cells = [
        f"**{claim['outcome']}**",
        _escape(claim["claim"]) + notes,
        f"`{_escape(claim['test'])}`",
        f"{float(claim['estimate']):.4g}",
        _interval(claim),
        f"{float(claim['threshold']):.4g}",
        "searched" if claim.get("metric") == "property" else f"{float(claim['pvalue']):.2g}",
        status
        + (f": {_escape(baseline.get('message', ''))}" if status in ("regressed", "changed") else "")
        + _drift(baseline),
    ]
    return "| " + " | ".join(cells) + " |\n"


def _interval(claim: dict) -> str:
    """The CI cell; a searched property has no interval, only how many prompts it was tried on."""
    if claim.get("metric") == "property":
        return f"{claim['n']} prompts tried"
    return f"[{float(claim['low']):.4g}, {float(claim['high']):.4g}]"


def _undecided_count(summary: dict) -> str:
    count = summary.get("undecided", 0)
    return f" ({count} of them claims the tests no longer decided)" if count else ""


def _drift(baseline: dict) -> str:
    """How far the claim's model-derived directions moved from the baseline's."""
    moved = baseline.get("derived") or {}
    return "".join(f"<br>direction cosine {float(m['cosine']):.4f} to the baseline's" for m in moved.values())


def _problems_section(problems: list[str]) -> str:
    """What made the run fail although its claims passed (files not written, unused candidates)."""
    if not problems:
        return ""
    return "**Problems**:\n\n" + "".join(f"- {_escape(problem)}\n" for problem in problems) + "\n"


def _stale_section(stale: list[dict]) -> str:
    """Baseline entries that no test decides any more."""
    if not stale:
        return ""
    lines = [f"**Stale baseline entries** ({len(stale)}; `--mitest-update-baseline` removes them):", ""]
    lines += [f"- `{_escape(entry['key'])}`: {_escape(entry['reason'])}" for entry in stale]
    return "\n".join(lines) + "\n\n"


def _undecided_section(undecided: list[dict]) -> str:
    """The claims that held in the baseline but whose test raised before deciding them."""
    if not undecided:
        return ""
    lines = ["**Not decided** (held in the baseline; the test raised before deciding them):", ""]
    lines += [
        f"- {_escape(entry['claim'])} `{_escape(entry['test'])}`: {_escape(entry['error'])}; "
        f"baseline estimate {float(entry['old_estimate']):.4g}"
        for entry in undecided
    ]
    return "\n".join(lines) + "\n\n"


def _escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")
