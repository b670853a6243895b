"""Objectives and samplers against closed form.

For Gaussian (and Gaussian-mixture) data the exact denoiser E[x0 | x_t] is known, so every
sampler can be run with a perfect model: what it produces then differs from the data law
only by its own discretisation error.
"""

import math

import pytest
import torch

from kit.diffusion import DDPM, DDIMSampler, DDPMSchedule, DPMSolverPP2M, EulerSampler, HeunSampler, RectifiedFlow, classifier_free_guidance
from kit.optim import WarmupCosine
from kit.types import Conditioning

F64 = torch.float64
MU = torch.tensor([1.5, -0.5], dtype=F64)
SIGMA = torch.tensor([[0.5, 0.3], [0.3, 0.4]], dtype=F64)
EYE = torch.eye(2, dtype=F64)
MIXTURE = [
    (0.3, torch.tensor([-2.0, 0.0], dtype=F64), 0.2 * EYE),
    (0.7, torch.tensor([1.0, 1.0], dtype=F64), torch.tensor([[0.3, 0.1], [0.1, 0.2]], dtype=F64)),
]

OBJECTIVES = {
    "flow": RectifiedFlow(),
    "flow-x0": RectifiedFlow(prediction="x0"),
    "flow-x0-signal": RectifiedFlow(prediction="x0", loss_space="prediction", input_scaling="signal"),
    "ddpm-eps-linear": DDPM("linear", "eps"),
    "ddpm-v-cosine": DDPM("cosine", "v"),
    "ddpm-x0-scaled": DDPM("scaled_linear", "x0"),
}


def exact_model(objective, components):
    """The perfect denoiser for a Gaussian mixture, returning the objective's own parameterisation.
    It is fed what the objective feeds a network (`model_input`) and undoes that scaling first."""

    def fn(x, t):
        x = x / objective.model_input(torch.ones_like(x), t).clamp(min=1e-12)  # back to x_t (at t = 1 x_t does not matter)
        alpha, sigma = objective.schedule.alpha_sigma(t)
        a, s = alpha[:, None], sigma[:, None]  # (B, 1)
        log_w, means = [], []
        for weight, mu, cov in components:
            marginal = a[:, :, None] ** 2 * cov + s[:, :, None] ** 2 * EYE  # (B, 2, 2)
            centred = x - a * mu  # (B, 2)
            solved = torch.linalg.solve(marginal, centred)  # (B, 2)
            log_w.append(math.log(weight) - 0.5 * (centred * solved).sum(-1) - 0.5 * torch.logdet(marginal))
            means.append(mu + a * (solved @ cov))  # E[x0 | x_t, k]
        w = torch.softmax(torch.stack(log_w, -1), -1)  # (B, K)
        x0 = (w[..., None] * torch.stack(means, 1)).sum(1)  # (B, 2)
        eps = (x - a * x0) / s
        return objective.from_x0_eps(x0, eps, t)

    return fn


