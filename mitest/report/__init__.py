"""One result schema, many renderers: JSON (the record), Markdown, HTML and per-prompt CSV.

A run is a plain dict (``build_run``); every renderer reads only that dict, so ``mitest report
RUN.json`` re-renders any earlier run. All files are written atomically.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..atomic import write_text

SCHEMA, VERSION = "mitest.run", 1


class ReportError(ValueError):
    """A run file is not a mitest run record (wrong schema, version or shape)."""


def build_run(
    claims: Sequence[dict[str, Any]],
    *,
    alpha: float,
    correction: str,
    seed: int,
    profile: str,
    undecided: Sequence[dict[str, Any]] = (),
) -> dict:
    """The run record: settings, a summary, every claim with Holm and BH adjusted p-values, and the
    ``undecided`` claims: held in the baseline, not decided now because their test raised first
    (each is a regression)."""
    from ..stats import benjamini_hochberg, holm

    claims = [dict(claim) for claim in claims]
    pvalues = [claim["pvalue"] for claim in claims]
    for claim, p_holm, p_bh in zip(claims, holm(pvalues), benjamini_hochberg(pvalues), strict=True):
        claim["p_holm"], claim["p_bh"] = float(p_holm), float(p_bh)
    outcomes = [claim["outcome"] for claim in claims]
    regressed = sum(1 for claim in claims if (claim.get("baseline") or {}).get("status") == "regressed")
    return {
        "schema": SCHEMA,
        "version": VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "settings": {"alpha": alpha, "correction": correction, "seed": seed, "profile": profile},
        "summary": {
            "claims": len(claims),
            "holds": outcomes.count("HOLDS"),
            "refuted": outcomes.count("REFUTED"),
            "inconclusive": outcomes.count("INCONCLUSIVE"),
            "undecided": len(undecided),
            "regressions": regressed + len(undecided),
        },
        "claims": claims,
        "undecided": [dict(entry) for entry in undecided],
    }


def load_run(path: str | Path) -> dict:
    """Read and check a run file written by mitest."""
    try:
        run = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ReportError(f"cannot read run file {path}: {error}") from None
    if not isinstance(run, dict) or run.get("schema") != SCHEMA or not isinstance(run.get("claims"), list):
        raise ReportError(f"{path} is not a mitest run record (expected schema {SCHEMA!r})")
    if run.get("version") != VERSION:
        raise ReportError(f"{path} has run schema version {run.get('version')}; this mitest reads version {VERSION}")
    return run


def write_reports(run: dict, directory: str | Path) -> list[Path]:
    """Write run.json, summary.md, report.html and per_prompt.csv into ``directory``."""
    from .html import render_html
    from .markdown import render_markdown
    from .table import per_prompt_csv

    directory = Path(directory)
    return [
        write_text(directory / "run.json", json.dumps(run, indent=1, sort_keys=True, allow_nan=False)),
        write_text(directory / "summary.md", render_markdown(run)),
        write_text(directory / "report.html", render_html(run)),
        write_text(directory / "per_prompt.csv", per_prompt_csv(run)),
    ]
