"""Sweep claims in the reports: a heatmap in report.html, cell rows in per_prompt.csv, a short table in
summary.md, the field as is in run.json, and run_problem's check of it."""

from __future__ import annotations

import copy
import csv
import io
import json
from dataclasses import replace

import numpy as np
import pytest

import mitest as mt
from mitest.results.record import build_record, json_safe, run_problem
from mitest.results.report import build_run, write_reports
from mitest.results.report.heatmap import layout_of, render_heatmap
from mitest.results.report.html import render_html
from mitest.results.report.markdown import SWEEP_ROWS, render_markdown
from mitest.results.report.table import per_prompt_csv

from .test_report_escaping import HOSTILE, assert_only, elements

PROMPTS, CLAIM_PROMPTS = 4, 32


def cell(layer: int | None, head: int | None, estimate: float, *, named=False, failing=False, name=None) -> dict:
    data = {
        "cell": name or f"{layer}.{head}",
        "site": f"blocks.{layer}.attn.hook_z[{head}]",
        "estimate": estimate,
        "low": estimate - 0.1,
        "high": estimate + 0.1,
        "n": PROMPTS,
        "named": named,
        "failing": failing,
        "delta": [estimate + k / 100 for k in range(PROMPTS)],
    }
    return data | {key: value for key, value in (("layer", layer), ("head", head)) if value is not None}


def grid_sweep() -> dict:
    """Two layers by three heads: 1.0 and 1.1 named, 1.1 and the other 0.2 failing."""
    cells = [cell(layer, head, -0.5 * layer * (head < 2) + 0.01 * head) for layer in (0, 1) for head in range(3)]
    for named in (3, 4):
        cells[named]["named"] = True
    for failing in (4, 2):
        cells[failing]["failing"] = True
    return {"rows": "layer", "columns": "head", "cells": cells}


def sweep_run(sweep: dict, claim: str = "only {1.0, 1.1} matter") -> dict:
    """A run read back from run.json with one ordinary claim and one sweep claim."""
    clean = np.linspace(1.0, 2.0, CLAIM_PROMPTS)
    effect = mt.Effect.from_values(clean, clean - 0.5 - 0.1 * np.sin(clean))
    verdict = effect.expect_decrease(at_least=0.1)
    plain = build_record(verdict, effect, -effect.delta, test="t.py::test_plain", index=0, name=None, seed=0)
    swept = replace(verdict, claim=claim, sweep=sweep)
    record = build_record(swept, effect, -effect.delta, test="t.py::test_sweep", index=0, name=None, seed=0)
    records = [dict(plain, key="plain/0"), dict(record, key="sweep/0")]
    run = build_run(records, alpha=0.05, correction="holm", seed=0, profile="default")
    return json.loads(json.dumps(json_safe(run), allow_nan=False))


def heatmap_cells(document: str, sweep: dict) -> dict[str, set[str]]:
    """Each heatmap cell's name and its classes."""
    return {
        sweep["cells"][int(dict(attrs)["data-index"])]["cell"]: set(dict(attrs)["class"].split())
        for tag, attrs in elements(document).tags
        if tag == "g" and "cell" in (dict(attrs).get("class") or "").split()
    }


def test_records_of_other_claims_have_no_sweep_field_and_sweep_records_keep_it_as_is():
    run = sweep_run(grid_sweep())
    assert "sweep" not in run["claims"][0]
    assert run["claims"][1]["sweep"] == grid_sweep()
    assert run_problem(run) is None


def test_the_heatmap_has_one_cell_per_sweep_cell_named_outlined_and_failing_crossed():
    document = render_html(sweep_run(grid_sweep()))
    cells = heatmap_cells(document, grid_sweep())
    assert set(cells) == {f"{layer}.{head}" for layer in (0, 1) for head in range(3)}
    assert {name for name, roles in cells.items() if "named" in roles} == {"1.0", "1.1"}
    assert {name for name, roles in cells.items() if "failing" in roles} == {"1.1", "0.2"}
    assert document.count('stroke-width="2.5"') == 2 and document.count(">×</text>") == 2
    assert "1.1 (blocks.1.attn.hook_z[1]): estimate -0.49, interval [-0.59, -0.39], n=4" in document
    assert "http" not in document.split("<body>")[1].replace("http-equiv", "")  # nothing fetched


def test_heatmap_places_layers_as_rows_and_heads_as_columns_with_a_diverging_colour():
    layout = layout_of(grid_sweep())
    assert layout.rows == ["0", "1"] and layout.columns == ["0", "1", "2"]
    assert layout.places == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    svg = render_heatmap({"rows": "layer", "columns": "head", "cells": [cell(0, 0, -2.0), cell(0, 1, 0.0)]})
    assert 'fill="#2166ac"' in svg and 'fill="#ffffff"' in svg  # full blue at the largest |estimate|, white at 0
    assert 'fill="#b2182b"' in render_heatmap({"rows": "layer", "columns": "head", "cells": [cell(0, 0, 3.0)]})


def test_a_sweep_without_coordinates_is_a_single_column_in_sweep_order():
    sites = [cell(None, None, 0.2, name="blocks.1.hook_mlp_out"), cell(None, None, -1.0, name="blocks.0.hook_mlp_out")]
    layout = layout_of({"rows": None, "columns": None, "cells": sites})
    assert layout.rows == ["blocks.1.hook_mlp_out", "blocks.0.hook_mlp_out"] and layout.columns == [""]
    assert layout.places == [(0, 0), (1, 0)]
    clash = grid_sweep()
    clash["cells"][1] = dict(clash["cells"][1], head=0)  # two cells in one place
    assert layout_of(clash).places == [(i, 0) for i in range(6)]