def run(sampler, objective, components=((1.0, MU, SIGMA),), n=8000, steps=None):
    """Sample with the exact model, starting from the exact marginal at t = 1 for a single Gaussian.

    (Schedules whose alpha(1) > 0, such as scaled-linear, do not end in pure noise: starting
    from N(0, I) would add that known bias to the sampler's own error.)
    """
    z = torch.randn(n, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    if len(components) == 1:
        alpha, sigma = (v.item() for v in objective.schedule.alpha_sigma(torch.ones(1, dtype=F64)))
        z = alpha * MU + z @ torch.linalg.cholesky(alpha**2 * SIGMA + sigma**2 * EYE).T
    return sampler.sample(exact_model(objective, components), z, objective, steps)


def moments_error(x, mu, cov):
    return (x.mean(0) - mu).abs().max().item(), (torch.cov(x.T) - cov).abs().max().item()


SAMPLERS = {"euler": (EulerSampler, 100), "heun": (HeunSampler, 40), "ddim": (DDIMSampler, 200), "dpm++2m": (DPMSolverPP2M, 50)}


@pytest.mark.parametrize("objective_name", OBJECTIVES)
@pytest.mark.parametrize("sampler_name", SAMPLERS)
def test_every_sampler_recovers_a_gaussian(objective_name, sampler_name):
    cls, steps = SAMPLERS[sampler_name]
    spacing = "time" if objective_name == "flow" else "log_snr"  # what the recipes use
    x = run(cls(num_steps=steps, spacing=spacing), OBJECTIVES[objective_name])
    mean_err, cov_err = moments_error(x, MU, SIGMA)
    assert mean_err < 0.03 and cov_err < 0.03, (mean_err, cov_err)


@pytest.mark.parametrize("objective_name", ["flow", "ddpm-eps-linear"])
def test_samplers_recover_a_gaussian_mixture(objective_name):
    weights = torch.tensor([w for w, _, _ in MIXTURE])
    mu = sum(w * m for w, m, _ in MIXTURE)
    cov = sum(w * (c + torch.outer(m, m)) for w, m, c in MIXTURE) - torch.outer(mu, mu)
    x = run(DPMSolverPP2M(num_steps=50), OBJECTIVES[objective_name], MIXTURE)
    mean_err, cov_err = moments_error(x, mu, cov)
    assert mean_err < 0.05 and cov_err < 0.08, (mean_err, cov_err)
    left = (x[:, 0] < -0.5).double().mean()
    assert abs(left - weights[0]) < 0.02, "the mixture weights are kept"


@pytest.mark.parametrize("objective_name, spacing", [("flow", "time"), ("ddpm-eps-linear", "log_snr")])
@pytest.mark.parametrize("steps", [10, 20])
def test_dpm_solver_beats_first_order_at_few_steps(objective_name, spacing, steps):
    """Covariance error at 10-20 steps, same noise for every sampler (the recipes' spacings)."""
    objective = OBJECTIVES[objective_name]
    samplers = [("dpm", DPMSolverPP2M), ("ddim", DDIMSampler), ("euler", EulerSampler)]
    errors = {name: moments_error(run(cls(num_steps=steps, spacing=spacing), objective, n=16000), MU, SIGMA)[1] for name, cls in samplers}
    assert errors["dpm"] < errors["ddim"] and errors["dpm"] < errors["euler"], errors


@pytest.mark.slow
def test_ddim_with_eta_one_matches_ancestral_sampling():
    objective = OBJECTIVES["ddpm-eps-linear"]
    noise = torch.randn(20000, 2, generator=torch.Generator().manual_seed(1), dtype=F64)
    x = DDIMSampler(num_steps=200, eta=1.0).sample(exact_model(objective, ((1.0, MU, SIGMA),)), noise, objective, generator=torch.Generator().manual_seed(2))
    mean_err, cov_err = moments_error(x, MU, SIGMA)
    assert mean_err < 0.03 and cov_err < 0.04, (mean_err, cov_err)


@pytest.mark.parametrize("name", OBJECTIVES)
def test_prediction_round_trip_and_minimal_loss(name):
    objective = OBJECTIVES[name]
    x0, eps = torch.randn(64, 2, dtype=F64), torch.randn(64, 2, dtype=F64)
    t = torch.rand(64, dtype=F64) * 0.98 + 0.01
    alpha, sigma = objective.schedule.alpha_sigma(t)
    x_t = alpha[:, None] * x0 + sigma[:, None] * eps
    back_x0, back_eps = objective.to_x0_eps(objective.from_x0_eps(x0, eps, t), x_t, t)
    assert torch.allclose(back_x0, x0, atol=1e-6) and torch.allclose(back_eps, eps, atol=1e-6)
    data = MU + torch.randn(4096, 2, dtype=F64) @ torch.linalg.cholesky(SIGMA).T
    model = exact_model(objective, ((1.0, MU, SIGMA),))
    t, noise = objective.sample_time(4096, data.device).double(), torch.randn_like(data)
    exact = objective.loss(lambda x, t, c: model(x, t), data, None, t=t, noise=noise)["loss"]
    worse = objective.loss(lambda x, t, c: 0.9 * model(x, t), data, None, t=t, noise=noise)["loss"]
    assert exact < worse


def test_x0_prediction_trains_with_the_velocity_loss():
    """Li & He 2025: the network outputs x0; the loss is the velocity error, i.e. the x0 error
    weighted by (1 + alpha / max(sigma, sigma_min)) on the straight path, never the plain x0 error."""
    objective = RectifiedFlow(prediction="x0", sigma_min=0.05)
    x0, noise = torch.randn(256, 3), torch.randn(256, 3)
    t = torch.cat([torch.full((128,), 0.01), torch.rand(128) * 0.9 + 0.05])
    delta = 0.1 * torch.randn(256, 3)
    x_t = (1 - t)[:, None] * x0 + t[:, None] * noise
    terms = objective.loss(lambda x, tt, c: x0 + delta, x0, None, t=t, noise=noise)
    weight = 1 + (1 - t) / t.clamp(min=0.05)  # (B,)
    expected = ((weight[:, None] * delta) ** 2).mean(dim=1)
    assert torch.allclose(terms["loss_per_sample"], expected, rtol=1e-4), (terms["loss_per_sample"][:3], expected[:3])
    assert objective.loss(lambda x, tt, c: x0, x0, None, t=t, noise=noise)["loss"] < 1e-10
    # the sampler reads the x0 prediction back: Euler's velocity is (x_t - x0) / t
    back_x0, back_eps = objective.to_x0_eps(x0, x_t, t)
    assert torch.allclose(back_x0, x0) and torch.allclose(back_eps[128:], noise[128:], atol=1e-4)
    with pytest.raises(ValueError, match="velocity' or 'x0'"):
        RectifiedFlow(prediction="eps")


def test_signal_input_scaling_fades_the_input_and_reaches_the_sampler():
    objective = RectifiedFlow(prediction="x0", loss_space="prediction", input_scaling="signal")
    x = torch.ones(3, 2)
    t = torch.tensor([0.0, 0.5, 1.0])
    assert torch.allclose(objective.model_input(x, t)[:, 0], torch.tensor([1.0, 0.5 / 0.5**0.5, 0.0]))
    seen = []

    def fn(x_in, tt):  # records what the network is fed
        seen.append((x_in.clone(), tt.clone()))
        return torch.zeros_like(x_in)

    EulerSampler(num_steps=2).sample(fn, torch.ones(4, 2), objective)
    assert torch.all(seen[0][0] == 0)  # at t = 1 the network sees no input at all: only the prompt can steer it
    assert torch.all(seen[1][0] != 0)  # later it sees the (scaled) partially denoised sample
    assert RectifiedFlow().model_input(x, t) is x  # the default feeds x_t itself
    with pytest.raises(ValueError, match="input_scaling"):
        RectifiedFlow(input_scaling="bogus")


def test_schedules():
    for kind in ("linear", "scaled_linear", "cosine"):
        sched = DDPMSchedule(kind)
        a, s = sched.alpha_sigma(torch.tensor([0.0, 0.5, 1.0], dtype=F64))
        assert a[0] == 1 and s[0] == 0 and torch.allclose(a**2 + s**2, torch.ones(3, dtype=F64)), kind
        assert a[2] < 0.1, f"{kind}: t = 1 is nearly pure noise"
    t = RectifiedFlow(time_sampling="logit_normal", shift=3.0).sample_time(1000, torch.device("cpu"))
    assert t.min() >= 0 and t.max() <= 1 and t.mean() > 0.6, "a shift > 1 moves training time towards noise"
    steps = DDPM().sample_time(1000, torch.device("cpu"))
    assert torch.allclose(steps * 1000, (steps * 1000).round()) and steps.min() >= 1e-3


def test_terminal_fraction_trains_that_share_at_pure_noise():
    g = torch.Generator().manual_seed(0)
    t = RectifiedFlow(logit_mean=1.0, terminal_fraction=0.3).sample_time(20000, torch.device("cpu"), generator=g)
    share = float((t == 1.0).float().mean())
    assert abs(share - 0.3) < 0.02, share  # binomial sd 0.003
    rest = t[t < 1.0]
    assert rest.numel() == (t != 1.0).sum() and 0.6 < float(rest.mean()) < 0.75, "the other times keep the logit-normal"
    assert (RectifiedFlow(logit_mean=1.0).sample_time(20000, torch.device("cpu")) == 1.0).sum() == 0
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="terminal_fraction"):
            RectifiedFlow(terminal_fraction=bad)


