"""One result schema, many renderers: JSON (the record), Markdown, HTML and per-prompt CSV.

A run is a plain dict (``build_run``); every renderer reads only that dict, so ``mitest report
RUN.json`` re-renders any earlier run. The four files are written all-or-nothing, as one write.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mitest.errors import ReportError
from mitest.results.atomic import write_files
from mitest.results.record import ClaimRecord, run_problem

SCHEMA, VERSION = "mitest.run", 2


def build_run(
    claims: Sequence[ClaimRecord],
    *,
    alpha: float,
    correction: str,
    seed: int,
    profile: str,
    undecided: Sequence[dict[str, Any]] = (),
    gate: str = "evidence",
    models: dict[str, dict[str, str]] | None = None,
    stale: Sequence[dict[str, Any]] = (),
    orphans: Sequence[str] = (),
    problems: Sequence[str] = (),
) -> dict:
    """The run record: settings, a summary, every claim with Holm and BH adjusted p-values, the
    ``undecided`` claims (held in the baseline, not decided now because their test raised first:
    each is a regression), the models under test, ``stale`` baseline entries, ``orphans`` (baseline
    files whose test module is gone) and the ``problems``
    that made the run fail although its claims passed (files not written, unused candidates)."""
    from mitest.claims.stats import benjamini_hochberg, holm

    claims = [claim.copy() for claim in claims]
    pvalues = [claim["pvalue"] for claim in claims]
    for claim, p_holm, p_bh in zip(claims, holm(pvalues), benjamini_hochberg(pvalues), strict=True):
        claim["p_holm"], claim["p_bh"] = float(p_holm), float(p_bh)
    outcomes = [claim["outcome"] for claim in claims]
    regressed = sum(1 for claim in claims if (claim.get("baseline") or {}).get("status") == "regressed")
    return {
        "schema": SCHEMA,
        "version": VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "settings": {"alpha": alpha, "correction": correction, "seed": seed, "profile": profile, "gate": gate},
        "summary": {
            "claims": len(claims),
            "holds": outcomes.count("HOLDS"),
            "refuted": outcomes.count("REFUTED"),
            "inconclusive": outcomes.count("INCONCLUSIVE"),
            "undecided": len(undecided),
            "regressions": regressed + len(undecided),
            "stale": len(stale),
            "problems": len(problems),
        },
        "models": dict(models or {}),
        "claims": claims,
        "undecided": [dict(entry) for entry in undecided],
        "stale": [dict(entry) for entry in stale],
        "orphans": list(orphans),
        "problems": list(problems),
    }


def load_run(path: str | Path) -> dict:
    """Read and check a run file written by mitest."""
    try:
        run = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise ReportError(f"cannot read run file {path}: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise ReportError(f"run file {path} is not UTF-8 text ({error.reason} at byte {error.start})") from None
    except RecursionError:
        raise ReportError(f"run file {path} is nested too deeply to be a mitest run record") from None
    except ValueError as error:  # json.JSONDecodeError, or an integer too long to convert
        raise ReportError(f"run file {path} is not valid JSON: {error}") from None
    if not isinstance(run, dict) or run.get("schema") != SCHEMA or not isinstance(run.get("claims"), list):
        raise ReportError(f"{path} is not a mitest run record (expected schema {SCHEMA!r})")
    if type(run.get("version")) is not int or run["version"] != VERSION:
        raise ReportError(f"{path} has run schema version {run.get('version')!r}; this mitest reads version {VERSION}")
    problem = run_problem(run)
    if problem:
        raise ReportError(f"{path} is not a well-formed mitest run record: {problem}; was it written by mitest?")
    return run


def write_reports(run: dict, directory: str | Path) -> list[Path]:
    """Write run.json, summary.md, report.html and per_prompt.csv into ``directory``.

    Every file is rendered before any is written, and all four are one all-or-nothing write (which
    first finishes or undoes a write interrupted earlier in ``directory``), so the folder holds
    either the earlier reports or these. Raises :class:`~mitest.WriteError` when it cannot.
    """
    from mitest.results.report.html import render_html
    from mitest.results.report.markdown import render_markdown
    from mitest.results.report.table import per_prompt_csv

    renderers = {
        "run.json": lambda run: json.dumps(run, indent=1, sort_keys=True, allow_nan=False),
        "summary.md": render_markdown,
        "report.html": render_html,
        "per_prompt.csv": per_prompt_csv,
    }
    texts = {Path(directory) / name: render(run) for name, render in renderers.items()}
    return write_files(texts)
