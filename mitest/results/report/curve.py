"""A faithfulness-curve claim as an inline SVG: faithfulness against the fraction of components kept,
on the linear axis its area is computed on, with the interval as a band, the claim's threshold dashed
and the point a claim is about ringed."""

from __future__ import annotations

import html
import math
from typing import Any

WIDTH, HEIGHT, LEFT, RIGHT, TOP, BOTTOM = 440, 190, 44, 12, 10, 30
LINE = "#0969da"


def render_curve(curve: dict[str, Any], threshold: float | None = None) -> str:
    """The SVG of ``curve`` (a claim record's ``curve`` field) and a line saying how to read it."""
    points = curve["points"]
    # float() also reads the strings "inf", "-inf" and "nan" that run.json holds for non-finite numbers
    xs = [float(point["fraction"]) for point in points]
    estimates, lows, highs = ([float(point[key]) for point in points] for key in ("estimate", "low", "high"))
    shown = [v for v in (*estimates, *lows, *highs, 0.0, 1.0, threshold or 0.0) if math.isfinite(v)]
    bottom, top = min(shown), max(shown)
    pad = (top - bottom) * 0.05
    bottom, top = bottom - pad, top + pad

    def x(value: float) -> float:
        return LEFT + (value - xs[0]) / (xs[-1] - xs[0]) * (WIDTH - LEFT - RIGHT)

    def y(value: float) -> float:
        value = min(max(value, bottom), top) if not math.isnan(value) else bottom
        return TOP + (top - value) / (top - bottom) * (HEIGHT - TOP - BOTTOM)

    band = " ".join(
        f"{x(a):.1f},{y(b):.1f}" for a, b in [*zip(xs, highs, strict=True), *zip(xs[::-1], lows[::-1], strict=True)]
    )
    line = " ".join(f"{x(a):.1f},{y(b):.1f}" for a, b in zip(xs, estimates, strict=True))
    dots = "".join(
        _dot(point, x(float(point["fraction"])), y(float(point["estimate"])), curve.get("at_fraction"))
        for point in points
    )
    guides = "".join(
        f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(level):.1f}" y2="{y(level):.1f}" stroke="{colour}"'
        f'{dash}/><text x="{LEFT - 4}" y="{y(level) + 3:.1f}" font-size="10" fill="#59636e" '
        f'text-anchor="end">{level:.3g}</text>'
        for level, colour, dash in [(0.0, "#d0d7de", ""), (1.0, "#d0d7de", "")]
        + (
            [(threshold, "#1f2328", ' stroke-dasharray="3,2"')]
            if threshold is not None and math.isfinite(threshold)
            else []
        )
    )
    axis = (
        f'<text x="{LEFT}" y="{HEIGHT - 14}" font-size="10" fill="#59636e">{xs[0]:g}</text>'
        f'<text x="{WIDTH - RIGHT}" y="{HEIGHT - 14}" font-size="10" fill="#59636e" text-anchor="end">{xs[-1]:g}</text>'
        f'<text x="{(LEFT + WIDTH - RIGHT) / 2:.0f}" y="{HEIGHT - 2}" font-size="10" fill="#59636e" '
        'text-anchor="middle">fraction of components kept</text>'
    )
    area = curve["auc"]
    svg = (
        f'<svg width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="faithfulness curve of {len(points)} points">'
        f'{guides}<polygon class="band" points="{band}" fill="{LINE}" fill-opacity="0.2" stroke="none"/>'
        f'<polyline class="curve" points="{line}" fill="none" stroke="{LINE}" stroke-width="2"/>{dots}{axis}</svg>'
    )
    legend = (
        f"Faithfulness of the ranking's top-k circuit against the fraction kept (linear axis), with its interval "
        f"as a band; AUC {float(area['estimate']):.4g} [{float(area['low']):.4g}, {float(area['high']):.4g}]"
        + ("; dashed: the claim's threshold" if threshold is not None else "")
        + ("; ringed: the point claimed" if curve.get("at_fraction") is not None else "")
        + ". Hover a point for its numbers."
    )
    return f'{svg}<div class="small">{html.escape(legend)}</div>'


def _dot(point: dict[str, Any], cx: float, cy: float, at_fraction: Any) -> str:
    claimed = at_fraction is not None and math.isclose(float(point["fraction"]), float(at_fraction), rel_tol=1e-9)
    tip = html.escape(
        f"fraction {float(point['fraction']):g}, k={point['k']}: faithfulness {float(point['estimate']):.4g}, "
        f"interval [{float(point['low']):.4g}, {float(point['high']):.4g}]"
    )
    ring = (
        f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="6.5" fill="none" stroke="#1f2328" stroke-width="1.5"/>'
        if claimed
        else ""
    )
    return f'<g class="point"><title>{tip}</title><circle cx="{cx:.1f}" cy="{cy:.1f}" r="3" fill="{LINE}"/>{ring}</g>'