def test_classifier_free_guidance_scale_rescale_and_interval():
    def model(x, t, cond):  # prediction = first conditioning token's first feature
        return x * 0 + cond.tokens[:, 0, 0].view(-1, 1)

    cond = Conditioning(tokens=torch.full((2, 3, 1), 2.0), mask=torch.ones(2, 3, dtype=torch.bool))
    null = Conditioning(tokens=torch.full((2, 1, 1), 0.5), mask=torch.ones(2, 1, dtype=torch.bool))
    x, t = torch.zeros(2, 1), torch.tensor([0.2, 0.9])
    assert torch.allclose(classifier_free_guidance(model, cond, null, 3.0)(x, t), torch.full((2, 1), 0.5 + 3 * 1.5))
    assert torch.allclose(classifier_free_guidance(model, cond, null, 1.0)(x, t), torch.full((2, 1), 2.0))
    assert torch.allclose(classifier_free_guidance(model, cond, null, 0.0)(x, t), torch.full((2, 1), 0.5))
    inside = classifier_free_guidance(model, cond, null, 3.0, interval=(0.5, 1.0))(x, t)
    assert inside[0].item() == 2.0 and inside[1].item() == 5.0, "guidance applies only inside the interval"

    def spread(x, t, cond):  # the conditional prediction is twice as spread as the unconditional one
        base = torch.linspace(-1, 1, 8).expand(x.shape[0], 8)
        return base * (1.0 + (cond.mask.sum(1, keepdim=True) == 3).double())

    x8 = torch.zeros(2, 8)
    plain = classifier_free_guidance(spread, cond, null, 4.0)(x8, t)
    rescaled = classifier_free_guidance(spread, cond, null, 4.0, rescale=1.0)(x8, t)
    assert torch.allclose(rescaled.std(dim=1), spread(x8, t, cond).std(dim=1)) and plain.std() > rescaled.std()


