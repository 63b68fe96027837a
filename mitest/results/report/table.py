"""Per-prompt values of every claim as one CSV (via pandas)."""

from __future__ import annotations

import pandas as pd


def per_prompt_csv(run: dict) -> str:
    """One row per (claim, prompt): test, claim, prompt index, clean, intervened, corrupted, group.
    A sweep claim adds one row per (cell, prompt) with its ``cell`` name and ``delta`` (intervened
    minus clean); those two columns appear only when the run has a sweep claim."""
    frames = []
    for claim in run["claims"]:
        values = claim.get("per_prompt") or {}
        if values.get("clean"):
            frames.append(_labelled(_claim_frame(values), claim))
        if claim.get("sweep"):
            frames.append(_labelled(_sweep_frame(claim["sweep"], values.get("group")), claim))
    if not frames:
        return "test,claim,prompt,clean,intervened\n"
    table = pd.concat(frames, ignore_index=True)
    if "cell" in table:
        table.insert(3, "cell", table.pop("cell"))  # next to the prompt it belongs with
    return table.to_csv(index=False)


def _claim_frame(values: dict) -> pd.DataFrame:
    frame = pd.DataFrame({key: values[key] for key in ("clean", "intervened") if values.get(key) is not None})
    for key in ("corrupted", "group", "claim_value"):
        # Claims tested on other units (random circuits) keep their claim values in run.json only.
        if values.get(key) is not None and len(values[key]) == len(frame):
            frame[key] = values[key]
    frame.insert(0, "prompt", range(len(frame)))
    return frame


def _sweep_frame(sweep: dict, group: list[str] | None) -> pd.DataFrame:
    """One row per (cell, prompt) of a sweep claim, with the prompts' groups when they match."""
    frames = []
    for cell in sweep["cells"]:
        frame = pd.DataFrame({"prompt": range(len(cell["delta"])), "cell": cell["cell"], "delta": cell["delta"]})
        if group is not None and len(group) == len(frame):
            frame["group"] = group
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _labelled(frame: pd.DataFrame, claim: dict) -> pd.DataFrame:
    frame.insert(0, "claim", claim["claim"])
    frame.insert(0, "test", claim["test"])
    return frame
