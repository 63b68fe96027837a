"""Fixtures for the hypothesis suites in hypotheses/: zoo models and their prompt sets (session scope).

The models under test come from ``mi.model(NAME, default=...)``, so ``--mitest-model NAME=PATH``
points a suite at a candidate checkpoint (a model directory, or a zoo name such as
``induction-early``, the checkpoint taken before the induction heads formed):

    python -m pytest hypotheses --mitest-model induction=path/to/candidate

Baselines then gate it: every claim that held on the reference model must still hold.
"""

from __future__ import annotations

import pytest

import mitest as mt
from mitest.zoo import induction


@pytest.fixture(scope="session")
def induction_model(mi) -> mt.Model:
    """The 2-layer attention-only induction model (zoo ``induction``), or ``--mitest-model induction=PATH``."""
    return mi.model("induction", default="induction")


@pytest.fixture(scope="session")
def repeated() -> mt.Prompts:
    """64 prompts ``[BOS] + r + r`` (r: 16 random tokens); score with ``mt.metrics.loss('second_half')``."""
    return induction.repeated()


@pytest.fixture(scope="session")
def next_token() -> mt.Prompts:
    """64 prompts ``[BOS] + r + r[:k]`` answered by ``r[k]``; corrupted twins replace the first copy."""
    return induction.next_token()


@pytest.fixture(scope="session")
def greater_than_model(mi) -> mt.Model:
    """The 2-layer GPT-2 trained on the greater-than task (zoo ``greater-than``), or
    ``--mitest-model greater-than=PATH``."""
    return mi.model("greater-than", default="greater-than")


@pytest.fixture(scope="session")
def years(greater_than_model: mt.Model) -> mt.Prompts:
    """Greater-than prompts ('... from the year 17YY to the year 17') with '01' corrupted twins."""
    from mitest.zoo import greater_than

    return greater_than.prompt_sets(greater_than_model, n=300)["years"]


@pytest.fixture(scope="session")
def later_year(greater_than_model: mt.Model, years: mt.Prompts) -> mt.Site:
    """A "later start year" direction in layer 0's attention output at the last position: the mean
    output for prompts whose start year is 50 or later minus the mean for those before 50. It is
    computed from the model under test, so a new release gets its own direction; the baseline
    records it and reports how far it moved."""
    from mitest.zoo.greater_than import start_years

    site = mt.site("blocks.0.hook_attn_out").at("last")
    return mt.mean_difference(greater_than_model, years, site, start_years(years) >= 50)
