"""A Markdown summary sized for a CI step summary: capped, and cut at a row boundary.

Every string that comes from the user or a run file (test names, claims, notes with prompt texts,
messages) goes through :func:`escape_markdown` or :func:`code_span`, so it shows as the text it is:
no HTML, links, emphasis or table cells of its own, and no line breaks.
"""

from __future__ import annotations

import html
import re

MAX_CHARS = 60_000  # below GitHub's 1 MiB step-summary limit, with room for other steps


def render_markdown(run: dict, max_chars: int = MAX_CHARS) -> str:
    """Summary counts, one table row per claim, then a short table of each sweep claim's named and
    failing cells; rows and tables past ``max_chars`` are left out with a note."""
    summary, settings = run["summary"], run["settings"]
    head = [
        "# mitest claims",
        "",
        f"**{_count(summary, 'claims')} claims**: {_count(summary, 'holds')} hold, "
        f"{_count(summary, 'refuted')} refuted, {_count(summary, 'inconclusive')} inconclusive, "
        f"{_count(summary, 'regressions')} baseline regressions{_undecided_count(summary)} "
        f"(alpha {escape_markdown(settings['alpha'])}, correction {escape_markdown(settings['correction'])}).",
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
    sweeps = [claim for claim in run["claims"] if claim.get("sweep")]
    for shown, claim in enumerate(sweeps):
        table = _sweep_table(claim)
        if len(text) + len(table) + 200 > max_chars:
            return text + f"\n_{len(sweeps) - shown} more sweep tables not shown (size cap); see report.html._\n"
        text += table
    return text


SWEEP_ROWS = 10


def _sweep_table(claim: dict) -> str:
    """The named and the failing cells of a sweep claim (failing first), at most ``SWEEP_ROWS`` of them."""
    cells = claim["sweep"]["cells"]
    listed = [cell for cell in cells if cell.get("failing")] + [
        cell for cell in cells if cell.get("named") and not cell.get("failing")
    ]
    lines = [
        "",
        f"**Sweep** {escape_markdown(claim['claim'])} ({len(cells)} cells, {code_span(claim['test'])}):",
        "",
        "| cell | site | role | estimate | CI |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {code_span(cell['cell'])} | {code_span(cell['site'])} | {_role(cell)} | {float(cell['estimate']):.4g} "
        f"| [{float(cell['low']):.4g}, {float(cell['high']):.4g}] |"
        for cell in listed[:SWEEP_ROWS]
    ]
    if len(listed) > SWEEP_ROWS:
        lines += ["", f"_{len(listed) - SWEEP_ROWS} more named or failing cells; see report.html or run.json._"]
    return "\n".join(lines) + "\n"


def _role(cell: dict) -> str:
    named = "named" if cell.get("named") else "other"
    return f"{named}, **not shown to hold**" if cell.get("failing") else named


def _row(claim: dict) -> str:
    baseline = claim.get("baseline") or {}
    status = baseline.get("status", "")
    notes = "".join(f"<br>⚠ {escape_markdown(note)}" for note in claim.get("notes") or ())
    cells = [
        f"**{escape_markdown(claim['outcome'])}**",
        escape_markdown(claim["claim"]) + notes,
        code_span(claim["test"]),
        f"{float(claim['estimate']):.4g}",
        _interval(claim),
        f"{float(claim['threshold']):.4g}",
        "searched" if claim.get("metric") == "property" else f"{float(claim['pvalue']):.2g}",
        escape_markdown(status)
        + (f": {escape_markdown(baseline.get('message', ''))}" if status in ("regressed", "changed") else "")
        + _drift(baseline),
    ]
    return "| " + " | ".join(cells) + " |\n"


def _interval(claim: dict) -> str:
    """The CI cell; a searched property has no interval, only how many prompts it was tried on."""
    if claim.get("metric") == "property":
        return f"{escape_markdown(claim['n'])} prompts tried"
    return f"[{float(claim['low']):.4g}, {float(claim['high']):.4g}]"


def _undecided_count(summary: dict) -> str:
    count = _count(summary, "undecided")
    return f" ({count} of them claims the tests no longer decided)" if count else ""


def _drift(baseline: dict) -> str:
    """How far the claim's model-derived directions moved from the baseline's."""
    moved = baseline.get("derived") or {}
    return "".join(f"<br>direction cosine {float(m['cosine']):.4f} to the baseline's" for m in moved.values())


def _problems_section(problems: list[str]) -> str:
    """What made the run fail although its claims passed (files not written, unused candidates)."""
    if not problems:
        return ""
    return "**Problems**:\n\n" + "".join(f"- {escape_markdown(problem)}\n" for problem in problems) + "\n"


def _stale_section(stale: list[dict]) -> str:
    """Baseline entries that no test decides any more."""
    if not stale:
        return ""
    lines = [f"**Stale baseline entries** ({len(stale)}; `--mitest-update-baseline` removes them):", ""]
    lines += [f"- {code_span(entry['key'])}: {escape_markdown(entry['reason'])}" for entry in stale]
    return "\n".join(lines) + "\n\n"


def _undecided_section(undecided: list[dict]) -> str:
    """The claims that held in the baseline but whose test raised before deciding them."""
    if not undecided:
        return ""
    lines = ["**Not decided** (held in the baseline; the test raised before deciding them):", ""]
    lines += [
        f"- {escape_markdown(entry['claim'])} {code_span(entry['test'])}: {escape_markdown(entry['error'])}; "
        f"baseline estimate {float(entry['old_estimate']):.4g}"
        for entry in undecided
    ]
    return "\n".join(lines) + "\n\n"


_LINE_BREAKS = re.compile(r"\r\n|\r|\n|\u2028|\u2029|\x0b|\x0c|\x85")
# Punctuation that can start an inline Markdown construct (code, emphasis, links, math, headings, cells).
_SPECIALS = re.compile(r"([\\`*_\[\]|~$#!])")
_BACKTICKS = re.compile(r"`+")


def escape_markdown(text: object) -> str:
    """``text`` as literal Markdown inline text: HTML escaped, Markdown punctuation backslashed, one line."""
    one_line = _LINE_BREAKS.sub(" ", str(text))
    return _SPECIALS.sub(r"\\\1", html.escape(one_line, quote=False))


def code_span(text: object) -> str:
    """``text`` as an inline code span that no backtick, pipe or line break in it can end early."""
    one_line = _LINE_BREAKS.sub(" ", str(text)).replace("|", "\\|")
    fence = "`" * (1 + max((len(run) for run in _BACKTICKS.findall(one_line)), default=0))
    pad = " " if not one_line or one_line.startswith(("`", " ")) or one_line.endswith(("`", " ")) else ""
    return f"{fence}{pad}{one_line}{pad}{fence}"


def _count(summary: dict, key: str) -> str:
    return escape_markdown(summary.get(key, 0))
