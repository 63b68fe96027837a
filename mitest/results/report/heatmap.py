"""A sweep claim's cells as an inline SVG heatmap: layers as rows, heads, neurons or positions as
columns, colour by estimate on a diverging scale centred at 0, the claim's cells outlined and the
failing ones crossed. A sweep without such coordinates is drawn as a single column of named cells."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Any

COLUMN_KEYS = ("head", "neuron", "position")
BLUE, RED, MISSING = (33, 102, 172), (178, 24, 43), "#d0d7de"
CELL, MIN_CELL, MAX_WIDTH, LABEL_PX = 22, 4, 880, 7


@dataclass(frozen=True)
class Layout:
    """Where each cell goes: row and column labels, each cell's (row, column), the axis names."""

    rows: list[str]
    columns: list[str]
    places: list[tuple[int, int]]
    row_axis: str
    column_axis: str


def render_heatmap(sweep: dict[str, Any]) -> str:
    """The SVG heatmap of ``sweep`` (a claim record's ``sweep`` field) and a line saying how to read it."""
    cells = sweep["cells"]
    layout = layout_of(sweep)
    size = CELL if len(layout.columns) * CELL <= MAX_WIDTH else max(MIN_CELL, MAX_WIDTH // len(layout.columns))
    left = LABEL_PX * max(len(label) for label in [*layout.rows, layout.row_axis]) + 8
    top = 30
    # float() also reads the strings "inf", "-inf" and "nan" that run.json holds for non-finite numbers
    scale = max((abs(v) for v in (float(cell["estimate"]) for cell in cells) if math.isfinite(v)), default=0.0)
    scale = scale or 1.0
    marks = [
        _cell(i, cell, left + c * size, top + r * size, size, scale)
        for i, (cell, (r, c)) in enumerate(zip(cells, layout.places, strict=True))
    ]
    width, height = left + len(layout.columns) * size + 4, top + len(layout.rows) * size + 4
    svg = (
        f'<svg width="{width}" height="{height}" role="img" aria-label="heatmap of {len(cells)} sweep cells">'
        f"{_axes(layout, left, top, size)}{''.join(marks)}</svg>"
    )
    legend = (
        f"Colour: the cell's estimate, blue below 0 (to {-scale:.3g}), red above (to {scale:.3g}); "
        "outlined: the claim's cells; ×: cells (or top-k pairs) not shown to hold. Hover a cell for its numbers."
    )
    return f'{svg}<div class="small">{legend}</div>'


def layout_of(sweep: dict[str, Any]) -> Layout:
    """Layers as rows and the column coordinates as columns; a list of cell names when some cell lacks
    a coordinate or two cells share a place."""
    cells = sweep["cells"]
    keys = [key for key in COLUMN_KEYS if any(cell.get(key) is not None for cell in cells)] if sweep["columns"] else []
    rows = [(cell.get("layer"),) if sweep["rows"] else (None,) for cell in cells]
    columns = [tuple(cell.get(key) for key in keys) for cell in cells]
    places = list(zip(rows, columns, strict=True))
    if any(None in row + column for row, column in places) or len(set(places)) < len(places):
        names = [str(cell["cell"]) for cell in cells]
        return Layout(names, [""], [(i, 0) for i in range(len(cells))], "cell", "")
    row_keys, column_keys = sorted(set(rows)), sorted(set(columns))
    return Layout(
        [_label(key) for key in row_keys],
        [_label(key) for key in column_keys],
        [(row_keys.index(row), column_keys.index(column)) for row, column in places],
        "layer",
        " @ ".join(keys),
    )


def _label(key: tuple) -> str:
    return "@".join(str(int(value)) for value in key)


def _axes(layout: Layout, left: int, top: int, size: int) -> str:
    """Row labels, column labels (every few when the cells are narrow) and the axis names."""
    text = '<text x="{x}" y="{y}" font-size="11" fill="#59636e" text-anchor="{anchor}">{label}</text>'
    parts = [text.format(x=left - 6, y=top - 4, anchor="end", label=layout.row_axis)]
    parts.append(text.format(x=left, y=12, anchor="start", label=html.escape(layout.column_axis)))
    step = math.ceil(16 / size)
    parts += [
        text.format(x=left + c * size + size / 2, y=top - 4, anchor="middle", label=html.escape(label))
        for c, label in enumerate(layout.columns)
        if c % step == 0
    ]
    parts += [
        text.format(x=left - 6, y=top + r * size + size / 2 + 4, anchor="end", label=html.escape(label))
        for r, label in enumerate(layout.rows)
    ]
    return "".join(parts)


def _cell(index: int, cell: dict[str, Any], x: int, y: int, size: int, scale: float) -> str:
    """The sweep's cell ``index``: its colour, a tooltip with its numbers, an outline if named, a cross if failing."""
    estimate = float(cell["estimate"])
    roles = [role for role in ("named", "failing") if cell.get(role)]
    tip = (
        f"{cell['cell']} ({cell['site']}): estimate {estimate:.4g}, "
        f"interval [{float(cell['low']):.4g}, {float(cell['high']):.4g}], n={cell['n']}"
        + ("; named by the claim" if cell.get("named") else "")
        + ("; not shown to hold" if cell.get("failing") else "")
    )
    inset = 1.25 if cell.get("named") else 0.0  # keeps the outline inside the cell, clear of its neighbours
    outline = ' stroke="#1f2328" stroke-width="2.5"' if cell.get("named") else ""
    rect = (
        f'<rect x="{x + inset}" y="{y + inset}" width="{size - 2 * inset}" height="{size - 2 * inset}" '
        f'fill="{_color(estimate, scale)}"{outline}/>'
    )
    cross = (
        f'<text x="{x + size / 2}" y="{y + size / 2}" font-size="{size * 0.8:.1f}" font-weight="bold" '
        'text-anchor="middle" dominant-baseline="central" fill="#1f2328" stroke="#fff" stroke-width="2" '
        'paint-order="stroke">×</text>'
        if cell.get("failing")
        else ""
    )
    return (
        f'<g class="{" ".join(["cell", *roles])}" data-index="{index}">'
        f"<title>{html.escape(tip)}</title>{rect}{cross}</g>"
    )


def _color(value: float, scale: float) -> str:
    """White at 0, blue for negative and red for positive values, full at ``±scale``; grey if not finite."""
    if not math.isfinite(value):
        return MISSING
    share = min(abs(value) / scale, 1.0)
    end = RED if value > 0 else BLUE
    return "#" + "".join(f"{round(255 + (channel - 255) * share):02x}" for channel in end)
