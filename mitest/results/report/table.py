"""Per-prompt values of every claim as one CSV (via pandas)."""

from __future__ import annotations

import pandas as pd


def per_prompt_csv(run: dict) -> str:
    """One row per (claim, prompt): test, claim, prompt index, clean, intervened, corrupted, group."""
    frames = []
    for claim in run["claims"]:
        values = claim.get("per_prompt") or {}
        if not values.get("clean"):
            continue
        frame = pd.DataFrame({key: values[key] for key in ("clean", "intervened") if values.get(key) is not None})
        for key in ("corrupted", "group", "claim_value"):
            # Claims tested on other units (random circuits) keep their claim values in run.json only.
            if values.get(key) is not None and len(values[key]) == len(frame):
                frame[key] = values[key]
        frame.insert(0, "prompt", range(len(frame)))
        frame.insert(0, "claim", claim["claim"])
        frame.insert(0, "test", claim["test"])
        frames.append(frame)
    if not frames:
        return "test,claim,prompt,clean,intervened\n"
    return pd.concat(frames, ignore_index=True).to_csv(index=False)
