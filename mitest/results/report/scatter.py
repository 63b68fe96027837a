"""An attribution-agreement claim as an inline SVG: each checked unit's attribution estimate against
its exact change, with the diagonal where the two agree and the estimate's top units filled."""

from __future__ import annotations

import html
import math
from typing import Any

SIZE, MARGIN = 220, 34
TOP_COLOUR, SAMPLE_COLOUR = "#0969da", "#8c959f"


def render_scatter(agreement: dict[str, Any]) -> str:
    """The SVG of ``agreement`` (a claim record's ``agreement`` field) and a line saying how to read it."""
    points = agreement["points"]
    # float() also reads the strings "inf", "-inf" and "nan" that run.json holds for non-finite numbers
    pairs = [(float(point["exact"]), float(point["attribution"])) for point in points]
    shown = [v for pair in pairs for v in pair if math.isfinite(v)] or [0.0]
    low, high = min(*shown, 0.0), max(*shown, 0.0)
    pad = (high - low) * 0.05 or 1.0
    low, high = low - pad, high + pad

    def scale(value: float) -> float:
        value = min(max(value, low), high) if math.isfinite(value) else (high if value > 0 else low)
        return (value - low) / (high - low) * (SIZE - 2 * MARGIN)

    def x(value: float) -> float:
        return MARGIN + scale(value)

    def y(value: float) -> float:
        return SIZE - MARGIN - scale(value)

    dots = "".join(
        _dot(point, x(exact), y(estimate), agreement["unit"])
        for point, (exact, estimate) in zip(points, pairs, strict=True)
    )
    guides = (
        f'<line class="diagonal" x1="{x(low):.1f}" y1="{y(low):.1f}" x2="{x(high):.1f}" y2="{y(high):.1f}" '
        'stroke="#d0d7de" stroke-dasharray="3,2"/>'
        f'<line x1="{MARGIN}" x2="{SIZE - MARGIN}" y1="{y(0.0):.1f}" y2="{y(0.0):.1f}" stroke="#eaeef2"/>'
        f'<line y1="{MARGIN}" y2="{SIZE - MARGIN}" x1="{x(0.0):.1f}" x2="{x(0.0):.1f}" stroke="#eaeef2"/>'
        f'<text x="{SIZE / 2:.0f}" y="{SIZE - 6}" font-size="10" fill="#59636e" '
        'text-anchor="middle">exact change</text>'
        f'<text x="10" y="{SIZE / 2:.0f}" font-size="10" fill="#59636e" text-anchor="middle" '
        f'transform="rotate(-90 10 {SIZE / 2:.0f})">attribution</text>'
        f'<text x="{MARGIN}" y="{SIZE - MARGIN + 12}" font-size="9" fill="#59636e">{low:.3g}</text>'
        f'<text x="{SIZE - MARGIN}" y="{SIZE - MARGIN + 12}" font-size="9" fill="#59636e" '
        f'text-anchor="end">{high:.3g}</text>'
    )
    svg = (
        f'<svg width="{SIZE}" height="{SIZE}" role="img" aria-label="attribution against exact patching of '
        f'{len(points)} {agreement["unit"]}s">{guides}{dots}</svg>'
    )
    legend = (
        f"{agreement['method']} attribution against exact patching, one dot per checked {agreement['unit']} "
        f"(mean over prompts); filled: the attribution's top {agreement['unit']}s, grey: sampled ones; dashed: "
        f"where the two agree. Spearman's rho {float(agreement['rank_correlation']):.3g}. Hover a dot for its numbers."
    )
    return f'{svg}<div class="small">{html.escape(legend)}</div>'


def _dot(point: dict[str, Any], cx: float, cy: float, unit: str) -> str:
    tip = html.escape(
        f"{unit} {point['unit']}: attribution {float(point['attribution']):.4g}, exact {float(point['exact']):.4g}"
    )
    colour = TOP_COLOUR if point["top"] else SAMPLE_COLOUR
    return f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="3.5" fill="{colour}"><title>{tip}</title></circle>'
