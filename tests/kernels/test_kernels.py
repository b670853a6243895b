"""Fused layerwise kernels against their PyTorch references: outputs and every gradient over awkward
shapes, the dispatcher's modes and refusals, LAP through the kernels, and a short training run.

On the CPU the Triton kernels run under `TRITON_INTERPRET=1` in fp32 (set in conftest); tests
marked `gpu` run bf16 and realistic shapes on CUDA only.
"""

from __future__ import annotations

import pytest
import torch
from einops import rearrange

from kit.kernels import KernelUnavailable, attention_pool, layer_attention, triton_constraints, weighted_sum
from kit.kernels.reference import attention_pool_reference, layer_attention_reference, weighted_sum_reference
from kit.testing import TINY_SPEC, random_encoder_output

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
requires_triton = pytest.mark.skipif(bool(triton_constraints([torch.zeros(1, device=DEVICE)])), reason="Triton cannot run here")
# (tokens, taps, heads, head dim): odd token counts, taps that are not a power of two, one head, a single tap
SHAPES = [(7, 5, 3, 6), (33, 12, 2, 8), (1, 1, 1, 4), (20, 9, 4, 5)]


@pytest.fixture
def triton_mode(monkeypatch):
    monkeypatch.setenv("KIT_KERNELS", "triton")