def test_warmup_cosine_schedule():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = WarmupCosine(opt, total_steps=110, warmup_steps=10, min_ratio=0.1)
    assert math.isclose(sched.factor(0), 0.1) and math.isclose(sched.factor(9), 1.0)
    assert math.isclose(sched.factor(10), 1.0) and math.isclose(sched.factor(110), 0.1)
    assert math.isclose(sched.factor(60), 0.55)


@pytest.mark.parametrize("kind, theirs", [("linear", "linear"), ("scaled_linear", "scaled_linear"), ("cosine", "squaredcos_cap_v2")])
def test_schedules_match_diffusers_alpha_bar_at_every_step(kind, theirs):
    """alpha(k / T)^2 is diffusers' alphas_cumprod[k - 1] at every one of the T training steps."""
    from diffusers import DDPMScheduler

    ours = DDPMSchedule(kind)
    betas = {"scaled_linear": {"beta_start": 0.00085, "beta_end": 0.012}}.get(kind, {})  # Stable Diffusion's range, our default
    reference = DDPMScheduler(num_train_timesteps=1000, beta_schedule=theirs, **betas).alphas_cumprod.double()  # (1000,)
    alpha, sigma = ours.alpha_sigma(torch.arange(1, 1001, dtype=F64) / 1000)
    assert torch.allclose(alpha**2, reference, rtol=1e-5, atol=1e-9), (alpha**2 - reference).abs().max()
    assert torch.allclose(alpha**2 + sigma**2, torch.ones(1000, dtype=F64))


def exact_ode_solution(objective, x1):
    """Where the probability-flow ODE takes each x_1 at t = 0, for Gaussian data N(MU, SIGMA): every
    marginal covariance a^2 SIGMA + s^2 I commutes with SIGMA, so the flow map is the linear
    x_0 = a_0 MU + (a_0^2 SIGMA + s_0^2 I)^(1/2) (a_1^2 SIGMA + s_1^2 I)^(-1/2) (x_1 - a_1 MU). An
    independent reference, sample by sample, with no Monte-Carlo error. (DDPM samplers stop at
    t_min = 1/T and jump to x0 from there: a floor of ~5e-4 that is why the second-order window is wide.)"""

    def sqrtm(m):
        w, v = torch.linalg.eigh(m)
        return v @ torch.diag(w.clamp(min=0).sqrt()) @ v.T

    a1, s1 = (v.item() for v in objective.schedule.alpha_sigma(torch.ones(1, dtype=F64)))
    a0, s0 = (v.item() for v in objective.schedule.alpha_sigma(torch.zeros(1, dtype=F64)))
    flow = sqrtm(a0**2 * SIGMA + s0**2 * EYE) @ torch.linalg.inv(sqrtm(a1**2 * SIGMA + s1**2 * EYE))
    return a0 * MU + (x1 - a1 * MU) @ flow.T


# (sampler, expected error ratio when the steps double: 2 for first order, 4 for second)
ORDERS = {"euler": (EulerSampler, 2.0), "ddim": (DDIMSampler, 2.0), "heun": (HeunSampler, 4.0), "dpm++2m": (DPMSolverPP2M, 4.0)}
KNOWN_LOW_ORDER = {("flow", "dpm++2m"), ("flow-x0", "dpm++2m")}


