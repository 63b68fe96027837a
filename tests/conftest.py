"""Fixtures shared by the framework's tests: a model of every supported family, and prompts."""

from __future__ import annotations

import pytest
import torch

import mitest as mt
from tests.builders import FAMILIES, build, random_prompts

# Resolve every lazy export now: pytester's in-process runs drop modules first imported inside them,
# and a later re-import would make a second copy of each class (isinstance checks would then fail).
for _name in mt.__all__:
    getattr(mt, _name)


@pytest.fixture(params=FAMILIES)
def family(request) -> str:
    return request.param


@pytest.fixture
def hf_model(family):
    return build(family)


@pytest.fixture
def model(hf_model) -> mt.Model:
    return mt.Model.from_hf(hf_model)


@pytest.fixture
def prompts() -> mt.Prompts:
    return random_prompts()


@pytest.fixture(scope="module")
def one_thread():
    """Tiny matrices: thread start-up dominates, and on a shared CPU it can cost 50x, so use one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