def test_heads_by_positions_share_a_column_axis():
    cells = [dict(cell(1, head, 0.1), position=p, cell=f"1.{head}@{p}") for head in (0, 1) for p in (2, 3)]
    layout = layout_of({"rows": "layer", "columns": "head", "cells": cells})
    assert layout.columns == ["0@2", "0@3", "1@2", "1@3"] and layout.column_axis == "head @ position"


@pytest.mark.parametrize("payload", HOSTILE)
def test_sweep_cell_names_and_sites_are_escaped(payload):
    sweep = grid_sweep()
    sweep["cells"][0] |= {"cell": f"c {payload}", "site": f"s {payload}"}
    sweep["rows"] = None  # a list: the names become row labels as well
    document = render_html(sweep_run(sweep))
    parsed = assert_only(document, {"html", "head", "meta", "title", "style", "body", "h1", "p", "b", "table"} | {
        "tr", "th", "td", "div", "svg", "line", "circle", "text", "g", "rect"})  # fmt: skip
    assert f"c {payload}" in "".join(parsed.text) and f"c {payload}" in heatmap_cells(document, sweep)
    summary = render_markdown(sweep_run(sweep))
    assert "<script" not in summary and "<img" not in summary


def test_per_prompt_csv_has_a_row_per_cell_and_prompt_and_keeps_other_claims_rows():
    run = sweep_run(grid_sweep())
    rows = list(csv.DictReader(io.StringIO(per_prompt_csv(run))))
    assert list(rows[0])[:4] == ["test", "claim", "prompt", "cell"] and "delta" in rows[0]
    cells = [row for row in rows if row["cell"]]
    assert len(cells) == 6 * PROMPTS and {row["test"] for row in cells} == {"t.py::test_sweep"}
    first = [row for row in cells if row["cell"] == "1.1"]
    assert [float(row["delta"]) for row in first] == pytest.approx([-0.49, -0.48, -0.47, -0.46])
    assert [row["prompt"] for row in first] == ["0", "1", "2", "3"]
    assert len([row for row in rows if not row["cell"]]) == 2 * CLAIM_PROMPTS  # each claim's own rows, as before
    plain = dict(run, claims=run["claims"][:1])
    assert per_prompt_csv(plain).splitlines()[0] == "test,claim,prompt,clean,intervened,claim_value"


def test_summary_lists_failing_then_named_cells_capped_with_a_count():
    text = render_markdown(sweep_run(grid_sweep()))
    table = text.split("**Sweep**")[1]
    listed = [line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| `")]
    assert listed == ["`0.2`", "`1.1`", "`1.0`"]
    assert "-0.49 | [-0.59, -0.39]" in table and "named, **not shown to hold**" in table
    wide = grid_sweep()
    wide["cells"] = [cell(0, head, 0.1, failing=True) for head in range(SWEEP_ROWS + 3)]
    assert "_3 more named or failing cells" in render_markdown(sweep_run(wide))


def test_reports_write_and_run_json_reads_back(tmp_path):
    run = sweep_run(grid_sweep())
    write_reports(run, tmp_path)
    assert json.loads((tmp_path / "run.json").read_text())["claims"][1]["sweep"] == grid_sweep()
    assert (tmp_path / "report.html").read_text().count('class="cell') == 6


def malformed(change) -> str | None:
    run = sweep_run(grid_sweep())
    change(run["claims"][1]["sweep"])
    return run_problem(run)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda s: s.update(rows="head"), "claim 1: sweep rows is 'head', not 'layer' or null"),
        (lambda s: s.update(columns=3), "sweep columns is 3"),
        (lambda s: s.update(cells=[]), "sweep cells is not a non-empty list"),
        (lambda s: s["cells"].append("x"), "sweep cell 6 is a str, not an object"),
        (lambda s: s["cells"][0].pop("estimate"), "sweep cell 0 lacks 'estimate'"),
        (lambda s: s["cells"][1].update(named="yes"), "sweep cell 1: named is 'yes', not true or false"),
        (lambda s: s["cells"][2].update(head=1.5), "sweep cell 2: head is 1.5, not a whole number"),
        (lambda s: s["cells"][2].update(delta=[1, None]), "sweep cell 2: delta is not a list of numbers"),
    ],
)
def test_run_problem_names_a_malformed_sweep_field(change, problem):
    assert problem in (malformed(change) or "")


def test_a_sweep_field_that_is_not_an_object_is_a_problem():
    run = sweep_run(grid_sweep())
    run["claims"][1]["sweep"] = ["cells"]
    assert run_problem(run) == "claim 1: sweep is a list, not an object"
    run["claims"][1]["sweep"] = None
    assert run_problem(copy.deepcopy(run)) is None


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("stale", True, "stale is not a list"),
        ("stale", [{"key": 1}], "stale entry 0"),
        ("orphans", [3], "orphans is not a list of strings"),
        ("problems", "oops", "problems is not a list"),
    ],
)
def test_malformed_run_listings_are_a_problem_not_a_crash(field, value, problem):
    """Found by the run-file fuzz test: ``"stale": true`` crashed the renderer with a TypeError."""
    from mitest.results.report import build_run

    run = json.loads(json.dumps(build_run([], alpha=0.05, correction="holm", seed=0, profile="default")))
    run[field] = value
    assert problem in (run_problem(run) or "")
