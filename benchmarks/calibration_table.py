"""Print the false-HOLDS rate of mitest's claim test at the boundary (the table in docs/statistics.md).

20,000 simulated null claims per cell, alpha = 0.05; each claim is "mean change > threshold" with
the true mean exactly at the threshold.

    python benchmarks/calibration_table.py
"""

from __future__ import annotations

import numpy as np

from mitest.claims import stats

SIMS, ALPHA, SIZES = 20_000, 0.05, (10, 30, 100, 500)


def main() -> None:
    rng = np.random.default_rng(0)

    def lognormal(sigma: float, sign: float):
        return lambda shape: sign * (rng.lognormal(0, sigma, shape) - np.exp(sigma**2 / 2))

    nulls = {
        "normal": lambda shape: rng.normal(size=shape),
        "t3 (heavy tails)": lambda shape: rng.standard_t(3, shape),
        "lognormal σ=0.25, right-skewed": lognormal(0.25, 1.0),
        "lognormal σ=0.25, left-skewed": lognormal(0.25, -1.0),
        "lognormal σ=0.5, right-skewed": lognormal(0.5, 1.0),
        "lognormal σ=0.5, left-skewed": lognormal(0.5, -1.0),
    }
    print("| per-prompt changes | " + " | ".join(f"n={n}" for n in SIZES) + " |")
    print("| --- |" + " --- |" * len(SIZES))
    for label, draw in nulls.items():
        rates = [(stats.mean_test(draw((SIMS, n)), "greater").pvalue < ALPHA).mean() for n in SIZES]
        print(f"| {label} | " + " | ".join(f"{rate:.3f}" for rate in rates) + " |")


if __name__ == "__main__":
    main()
