"""A pytest plugin (``-p perturbed_weights``) for tests/test_hypotheses_suite.py: every model that
``mt.Model.load`` returns has each weight multiplied by ``1 + 1e-6 * noise`` (seeded), the size of
the differences that other CPU kernels, thread counts or BLAS builds make in computed floats."""

from __future__ import annotations

import torch

from mitest.model.model import Model

SCALE = 1e-6
_load = Model.load.__func__


def _perturbed_load(cls, path, **kwargs):
    model = _load(cls, path, **kwargs)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.hf_model.parameters():
            noise = torch.randn(parameter.shape, generator=generator, dtype=torch.float64)
            parameter.mul_((1 + SCALE * noise).to(parameter.dtype))
    return model


def pytest_configure(config) -> None:
    Model.load = classmethod(_perturbed_load)


def pytest_unconfigure(config) -> None:
    Model.load = classmethod(_load)