def _keep(T: int, N: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    keep = torch.rand(T, N, generator=g) > 0.4
    keep[torch.arange(T), torch.randint(N, (T,), generator=g)] = True  # every token keeps a tap
    return keep.to(DEVICE)


def _leaf(*shape: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g).to(DEVICE).requires_grad_()


def _strided_taps(T: int, N: int, W: int, seed: int) -> torch.Tensor:
    """A `(T, N, W)` view of a `(N, T, W)` tensor, the way per-layer hidden states lie (no stacked copy)."""
    return rearrange(_leaf(N, T, W, seed=seed), "n t w -> t n w")


def _compare(kernel_out, reference_out, inputs, atol=2e-5):
    """Outputs and the gradients of every input that requires one, for the same random output gradient."""
    grad = torch.randn_like(kernel_out)
    ours = torch.autograd.grad(kernel_out, inputs, grad)
    theirs = torch.autograd.grad(reference_out, inputs, grad)
    assert torch.allclose(kernel_out, reference_out, atol=atol), (kernel_out - reference_out).abs().max()
    for a, b in zip(ours, theirs, strict=True):
        assert torch.allclose(a, b, atol=atol), (a - b).abs().max()


@requires_triton
@pytest.mark.parametrize("with_keep", [False, True], ids=["all-taps", "dropped-taps"])
@pytest.mark.parametrize("with_norm", [True, False], ids=["rmsnorm", "no-norm"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_attention_pool_matches_the_reference(triton_mode, shape, with_norm, with_keep):
    T, N, K, d = shape
    x = _strided_taps(T, N, K * d, seed=1)
    query = _leaf(K, d, seed=2)
    norm = (1 + 0.3 * _leaf(K * d, seed=3)).detach().requires_grad_() if with_norm else None
    keep = _keep(T, N, seed=4) if with_keep else None
    pooled, attn = attention_pool(x, query, norm, keep)
    ref_pooled, ref_attn = attention_pool_reference(x, query, norm, keep)
    assert torch.allclose(attn, ref_attn, atol=1e-6) and torch.allclose(attn.sum(dim=1), torch.ones(T, K, device=DEVICE), atol=1e-5)
    inputs = [t for t in (x, query, norm) if t is not None]
    _compare(pooled, ref_pooled, inputs)


@requires_triton
def test_attention_pool_without_an_input_gradient_still_trains_the_query(triton_mode):
    x = torch.randn(9, 6, 12, device=DEVICE)  # a frozen encoder's taps: no gradient wanted
    query, norm = _leaf(3, 4, seed=5), _leaf(12, seed=6)
    pooled, _ = attention_pool(x, query, norm)
    _compare(pooled, attention_pool_reference(x, query, norm)[0], [query, norm])


@requires_triton
@pytest.mark.parametrize("with_keep", [False, True], ids=["all-taps", "dropped-taps"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_weighted_sum_matches_the_reference(triton_mode, shape, with_keep):
    T, N, K, d = shape
    x = _strided_taps(T, N, K * d, seed=7)
    weight = _leaf(N, seed=8)
    keep = _keep(T, N, seed=9) if with_keep else None
    _compare(weighted_sum(x, weight, keep), weighted_sum_reference(x, weight, keep), [x, weight])


@requires_triton
@pytest.mark.parametrize("with_keep", [False, True], ids=["all-taps", "dropped-taps"])
@pytest.mark.parametrize("shape", SHAPES + [(3, 64, 1, 128), (5, 17, 2, 33)], ids=lambda s: "x".join(map(str, s)))
@pytest.mark.slow
def test_layer_attention_matches_the_reference(triton_mode, shape, with_keep):
    T, N, K, d = shape
    qkv = _leaf(T, N, 3, K, d, seed=10)  # q, k, v as strided slices of one fused projection
    q, k, v = qkv.unbind(dim=2)
    keep = _keep(T, N, seed=11) if with_keep else None
    if keep is not None and T > 1:
        keep[0] = False  # a token with no kept key attends to all of them, as the reference does
    _compare(layer_attention(q, k, v, keep), layer_attention_reference(q, k, v, keep), [qkv], atol=5e-5)


@requires_triton
def test_explicit_triton_names_the_constraint_that_failed(triton_mode, monkeypatch):
    x = torch.randn(4, 3, 8, dtype=torch.float64, device=DEVICE)
    with pytest.raises(KernelUnavailable, match=r"weighted_sum: KIT_KERNELS=triton but dtype torch.float64 is not supported"):
        weighted_sum(x, torch.randn(3, dtype=torch.float64, device=DEVICE))
    q = torch.randn(2, 65, 1, 8, device=DEVICE)
    with pytest.raises(KernelUnavailable, match=r"layer_attention: KIT_KERNELS=triton but 65 taps > 64"):
        layer_attention(q, q, q)
    q = torch.randn(2, 4, 1, 129, device=DEVICE)
    with pytest.raises(KernelUnavailable, match=r"head dim 129 > 128"):
        layer_attention(q, q, q)
    if DEVICE == "cpu":
        monkeypatch.setenv("TRITON_INTERPRET", "0")
        with pytest.raises(KernelUnavailable, match=r"CPU tensors need TRITON_INTERPRET=1"):
            weighted_sum(torch.randn(4, 3, 8), torch.randn(3))


def test_auto_falls_back_and_still_answers_right(monkeypatch):
    monkeypatch.setenv("KIT_KERNELS", "auto")
    x = torch.randn(5, 3, 8, dtype=torch.float64)  # no Triton kernel takes float64
    query, norm, keep = torch.randn(2, 4, dtype=torch.float64), torch.rand(8, dtype=torch.float64), _keep(5, 3, seed=0).cpu()
    assert torch.equal(attention_pool(x, query, norm, keep)[0], attention_pool_reference(x, query, norm, keep)[0])
    q = torch.randn(2, 70, 1, 4)  # more taps than the kernel holds
    assert torch.equal(layer_attention(q, q, q), layer_attention_reference(q, q, q))


def test_bad_modes_and_shapes_are_errors_in_every_mode(monkeypatch):
    monkeypatch.setenv("KIT_KERNELS", "fast")
    with pytest.raises(ValueError, match=r"KIT_KERNELS='fast' is not a mode; choose one of auto, triton, torch"):
        weighted_sum(torch.randn(2, 3, 4), torch.randn(3))
    monkeypatch.setenv("KIT_KERNELS", "torch")
    with pytest.raises(ValueError, match=r"query \(K, d\) with K \* d = W; got x \(2, 3, 8\), query \(3, 3\)"):
        attention_pool(torch.randn(2, 3, 8), torch.randn(3, 3))
    with pytest.raises(ValueError, match=r"keep must be a bool tensor of shape \(2, 3\)"):
        weighted_sum(torch.randn(2, 3, 4), torch.randn(3), torch.ones(3, 2, dtype=torch.bool))


def _lap(projector: str, layer_dropout: float = 0.0):
    from kit.fusion import LAPHead

    torch.manual_seed(0)
    head = LAPHead(TINY_SPEC, 16, projector=projector, layer_dropout=layer_dropout, num_heads=2).to(DEVICE)
    for p in head.parameters():  # move away from the symmetric initialisation so every path matters
        torch.nn.init.normal_(p, std=0.2)
    return head


@requires_triton
@pytest.mark.parametrize("projector,layer_dropout", [("weight", 0.0), ("attention", 0.0), ("attention", 0.5), ("weight", 0.5)])
def test_lap_through_the_kernels_matches_lap_through_pytorch(monkeypatch, projector, layer_dropout):
    enc = random_encoder_output(TINY_SPEC, [5, 3])
    enc = type(enc)(**{k: (v.to(DEVICE) if torch.is_tensor(v) else v) for k, v in vars(enc).items()})
    results = {}
    for mode in ("torch", "triton"):
        monkeypatch.setenv("KIT_KERNELS", mode)
        head = _lap(projector, layer_dropout).train()
        torch.manual_seed(1)  # the same layer-dropout draw in both modes
        out = head(enc).tokens
        out.square().mean().backward()
        results[mode] = (out.detach(), {n: p.grad for n, p in head.named_parameters()}, head.layer_weights())
    (a, grads_a, w_a), (b, grads_b, w_b) = results["torch"], results["triton"]
    assert torch.allclose(a, b, atol=1e-5)
    assert torch.allclose(w_a, w_b, atol=1e-6)
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:
        if grads_a[name] is None or grads_b[name] is None:
            assert grads_a[name] is None and grads_b[name] is None, name
            continue
        assert torch.allclose(grads_a[name], grads_b[name], atol=1e-5), name


def test_the_kernel_attention_keeps_timms_parameters_and_keys():
    from timm.layers import Attention

    from kit.fusion.lap import LayerAxisAttention
    from kit.layers import TransformerBlock

    fused = TransformerBlock(16, 2, attn_layer=LayerAxisAttention)
    plain = TransformerBlock(16, 2, attn_layer=Attention)
    assert fused.state_dict().keys() == plain.state_dict().keys()
    plain.load_state_dict(fused.state_dict())
    x, keep = torch.randn(6, 5, 16), _keep(6, 5, seed=3).cpu()
    assert torch.allclose(fused(x, keep), plain(x, keep), atol=1e-5)


@requires_triton
@pytest.mark.slow
def test_a_short_lap_training_run_gives_the_same_losses_with_both_kernels(monkeypatch):
    enc = random_encoder_output(TINY_SPEC, [6, 4, 5])
    enc = type(enc)(**{k: (v.to(DEVICE) if torch.is_tensor(v) else v) for k, v in vars(enc).items()})
    target = torch.randn(_lap("attention")(enc).tokens.shape, device=DEVICE)
    losses = {}
    for mode in ("torch", "triton"):
        monkeypatch.setenv("KIT_KERNELS", mode)
        head = _lap("attention", layer_dropout=0.25).train()
        opt = torch.optim.AdamW(head.parameters(), lr=3e-3)
        torch.manual_seed(2)
        losses[mode] = []
        for _ in range(8):
            loss = (head(enc).tokens - target).square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses[mode].append(loss.item())
    assert losses["torch"][-1] < losses["torch"][0], "the run learns"
    assert losses["triton"] == pytest.approx(losses["torch"], rel=1e-4)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("width", [2560, 4096])
def test_bf16_realistic_shapes_on_the_gpu(monkeypatch, width):
    monkeypatch.setenv("KIT_KERNELS", "triton")
    T, N, heads = 4096, 12, width // 128
    x = torch.randn(N, T, width, device="cuda", dtype=torch.bfloat16).transpose(0, 1).requires_grad_()
    query = torch.randn(heads, 128, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    norm = torch.ones(width, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    pooled, _ = attention_pool(x, query, norm)
    x32, query32, norm32 = (t.detach().float().requires_grad_() for t in (x, query, norm))
    ref = attention_pool_reference(x32, query32, norm32)[0]
    assert torch.allclose(pooled.float(), ref, atol=3e-2, rtol=3e-2)
    grad = torch.randn_like(ref)
    pooled.float().backward(grad)
    ref.backward(grad)
    for ours, theirs in ((x.grad, x32.grad), (query.grad, query32.grad), (norm.grad, norm32.grad)):
        # bf16 gradients against the fp32 reference, relative to the gradient's scale
        assert torch.isfinite(ours).all() and (ours.float() - theirs).norm() <= 5e-2 * theirs.norm(), (ours.float() - theirs).norm() / theirs.norm()
    summed = weighted_sum(x, torch.rand(N, device="cuda", dtype=torch.bfloat16))
    assert summed.shape == (T, width) and torch.isfinite(summed).all()
    q = torch.randn(T, N, heads, 128, device="cuda", dtype=torch.bfloat16)
    out = layer_attention(q, q, q)
    assert torch.allclose(out.float(), layer_attention_reference(q.float(), q.float(), q.float()), atol=3e-2, rtol=3e-2)


class _LaunchSpy:
    """Stands in for a `@triton.jit` kernel: records the tensors each launch receives, then launches it."""

    def __init__(self, kernel) -> None:
        self.kernel, self.launches = kernel, []

    def __getitem__(self, grid):
        launch = self.kernel[grid]

        def run(*args, **kwargs):
            self.launches.append([a for a in args if isinstance(a, torch.Tensor)])
            return launch(*args, **kwargs)

        return run


def _same_view(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.data_ptr() == b.data_ptr() and a.stride() == b.stride() and a.shape == b.shape


@requires_triton
def test_kernels_read_strided_inputs_in_place(triton_mode, monkeypatch):
    """The README's claim: the kernels read `(T, N, W)` views of per-layer states (and q, k, v slices of a
    fused projection) through their strides, with no stacked or contiguous copy: the very views reach the launch."""
    from kit.kernels import triton_layer_attention, triton_pool

    spies = {}
    for module, name in ((triton_pool, "_attention_pool_fwd"), (triton_pool, "_weighted_sum_fwd"), (triton_layer_attention, "_layer_attention_fwd")):
        spies[name] = _LaunchSpy(getattr(module, name))
        monkeypatch.setattr(module, name, spies[name])
    x = _strided_taps(7, 5, 12, seed=1).detach()
    assert not x.is_contiguous()
    attention_pool(x, torch.randn(3, 4, device=DEVICE))
    weighted_sum(x, torch.randn(5, device=DEVICE))
    q, k, v = torch.randn(7, 5, 3, 2, 4, device=DEVICE).unbind(dim=2)
    layer_attention(q, k, v)
    assert _same_view(spies["_attention_pool_fwd"].launches[0][0], x)
    assert _same_view(spies["_weighted_sum_fwd"].launches[0][0], x)
    assert all(_same_view(a, b) for a, b in zip(spies["_layer_attention_fwd"].launches[0][:3], (q, k, v), strict=True))
