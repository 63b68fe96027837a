"""A single self-contained HTML report: inline CSS and SVG only, so it opens offline."""

from __future__ import annotations

import html
import math
from typing import Any

import numpy as np

from mitest.results.report.curve import render_curve
from mitest.results.report.heatmap import render_heatmap
from mitest.results.report.scatter import render_scatter

COLORS = {"HOLDS": "#1a7f37", "REFUTED": "#cf222e", "INCONCLUSIVE": "#9a6700"}
WIDTH, ROW = 360, 26


def render_html(run: dict) -> str:
    """The report: summary, a forest plot row per claim (estimate, CI, threshold), the per-prompt
    distribution of each claim, the baseline comparison, a heatmap under each sweep claim and the curve
    under each faithfulness-curve claim and the scatter of estimates against exact patching under each
    attribution claim."""
    summary = {key: _text(value) for key, value in run["summary"].items()}
    settings = {key: _text(value) for key, value in run["settings"].items()}
    undecided = _undecided_note(run)
    rows = "\n".join(
        _claim_row(claim) + _sweep_row(claim) + _curve_row(claim) + _agreement_row(claim) for claim in run["claims"]
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>mitest report</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 2em; color: #1f2328; }}
table {{ border-collapse: collapse; }}
td, th {{ padding: 4px 8px; border-bottom: 1px solid #d0d7de; vertical-align: middle; }}
th {{ text-align: left; }} .verdict {{ font-weight: 600; }} .small {{ color: #59636e; font-size: 12px; }}
</style></head><body>
<h1>mitest report</h1>
<p>{summary["claims"]} claims: <b>{summary["holds"]}</b> hold, <b>{summary["refuted"]}</b> refuted,
<b>{summary["inconclusive"]}</b> inconclusive, <b>{summary["regressions"]}</b> baseline regressions{undecided}.
Alpha {settings["alpha"]} ({settings["correction"]}), seed {settings["seed"]},
created {_text(run["created"])}.</p>
<p class="small">Forest plot: each row has its own axis. The dot is the estimate, the bar its interval,
the dashed line the claim's threshold. The strip shows each prompt's value in the claim's direction.</p>
<table>
<tr><th>verdict</th><th>claim</th><th>estimate and interval vs threshold</th><th>per prompt</th>
<th>p</th><th>baseline</th></tr>
{rows}
</table>
</body></html>
"""


def _text(value: Any) -> str:
    """Any value as HTML text (every user or run-file string passes through here or html.escape)."""
    return html.escape(str(value))


def _undecided_note(run: dict) -> str:
    """A sentence listing the claims that held in the baseline and were not decided in this run."""
    undecided = run.get("undecided") or []
    if not undecided:
        return ""
    items = "; ".join(
        f"{html.escape(entry['claim'])} ({html.escape(entry['test'])}, {html.escape(entry['error'])})"
        for entry in undecided
    )
    return f", including {len(undecided)} that held in the baseline and were not decided: {items}"


def _claim_row(claim: dict) -> str:
    color = COLORS.get(claim["outcome"], "#59636e")
    baseline = claim.get("baseline") or {}
    base_text = html.escape(baseline.get("status", "—"))
    if baseline.get("message"):
        base_text += f'<div class="small">{html.escape(baseline["message"])}</div>'
    values = (claim.get("per_prompt") or {}).get("claim_value") or []
    notes = "".join(f'<div class="small">⚠ {html.escape(note)}</div>' for note in claim.get("notes") or ())
    return (
        f'<tr><td class="verdict" style="color:{color}">{_text(claim["outcome"])}</td>'
        f'<td>{html.escape(claim["claim"])}<div class="small">{html.escape(claim["test"])} · '
        f"{_text(claim['metric'])} · n={_text(claim['n'])}</div>{notes}</td>"
        f"<td>{_forest(claim, color)}</td><td>{_strip(values, color)}</td>"
        f"<td>{'searched' if claim.get('metric') == 'property' else format(float(claim['pvalue']), '.2g')}</td>"
        f"<td>{base_text}</td></tr>"
    )


def _sweep_row(claim: dict) -> str:
    """A row under a sweep claim with the heatmap of its cells; nothing for other claims."""
    if not claim.get("sweep"):
        return ""
    return f'\n<tr class="sweep"><td></td><td colspan="5">{render_heatmap(claim["sweep"])}</td></tr>'


def _curve_row(claim: dict) -> str:
    """A row under a faithfulness-curve claim with its curve and band; nothing for other claims."""
    if not claim.get("curve"):
        return ""
    threshold = float(claim["threshold"])
    return f'\n<tr class="curve"><td></td><td colspan="5">{render_curve(claim["curve"], threshold)}</td></tr>'


def _agreement_row(claim: dict) -> str:
    """A row under an attribution-agreement claim with its estimate-against-exact scatter; nothing for others."""
    if not claim.get("agreement"):
        return ""
    return f'\n<tr class="agreement"><td></td><td colspan="5">{render_scatter(claim["agreement"])}</td></tr>'


def _forest(claim: dict, color: str) -> str:
    low, high, estimate, threshold = (float(claim[key]) for key in ("low", "high", "estimate", "threshold"))
    bounds = [-threshold, threshold] if claim.get("kind") == "equivalence" else [threshold]  # two margins
    finite = [v for v in (low, high, estimate, *bounds) if math.isfinite(v)]
    lo, hi = (min(finite), max(finite)) if finite else (-1.0, 1.0)
    pad = (hi - lo) * 0.1 or abs(hi) * 0.1 or 1.0
    lo, hi = lo - pad, hi + pad

    def x(value: float) -> float:
        value = min(max(value, lo), hi)
        return 10 + (value - lo) / (hi - lo) * (WIDTH - 20)

    marks = "".join(
        f'<line x1="{x(b):.1f}" x2="{x(b):.1f}" y1="2" y2="24" stroke="#1f2328" stroke-dasharray="3,2"/>'
        for b in bounds
    )
    return (
        f'<svg width="{WIDTH}" height="{ROW + 14}" role="img" aria-label="estimate {estimate:.4g}">'
        f'<line x1="{x(low):.1f}" x2="{x(high):.1f}" y1="13" y2="13" stroke="{color}" stroke-width="3"/>'
        f'<circle cx="{x(estimate):.1f}" cy="13" r="5" fill="{color}"/>{marks}'
        f'<text x="10" y="{ROW + 10}" font-size="10" fill="#59636e">{lo:.3g}</text>'
        f'<text x="{WIDTH - 10}" y="{ROW + 10}" font-size="10" fill="#59636e" text-anchor="end">{hi:.3g}</text>'
        f"</svg>"
    )


def _strip(values: list[float], color: str) -> str:
    if not values:
        return ""
    v = np.asarray(values, dtype=float)
    lo, hi = float(v.min()), float(v.max())
    span = hi - lo or 1.0
    jitter = np.random.default_rng(0).uniform(3, ROW - 3, len(v))
    dots = "".join(
        f'<circle cx="{5 + (value - lo) / span * 150:.1f}" cy="{y:.1f}" r="1.6" fill="{color}" fill-opacity="0.6"/>'
        for value, y in zip(v[:2000], jitter, strict=False)
    )
    return f'<svg width="160" height="{ROW}" role="img" aria-label="{len(v)} prompts">{dots}</svg>'