@pytest.mark.parametrize("objective_name", ["flow", "flow-x0", "ddpm-eps-linear", "ddpm-v-cosine"])
@pytest.mark.parametrize("sampler_name", ORDERS)
def test_deterministic_samplers_converge_to_the_exact_ode_solution_at_their_order(objective_name, sampler_name, request):
    """Same noise, 20 / 40 / 80 steps, worst sample's distance to the exact solution: it must shrink
    by the sampler's order each time the steps double (first order 1.6-2.8x, second 3-8x: the
    ends of a log-SNR grid leave 20 steps slightly pre-asymptotic). A wrong coefficient in any step breaks this
    long before it moves the moments that `test_every_sampler_recovers_a_gaussian` checks."""
    if (objective_name, sampler_name) in KNOWN_LOW_ORDER:
        reason = "DPM-Solver++(2M) on flow converges at about first order (1.8x, 2.8x): its first step starts from alpha = 0 and its last jumps to the data prediction from t = 1/n, where log-SNR is unbounded (open: a flow-specific last step)"
        request.applymarker(pytest.mark.xfail(strict=True, raises=AssertionError, reason=reason))  # strict: fixing it turns this red until the mark goes
    objective, (cls, order) = OBJECTIVES[objective_name], ORDERS[sampler_name]
    a1, s1 = (v.item() for v in objective.schedule.alpha_sigma(torch.ones(1, dtype=F64)))
    z = torch.randn(2000, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    x1 = a1 * MU + z @ torch.linalg.cholesky(a1**2 * SIGMA + s1**2 * EYE).T
    reference = exact_ode_solution(objective, x1)
    spacing = "time" if objective_name.startswith("flow") else "log_snr"
    errors = [
        (cls(num_steps=n, spacing=spacing).sample(exact_model(objective, ((1.0, MU, SIGMA),)), x1.clone(), objective, n) - reference).norm(dim=1).max().item()
        for n in (20, 40, 80)
    ]
    ratios = [errors[0] / errors[1], errors[1] / errors[2]]
    low, high = (1.6, 2.8) if order == 2.0 else (3.0, 8.0)
    assert all(low <= r <= high for r in ratios), (errors, ratios)
    assert errors[2] < (0.2 if order == 2.0 else 0.01), errors


def test_dpm_solver_default_spacing_is_the_better_one_for_each_schedule():
    """At 10 steps on the scaled-linear schedule the default (log-SNR on DDPM) lands much closer to the
    exact distribution than an even time grid; on a flow the default is the time grid."""
    objective = DDPM("scaled_linear", "eps")
    default = DPMSolverPP2M(num_steps=10)
    assert default.spacing_for(objective) == "log_snr" and default.spacing_for(RectifiedFlow()) == "time"
    errors = {s: max(moments_error(run(DPMSolverPP2M(num_steps=10, spacing=s), objective, n=16000), MU, SIGMA)) for s in ("auto", "time")}
    assert errors["auto"] < 0.5 * errors["time"], errors


def test_dpm_solver_at_10_steps_is_at_least_as_close_as_diffusers_on_the_sd_schedule():
    """Parity with the peer: diffusers' DPMSolverMultistepScheduler (DPM-Solver++(2M), its defaults) and the
    kit's default DPM-Solver++(2M), both with the exact denoiser of a Gaussian on Stable Diffusion's
    scaled-linear schedule, 10 steps, the same start: the kit lands no farther from the exact law (measured: max moment error 0.034 vs 0.077)."""
    from diffusers import DPMSolverMultistepScheduler

    objective = DDPM("scaled_linear", "eps")
    ours = max(moments_error(run(DPMSolverPP2M(num_steps=10), objective, n=16000), MU, SIGMA))
    scheduler = DPMSolverMultistepScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    scheduler.set_timesteps(10)
    model = exact_model(objective, ((1.0, MU, SIGMA),))
    z = torch.randn(16000, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    first = (scheduler.timesteps[0].double() + 1) / 1000  # diffusers' step k is the kit's t = (k + 1) / T
    alpha, sigma = (v.item() for v in objective.schedule.alpha_sigma(first.reshape(1)))
    x = alpha * MU + z @ torch.linalg.cholesky(alpha**2 * SIGMA + sigma**2 * EYE).T  # the exact marginal there, as `run` starts
    for k in scheduler.timesteps:
        t = ((k.double() + 1) / 1000).expand(x.shape[0])
        x = scheduler.step(model(x, t), k, x).prev_sample
    theirs = max(moments_error(x, MU, SIGMA))
    assert ours <= theirs * 1.05, f"kit {ours:.4f} vs diffusers {theirs:.4f}"
