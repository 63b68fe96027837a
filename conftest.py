"""Fixtures for the hypothesis suites in hypotheses/: zoo models and their prompt sets (session scope).

``--model`` swaps the model the induction suites run against: a zoo name (``induction-early``, the
checkpoint taken before the induction heads formed) or a local model directory (a new release).
Baselines then gate it: every claim that held on the reference model must still hold.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import mitest as mt
from mitest.zoo import induction


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--model",
        default="induction",
        help="model for the induction suites: a mitest zoo name or a local model directory (default: induction)",
    )


def pytest_configure(config: pytest.Config) -> None:
    name = config.getoption("--model")
    if name not in mt.zoo.names() and not (Path(name) / "config.json").is_file():
        raise pytest.UsageError(
            f"--model {name!r} is neither a zoo model ({', '.join(mt.zoo.names())}) nor a directory "
            "holding config.json and safetensors weights"
        )


@pytest.fixture(scope="session")
def induction_model(request: pytest.FixtureRequest) -> mt.Model:
    """The 2-layer attention-only induction model (``mt.zoo.load('induction')``), or ``--model``."""
    name = request.config.getoption("--model")
    return mt.zoo.load(name).model if name in mt.zoo.names() else mt.Model.load(name)


@pytest.fixture(scope="session")
def repeated() -> mt.Prompts:
    """64 prompts ``[BOS] + r + r`` (r: 16 random tokens); score with ``mt.metrics.loss('second_half')``."""
    return induction.repeated()


@pytest.fixture(scope="session")
def next_token() -> mt.Prompts:
    """64 prompts ``[BOS] + r + r[:k]`` answered by ``r[k]``; corrupted twins replace the first copy."""
    return induction.next_token()


@pytest.fixture(scope="session")
def greater_than_model() -> mt.Model:
    """The 2-layer GPT-2 trained on the greater-than task (``mt.zoo.load('greater-than')``)."""
    return mt.zoo.load("greater-than").model


@pytest.fixture(scope="session")
def years(greater_than_model: mt.Model) -> mt.Prompts:
    """Greater-than prompts ('... from the year 17YY to the year 17') with '01' corrupted twins."""
    from mitest.zoo import greater_than

    return greater_than.prompt_sets(greater_than_model)["years"]


@pytest.fixture(scope="session")
def later_year(greater_than_model: mt.Model, years: mt.Prompts) -> mt.Site:
    """A "later start year" direction in layer 0's attention output at the last position: the mean
    output for prompts whose start year is 50 or later minus the mean for those before 50."""
    from mitest.zoo.greater_than import start_years

    site = mt.site("blocks.0.hook_attn_out").at("last")
    outputs = mt.activations(greater_than_model, years, site)
    late = start_years(years) >= 50
    return mt.direction(site, outputs[late].mean(0) - outputs[~late].mean(0))
