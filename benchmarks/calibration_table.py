"""Measure how often each claim kind HOLDS when it is false at the boundary: the tables in docs/statistics.md.

Every cell simulates ``--sims`` claims whose truth sits exactly at the boundary (alpha 0.05) and runs
the decision procedure the claims use (:func:`mitest.claims.stats.decide`, :func:`~mitest.claims.stats.rate_test`,
the exact binomial test), vectorised over simulations. A cell is flagged when its rate exceeds
alpha + 2 Monte-Carlo standard errors. A second table measures power honesty: the HOLDS rate on
planted effects against the power the verdict reports.

    OMP_NUM_THREADS=1 python benchmarks/calibration_table.py            # 5,000 simulations per cell
    OMP_NUM_THREADS=1 python benchmarks/calibration_table.py --quick    # 1,000, n = 15, 30, 100
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable

import numpy as np
from scipy import stats as sps

from mitest.claims import stats
from mitest.claims.decide import either

ALPHA = 0.05
SIZES = (8, 15, 30, 100, 500)
Draw = Callable[[np.random.Generator, tuple[int, int]], np.ndarray]


def _lognormal(sigma: float, side: float) -> Draw:
    """Mean-zero lognormal changes; side -1 puts the long tail against the claim (left-skewed)."""
    return lambda rng, shape: side * (rng.lognormal(0, sigma, shape) - math.exp(sigma**2 / 2))


def _mixture(side: float) -> Draw:
    """Holds on 90% of prompts (+1) and fails badly on 10% (-9): mean zero; side +1 is the failure against."""

    def draw(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
        fails = rng.random(shape) < 0.1
        return side * (np.where(fails, -9.0, 1.0) + 0.3 * rng.normal(size=shape))

    return draw


def _ties(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    return np.round(rng.normal(size=shape) * 1.5) / 1.5  # a coarse grid: most prompts tie with others


def _two_point(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    return np.where(rng.random(shape) < 0.8, 1.0, -4.0)  # 80/20, mean zero


DISTRIBUTIONS: dict[str, Draw] = {
    "normal": lambda rng, shape: rng.normal(size=shape),
    "t3": lambda rng, shape: rng.standard_t(3, shape),
    "t1.5": lambda rng, shape: rng.standard_t(1.5, shape),
    "lognormal σ=0.5, tail against": _lognormal(0.5, -1.0),
    "lognormal σ=0.5, tail for": _lognormal(0.5, 1.0),
    "lognormal σ=1, tail against": _lognormal(1.0, -1.0),
    "lognormal σ=1, tail for": _lognormal(1.0, 1.0),
    "90/10 mixture, failures against": _mixture(1.0),
    "90/10 mixture, failures for": _mixture(-1.0),
    "ties (coarse grid)": _ties,
    "two-point 80/20": _two_point,
}


def cluster_sizes(pattern: str, clusters: int, n: int) -> list[int] | None:
    """Sizes summing to n: equal, linear (1, 2, ..., G) or geometric (1, 2, 4, ...) shares; None if n < G."""
    if n < clusters:
        return None
    weights = {
        "equal": np.ones(clusters),
        "linear": np.arange(1, clusters + 1.0),
        "geometric": 2.0 ** np.arange(clusters),
    }
    w = weights[pattern]
    exact = n * w / w.sum()
    sizes = np.maximum(1, np.floor(exact)).astype(int)
    while sizes.sum() < n:  # largest remainders first
        sizes[np.argmax(exact - sizes)] += 1
    while sizes.sum() > n:
        sizes[np.argmax(np.where(sizes > 1, sizes - exact, -np.inf))] -= 1
    return [int(s) for s in sizes]


def clustered(sizes: list[int], icc: float) -> Draw:
    """Normal template effects (variance icc) plus normal prompt noise (variance 1 - icc)."""

    def draw(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
        effects = rng.normal(0, math.sqrt(icc), (shape[0], len(sizes)))
        return np.repeat(effects, sizes, axis=1) + rng.normal(0, math.sqrt(1 - icc), shape)

    return draw


# -- one claim kind at its boundary ----------------------------------------------------------------


def _holds(margins: np.ndarray, groups: np.ndarray | None, alpha: float) -> tuple[float, float]:
    decision = stats.decide(margins, groups, alpha=alpha)
    holds = (decision.p_holds < alpha) & ~decision.short_holds
    return float(holds.mean()), float(decision.short_holds.mean())


def null_rate(kind: str, draw: Draw, n: int, sims: int, groups: np.ndarray | None, rng, alpha: float = ALPHA):
    """False-HOLDS rate and refused share for one claim kind at its boundary."""
    noise = draw(rng, (sims, n))
    if kind in ("increase", "decrease"):
        delta = 1.0 + noise if kind == "increase" else -(1.0 + noise)
        change = delta if kind == "increase" else -delta
        return _holds(change - 1.0, groups, alpha)
    if kind == "relative":
        clean = np.abs(rng.normal(3, 1, (sims, n)))
        change = 0.3 * clean + noise * clean / 3  # true mean change 0.3 * mean|clean| (noise mean zero)
        return _holds(change - 0.3 * clean, groups, alpha)
    if kind == "recovery":
        gap = 2.0 + 0.5 * rng.normal(size=(sims, n))
        recovered = 0.9 * gap + 0.5 * noise * gap / 2
        return _holds(recovered - 0.9 * gap, groups, alpha)
    if kind == "recovery_at_most":  # the mirror: the noise's tail "against" now favours high recovery
        gap = 2.0 + 0.5 * rng.normal(size=(sims, n))
        recovered = 0.1 * gap - 0.5 * noise * gap / 2
        return _holds(0.1 * gap - recovered, groups, alpha)
    if kind == "change":  # |mean| >= 1, true change exactly +1: both directions at alpha / 2 (either())
        delta = 1.0 + noise
        decision = either(
            stats.decide(delta - 1.0, groups, alpha=alpha / 2), stats.decide(-delta - 1.0, groups, alpha=alpha / 2)
        )
        holds = (decision.p_holds < alpha) & ~decision.short_holds
        return float(holds.mean()), float(decision.short_holds.mean())
    if kind == "no_change":
        worst = (0.0, 0.0)
        for boundary in (0.5, -0.5):  # the true change on each margin; report the worse side
            delta = boundary + noise
            lower = stats.decide(delta + 0.5, groups, alpha=alpha)
            upper = stats.decide(0.5 - delta, groups, alpha=alpha)
            holds = (lower.p_holds < alpha) & (upper.p_holds < alpha) & ~lower.short_holds & ~upper.short_holds
            refused = lower.short_holds | upper.short_holds
            worst = max(worst, (float(holds.mean()), float(refused.mean())))
        return worst
    if kind == "monotonic":
        values = np.stack([draw(rng, (sims, n)) for _ in range(3)], axis=-1)  # 3 doses, no trend
        pairs = [(0, 1), (0, 2), (1, 2)]
        concordance = sum(np.sign(values[..., j] - values[..., i]) for i, j in pairs)
        return _holds(np.asarray(concordance, dtype=np.float64), groups, alpha)
    raise ValueError(kind)


def flip_rate(rate: float, n: int, sims: int, rng, groups=None, icc=0.0, alpha: float = ALPHA) -> tuple[float, float]:
    """False-HOLDS rate of ``flip rate > rate`` when the true rate is ``rate``."""
    if groups is None:
        k = rng.binomial(n, rate, sims)
        return float((sps.binom.sf(k - 1, n, rate) < alpha).mean()), 0.0
    sizes = np.bincount(groups)
    total = 1 / icc - 1
    p = rng.beta(rate * total, (1 - rate) * total, size=(sims, len(sizes)))
    flips = (rng.random((sims, n)) < np.repeat(p, sizes, axis=1)).astype(float)
    return float((stats.rate_test(flips, groups, rate, "greater").pvalue < alpha).mean()), 0.0


# -- tables ------------------------------------------------------------------------------------------


def _cell(rate: float, refused: float, sims: int, alpha: float) -> str:
    if refused > 0.999:
        return "refused"
    text = f"{rate:.3f}"
    if refused >= 0.05:
        text += f" ({refused:.0%} r)"
    return f"**{text}**" if rate > alpha + 2 * math.sqrt(alpha * (1 - alpha) / sims) else text


def _header(sizes: tuple[int, ...]) -> str:
    return "| per-prompt changes | " + " | ".join(f"n={n}" for n in sizes) + " |\n| --- |" + " --- |" * len(sizes)


def calibration(
    kinds: list[str], sizes: tuple[int, ...], sims: int, clusters: bool, alpha: float = ALPHA, rows_like: str = ""
) -> None:
    """Print one markdown table per claim kind (only the rows whose label contains ``rows_like``)."""
    for kind in kinds:
        print(f"\n**{kind}** (alpha = {alpha:g}, {sims:,} simulations per cell)\n")
        print(_header(sizes))
        rows: list[tuple[str, Draw, Callable[[int], np.ndarray | None] | None]] = [
            (label, draw, None) for label, draw in DISTRIBUTIONS.items()
        ]
        if clusters:
            for pattern in ("equal", "linear", "geometric"):
                for g in (4, 8, 20):
                    for icc in (0.3, 0.8):
                        rows.append((f"clusters: {pattern}, G={g}, ICC {icc}", None, (pattern, g, icc)))  # type: ignore[arg-type]
        for label, draw, spec in rows:
            if rows_like not in label:
                continue
            cells = []
            for n in sizes:
                rng = np.random.default_rng(_seed(kind, label, n))
                groups = None
                if spec is not None:
                    sizes_g = cluster_sizes(spec[0], spec[1], n)
                    if sizes_g is None:
                        cells.append("—")
                        continue
                    groups = np.repeat(np.arange(len(sizes_g)), sizes_g)
                    draw = clustered(sizes_g, spec[2])
                rate, refused = null_rate(kind, draw, n, sims, groups, rng, alpha)
                cells.append(_cell(rate, refused, sims, alpha))
            print(f"| {label} | " + " | ".join(cells) + " |", flush=True)


def flip_table(sizes: tuple[int, ...], sims: int) -> None:
    print(f"\n**flip_rate** (alpha = {ALPHA:g}, {sims:,} simulations per cell; clusters: equal sizes, beta-binomial)\n")
    print(_header(sizes))
    for rate in (0.5, 0.9):
        cells = [
            _cell(*flip_rate(rate, n, sims, np.random.default_rng(_seed("flip", str(rate), n))), sims, ALPHA)
            for n in sizes
        ]
        print(f"| flips, true rate {rate} | " + " | ".join(cells) + " |", flush=True)
        for g in (4, 8, 20):
            for icc in (0.3, 0.8):
                cells = []
                for n in sizes:
                    sizes_g = cluster_sizes("equal", g, n)
                    if sizes_g is None:
                        cells.append("—")
                        continue
                    groups = np.repeat(np.arange(g), sizes_g)
                    rng = np.random.default_rng(_seed("flipg", f"{rate}{g}{icc}", n))
                    cells.append(_cell(*flip_rate(rate, n, sims, rng, groups, icc), sims, ALPHA))
                print(f"| flips {rate}, G={g}, ICC {icc} | " + " | ".join(cells) + " |", flush=True)


def power_table(sims: int) -> None:
    """Observed HOLDS rate on planted effects vs the power a verdict reports, and the n-needed advice followed."""
    print(
        f"\n**power honesty** (alpha = {ALPHA:g}, {sims:,} simulations per cell; effect planted at the plain t-test's"
    )
    print("80% minimum detectable effect; reported = mean over 200 simulations of the verdict's power formula")
    print("at the true gap with the sample's spread, skewness and chance of passing Cochran's rule)\n")
    print("| per-prompt changes | n | observed | reported | plain t power | n needed for 80% | observed there |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    cells = [
        ("normal", 30), ("normal", 100), ("t3", 100), ("lognormal σ=0.5, tail against", 100),
        ("lognormal σ=0.5, tail against", 400), ("lognormal σ=0.5, tail for", 100),
        ("lognormal σ=1, tail against", 500),
        ("ties (coarse grid)", 30), ("90/10 mixture, failures against", 100),
    ]  # fmt: skip
    for label, n in cells:
        rng = np.random.default_rng(_seed("power", label, n))
        draw = DISTRIBUTIONS[label]
        population = draw(np.random.default_rng(0), (1, 2_000_000))[0]
        sd, skew = float(population.std()), float(sps.skew(population))
        gap = stats.minimum_detectable(sd, n, ALPHA)
        margins = gap + draw(rng, (sims, n))
        observed = _holds(margins, None, ALPHA)[0]
        reported = float(np.mean([_reported(row, gap, ALPHA) for row in margins[:200]]))
        plain = stats.power(gap, sd, n, ALPHA)
        sample = population[:20_000]  # counts the chance of passing Cochran's rule
        needed = stats.units_needed(gap, sd, ALPHA, skew=skew, sample=sample) or n
        needed = max(needed, stats.min_prompts(ALPHA), math.ceil(float(stats.cochran_units(min(skew, 0.0)))))
        there = _holds(gap + draw(rng, (sims, needed)), None, ALPHA)[0]
        print(f"| {label} | {n} | {observed:.3f} | {reported:.3f} | {plain:.3f} | {needed} | {there:.3f} |", flush=True)


def _reported(row: np.ndarray, gap: float, alpha: float) -> float:
    decision = stats.decide(row, alpha=alpha)
    m = len(row)
    sd = float(decision.se) * math.sqrt(m)
    return stats.power(gap, sd, m, alpha, skew=float(decision.skew), decidable=stats.decidable_share(row))


def _seed(*parts: object) -> int:
    import zlib

    return zlib.crc32(repr(parts).encode())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sims", type=int, default=None, help="simulations per cell (default 5,000; --quick 1,000)")
    parser.add_argument("--quick", action="store_true", help="fewer simulations and n = 15, 30, 100 only")
    parser.add_argument(
        "--kinds", default="increase,decrease,relative,no_change,recovery,recovery_at_most,change,monotonic"
    )
    parser.add_argument("--no-clusters", action="store_true", help="skip the cluster rows")
    parser.add_argument("--alpha", type=float, default=ALPHA, help="per-claim alpha for the calibration tables")
    parser.add_argument("--rows", default="", help="only the calibration rows whose label contains this text")
    parser.add_argument("--skip", default="", help="comma-separated sections to skip: calibration,flip,power")
    args = parser.parse_args()
    sims = args.sims or (1000 if args.quick else 5000)
    sizes = (15, 30, 100) if args.quick else SIZES
    if args.alpha != ALPHA:
        sizes = tuple(sorted({stats.min_prompts(args.alpha), 100, 500}))
    skip = set(args.skip.split(","))
    started = time.time()
    if "calibration" not in skip:
        calibration(args.kinds.split(","), sizes, sims, not args.no_clusters, args.alpha, args.rows)
    if "flip" not in skip:
        flip_table(sizes, sims)
    if "power" not in skip:
        power_table(sims)
    print(f"\n({time.time() - started:.0f} s)")


if __name__ == "__main__":
    main()
