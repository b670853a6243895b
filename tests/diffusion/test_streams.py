"""Named streams through objectives, samplers and guidance: streams diffused together behave as each alone.

The exact denoiser of a Gaussian (from `test_diffusion`) is run on two streams at once, each with its own
data law; every sampler must give, stream by stream, exactly what it gives on that stream alone.
"""

import pytest
import torch

from kit.diffusion import DDPM, IMAGE, DDIMSampler, DPMSolverPP2M, EulerSampler, HeunSampler, RectifiedFlow, classifier_free_guidance
from kit.diffusion.base import check_sampling_objective
from kit.types import Conditioning

F64 = torch.float64
LAWS = {  # two streams with different Gaussian laws (and widths)
    "image": (torch.tensor([1.5, -0.5], dtype=F64), torch.tensor([[0.5, 0.3], [0.3, 0.4]], dtype=F64)),
    "text": (torch.tensor([-1.0, 0.0, 2.0], dtype=F64), torch.diag(torch.tensor([0.2, 0.6, 0.3], dtype=F64))),
}
SAMPLERS = {"euler": EulerSampler(12), "heun": HeunSampler(12), "ddim": DDIMSampler(12), "dpm": DPMSolverPP2M(12)}


def exact(objective, mu, cov):
    """E[x0 | x_t] of one Gaussian law, in the objective's parameterisation (input scaling undone)."""
    eye = torch.eye(len(mu), dtype=F64)

    def fn(x, t):
        x = x / objective.model_input(torch.ones_like(x), t).clamp(min=1e-12)
        alpha, sigma = objective.schedule.alpha_sigma(t)
        a, s = alpha[:, None], sigma[:, None]
        solved = torch.linalg.solve(a[:, :, None] ** 2 * cov + s[:, :, None] ** 2 * eye, x - a * mu)
        x0 = mu + a * (solved @ cov)
        return objective.from_x0_eps(x0, (x - a * x0) / s, t)

    return fn


def noise(n=64):
    g = torch.Generator().manual_seed(0)
    return {name: torch.randn(n, len(mu), generator=g, dtype=F64) for name, (mu, _) in LAWS.items()}


@pytest.mark.parametrize(
    "objective", [RectifiedFlow(), RectifiedFlow(prediction="x0", input_scaling="signal"), DDPM("cosine", "v")], ids=["flow", "flow-x0-signal", "ddpm-v"]
)
@pytest.mark.parametrize("sampler_name", list(SAMPLERS))
def test_two_streams_sample_as_each_alone(objective, sampler_name):
    sampler = SAMPLERS[sampler_name]
    per_stream = {name: exact(objective, mu, cov) for name, (mu, cov) in LAWS.items()}
    calls = []

    def joint(xs, t):  # one call for both streams, as a joint network makes
        calls.append(sorted(xs))
        return {name: per_stream[name](x, t) for name, x in xs.items()}

    z = noise()
    together = sampler.sample(joint, z, objective)
    assert set(together) == set(LAWS) and all(c == sorted(LAWS) for c in calls)
    for name in LAWS:
        alone = sampler.sample(per_stream[name], z[name], objective)
        assert torch.equal(together[name], alone), name


def test_the_loss_of_two_streams_is_the_weighted_sum_under_independent_times():
    objective = RectifiedFlow(prediction="x0", stream_weights={"text": 0.5})
    g = torch.Generator().manual_seed(1)
    x0 = {"image": torch.randn(6, 3, 4, 4, generator=g), "text": torch.randn(6, 5, 8, generator=g)}
    noise_ = {k: torch.randn(v.shape, generator=g) for k, v in x0.items()}
    t = {"image": torch.rand(6, generator=g), "text": torch.rand(6, generator=g)}
    seen = {}

    def model(xs, ts, cond):  # a fixed, stream-wise map: each stream's prediction from its own input only
        seen.update(ts)
        return {k: 0.5 * v for k, v in xs.items()}

    terms = objective.loss(model, x0, None, t=t, noise=noise_)
    assert seen["image"] is t["image"] and seen["text"] is t["text"], "each stream is noised and fed at its own time"
    alone = {k: objective.loss(lambda x, tt, c: 0.5 * x, x0[k], None, t=t[k], noise=noise_[k]) for k in x0}
    assert torch.allclose(terms["loss/image"], alone["image"]["loss"]) and torch.allclose(terms["loss/text"], alone["text"]["loss"])
    assert torch.allclose(terms["loss"], alone["image"]["loss"] + 0.5 * alone["text"]["loss"])
    assert torch.allclose(terms["loss_per_sample"], alone["image"]["loss_per_sample"] + 0.5 * alone["text"]["loss_per_sample"])
    drawn = objective.loss(model, x0, None)  # times drawn per stream when not given
    assert torch.isfinite(drawn["loss"]) and not torch.equal(seen["image"], seen["text"])


def test_stream_mistakes_are_named():
    objective = RectifiedFlow()
    x0 = {"image": torch.zeros(2, 3), "text": torch.zeros(2, 4)}
    with pytest.raises(ValueError, match=r"t names the streams \['image'\]; the data has \['image', 'text'\]"):
        objective.loss(lambda xs, ts, c: xs, x0, None, t={"image": torch.rand(2)})
    with pytest.raises(ValueError, match="one prediction per stream"):
        objective.loss(lambda xs, ts, c: {"image": xs["image"]}, x0, None)
    with pytest.raises(ValueError, match="batch size"):
        objective.loss(lambda xs, ts, c: xs, {"image": torch.zeros(2, 3), "text": torch.zeros(3, 4)}, None)
    with pytest.raises(ValueError, match="stream weights must be >= 0"):
        RectifiedFlow(stream_weights={"text": -1.0})
    with pytest.raises(TypeError, match="lacks schedule, t_min, model_input, to_x0_eps"):
        EulerSampler(2).sample(lambda x, t: x, torch.zeros(2, 3), object())
    check_sampling_objective(RectifiedFlow())  # every objective of the kit is one


def test_guidance_applies_to_every_stream():
    def model(xs, ts, cond):  # each stream's prediction: the first conditioning feature, scaled per stream
        return {k: v * 0 + cond.tokens[:, 0, 0].view(-1, 1) * (2.0 if k == "text" else 1.0) for k, v in xs.items()}

    cond = Conditioning(tokens=torch.full((2, 3, 1), 2.0), mask=torch.ones(2, 3, dtype=torch.bool))
    null = Conditioning(tokens=torch.full((2, 1, 1), 0.5), mask=torch.ones(2, 1, dtype=torch.bool))
    xs, t = {"image": torch.zeros(2, 1), "text": torch.zeros(2, 1)}, torch.tensor([0.2, 0.9])
    out = classifier_free_guidance(model, cond, null, 3.0)(xs, t)
    assert torch.allclose(out["image"], torch.full((2, 1), 0.5 + 3 * 1.5)) and torch.allclose(out["text"], torch.full((2, 1), 2 * (0.5 + 3 * 1.5)))
    plain = classifier_free_guidance(model, cond, null, 1.0)(xs, t)
    assert torch.allclose(plain["text"], torch.full((2, 1), 4.0))
    single = classifier_free_guidance(lambda x, tt, c: model({IMAGE: x}, {IMAGE: tt}, c)[IMAGE], cond, null, 3.0)(xs["image"], t)
    assert torch.equal(single, out["image"]), "one plain tensor is the stream 'image'"
