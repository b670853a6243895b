"""Rectified flow against closed form: with the exact velocity of Gaussian data, sampling recovers the data law."""

import math

import pytest
import torch

from kit.diffusion import EulerSampler, RectifiedFlow, classifier_free_guidance
from kit.optim import WarmupCosine
from kit.types import Conditioning

MU, SIGMA = 1.5, 0.5


def exact_velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """E[eps - x0 | x_t] for x0 ~ N(MU, SIGMA^2), x_t = (1 - t) x0 + t eps."""
    tb = t.view(-1, *([1] * (x.dim() - 1)))
    var = (1 - tb) ** 2 * SIGMA**2 + tb**2
    centred = x - (1 - tb) * MU
    e_eps = tb / var * centred
    e_x0 = MU + (1 - tb) * SIGMA**2 / var * centred
    return e_eps - e_x0


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_euler_with_exact_velocity_recovers_gaussian(shift):
    noise = torch.randn(20000, 1, 2, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = EulerSampler(num_steps=200, shift=shift).sample(exact_velocity, noise)
    assert abs(x.mean().item() - MU) < 0.02
    assert abs(x.std().item() - SIGMA) < 0.02


def test_exact_velocity_has_minimal_loss():
    flow = RectifiedFlow(time_sampling="uniform")
    x0 = MU + SIGMA * torch.randn(50000, 1, dtype=torch.float64)
    exact = flow.loss(lambda x, t, c: exact_velocity(x, t), x0, None)["loss"]
    worse = flow.loss(lambda x, t, c: 0.9 * exact_velocity(x, t), x0, None)["loss"]
    assert exact < worse


def test_time_sampling_ranges():
    for sampling in ("uniform", "logit_normal"):
        t = RectifiedFlow(time_sampling=sampling, shift=3.0).sample_time(1000, torch.device("cpu"))
        assert t.min() >= 0 and t.max() <= 1
    ts = EulerSampler(num_steps=4).timesteps()
    assert ts[0] == 1 and ts[-1] == 0 and (ts[1:] < ts[:-1]).all()


def test_classifier_free_guidance_combines_predictions():
    def model(x, t, cond):  # prediction = first conditioning token's first feature
        return x * 0 + cond.tokens[:, 0, 0].view(-1, 1)

    cond = Conditioning(tokens=torch.full((2, 3, 1), 2.0), mask=torch.ones(2, 3, dtype=torch.bool))
    null = Conditioning(tokens=torch.full((2, 1, 1), 0.5), mask=torch.ones(2, 1, dtype=torch.bool))
    x, t = torch.zeros(2, 1), torch.ones(2)
    assert torch.allclose(classifier_free_guidance(model, cond, null, 3.0)(x, t), torch.full((2, 1), 0.5 + 3 * 1.5))
    assert torch.allclose(classifier_free_guidance(model, cond, null, 1.0)(x, t), torch.full((2, 1), 2.0))
    assert torch.allclose(classifier_free_guidance(model, cond, null, 0.0)(x, t), torch.full((2, 1), 0.5))


def test_warmup_cosine_schedule():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = WarmupCosine(opt, total_steps=110, warmup_steps=10, min_ratio=0.1)
    assert math.isclose(sched.factor(0), 0.1) and math.isclose(sched.factor(9), 1.0)
    assert math.isclose(sched.factor(10), 1.0) and math.isclose(sched.factor(110), 0.1)
    assert math.isclose(sched.factor(60), 0.55)
