"""Contract checks for fusion heads and backbones, importable from tests and notebooks.

    from kit.testing import check_fusion_head
    check_fusion_head(MyHead, width=64)       # raises AssertionError with the broken rule

Each check builds the part at a tiny size on the CPU and verifies the contract the part's base
class documents (`kit.fusion.base`, `kit.backbones.base`): shapes, masks and padding invariance, batch independence, gradient
flow, null conditioning, determinism, bf16 autocast, state-dict round trip; backbones
also start at exactly zero output (adaLN-Zero) and refuse bad input sizes.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor

from kit.types import Conditioning, EncoderOutput, EncoderSpec, TokenKind

TINY_SPEC = EncoderSpec(name="tiny", hidden_size=16, num_layers=6, taps=(2, 4, 5, 6))


def random_encoder_output(spec: EncoderSpec, lengths: list[int], *, extra_padding: int = 0, seed: int = 0) -> EncoderOutput:
    """A fake `EncoderOutput`: each row has 2 SYSTEM tokens, then `lengths[i]` PROMPT tokens, then padding."""
    g = torch.Generator().manual_seed(seed)
    s = 2 + max(lengths) + extra_padding
    hidden = torch.randn(len(lengths), spec.num_taps, s, spec.hidden_size, generator=g) * 3  # (B, N, S, D)
    mask = torch.zeros(len(lengths), s, dtype=torch.bool)
    kinds = torch.full((len(lengths), s), int(TokenKind.SYSTEM))
    for i, n in enumerate(lengths):
        mask[i, : 2 + n] = True
        kinds[i, 2 : 2 + n] = int(TokenKind.PROMPT)
    return EncoderOutput(hidden, mask, kinds)


def _pad_and_scramble(enc: EncoderOutput, extra: int, seed: int = 1) -> EncoderOutput:
    """Same content plus `extra` padding positions holding garbage, and fresh garbage in padding and SYSTEM tokens."""
    g = torch.Generator().manual_seed(seed)
    b, n, s, d = enc.hidden_states.shape
    hidden = torch.cat([enc.hidden_states, torch.randn(b, n, extra, d, generator=g) * 100], dim=2)
    mask = torch.cat([enc.mask, torch.zeros(b, extra, dtype=torch.bool)], dim=1)
    kinds = torch.cat([enc.kinds, torch.full((b, extra), int(TokenKind.SYSTEM))], dim=1)
    ignored = (~mask) | (kinds == int(TokenKind.SYSTEM))  # (B, S')
    hidden = torch.where(ignored[:, None, :, None], torch.randn(hidden.shape, generator=g) * 100, hidden)
    return EncoderOutput(hidden, mask, kinds)


def _real(cond: Conditioning) -> dict[str, Tensor]:
    """The conditioning with padding removed: what must be invariant."""
    out = {}
    if cond.tokens is not None:
        out["tokens"] = [cond.tokens[i][cond.mask[i]] for i in range(cond.tokens.shape[0])]
    if cond.pooled is not None:
        out["pooled"] = list(cond.pooled)
    if cond.per_layer is not None:
        out["per_layer"] = [cond.per_layer[i][:, cond.mask[i]] for i in range(cond.per_layer.shape[0])]
    return out


def _assert_close(a: dict, b: dict, what: str, atol: float = 1e-4) -> None:
    assert a.keys() == b.keys(), f"{what}: fields differ ({sorted(a)} vs {sorted(b)})"
    for key in a:
        for i, (x, y) in enumerate(zip(a[key], b[key], strict=False)):
            assert x.shape == y.shape, f"{what}: {key}[{i}] shape {tuple(x.shape)} vs {tuple(y.shape)}"
            err = (x - y).abs().max().item() if x.numel() else 0.0
            assert err <= atol, f"{what}: {key}[{i}] differs by {err:.2e}"


def check_fusion_head(cls: type, spec: EncoderSpec = TINY_SPEC, cond_dim: int = 24, **kwargs) -> None:
    """Assert that `cls(spec, cond_dim, **kwargs)` honours the fusion-head contract.

    Per-layer heads need the backbone's depth: pass it as `num_blocks=`.
    """
    torch.manual_seed(0)
    head = cls(spec, cond_dim, **kwargs).eval()
    lengths = [5, 1, 3]
    enc = random_encoder_output(spec, lengths)
    cond = head(enc)
    assert isinstance(cond, Conditioning), f"forward must return Conditioning, got {type(cond).__name__}"
    assert cond.provided() == head.provides, f"head declares provides={sorted(head.provides)} but filled {sorted(cond.provided())}"
    b = len(lengths)
    if cond.tokens is not None:
        assert cond.mask is not None and cond.mask.dtype == torch.bool, "tokens need a bool mask"
        assert cond.tokens.shape[0] == b and cond.tokens.shape[2] == cond_dim, f"tokens shape {tuple(cond.tokens.shape)}, expected (B={b}, M, {cond_dim})"
        assert cond.mask.shape == cond.tokens.shape[:2], f"mask shape {tuple(cond.mask.shape)} vs tokens {tuple(cond.tokens.shape)}"
        assert cond.mask.any(dim=1).all(), "every sample needs at least one real conditioning token"
    if cond.pooled is not None:
        assert cond.pooled.shape == (b, cond_dim), f"pooled shape {tuple(cond.pooled.shape)}, expected ({b}, {cond_dim})"
    if cond.per_layer is not None:
        layers = getattr(head, "num_output_layers", None)
        assert layers is not None, "a head that provides per_layer must say how many blocks it feeds (num_output_layers)"
        assert cond.mask is not None and cond.per_layer.shape[:3] == (b, layers, cond.mask.shape[1]) and cond.per_layer.shape[3] == cond_dim, (
            f"per_layer shape {tuple(cond.per_layer.shape)}, expected (B={b}, L={layers}, M={cond.mask.shape[1]}, {cond_dim})"
        )
        assert cond.per_layer_mode in ("add", "replace"), f"per_layer_mode {cond.per_layer_mode!r} is neither 'add' nor 'replace'"
    for name, value in _real(cond).items():
        assert all(torch.isfinite(v).all() for v in value), f"{name} has non-finite values"

    # padding, dropped token kinds and batch neighbours must not leak into a sample's conditioning
    _assert_close(_real(cond), _real(head(_pad_and_scramble(enc, extra=4))), "padding / dropped-kind invariance")
    alone = head(EncoderOutput(enc.hidden_states[1:2], enc.mask[1:2], enc.kinds[1:2]))
    _assert_close({k: v[1:2] for k, v in _real(cond).items()}, _real(alone), "batch independence")
    _assert_close(_real(cond), _real(head(enc)), "determinism", atol=0.0)

    # a sample with no kept token (an empty prompt) must not poison the batch with NaN
    empty = random_encoder_output(spec, [3, 0])
    for name, values in _real(head(empty)).items():
        assert all(torch.isfinite(v).all() for v in values), f"{name} is not finite when a sample has no kept tokens"
    if cond.tokens is not None:
        out = head(empty)
        assert torch.isfinite(out.tokens).all(), "tokens behind the mask must be finite too (they meet attention weights of 0)"

    # null conditioning: same fields, right batch size, mixes with real conditioning
    null = head.null_conditioning(b)
    assert null.provided() == cond.provided(), f"null_conditioning fills {sorted(null.provided())}, forward fills {sorted(cond.provided())}"
    assert null.batch_size == b, f"null_conditioning batch size {null.batch_size}, asked for {b}"
    mixed = cond.where(torch.tensor([True, False, True]), null)
    assert mixed.batch_size == b

    # gradients reach every parameter (a perturbed copy, so zero-initialised layers pass gradient too)
    head.train()
    with torch.no_grad():
        for p in head.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    head.zero_grad()
    cond = head(enc)
    loss = sum(v.float().pow(2).sum() for values in _real(cond).values() for v in values)
    null = head.null_conditioning(b)
    loss = loss + sum(getattr(null, f).float().pow(2).sum() for f in null.provided())
    loss.backward()
    missing = [n for n, p in head.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)]
    assert not missing, f"no gradient reaches {missing}"

    # bf16 autocast on the CPU runs and stays finite
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = head.eval()(enc)
    assert all(torch.isfinite(v.float()).all() for values in _real(out).values() for v in values), "non-finite output under bf16 autocast"

    # a fresh instance loading the state dict behaves identically
    clone = cls(spec, cond_dim, **kwargs).eval()
    clone.load_state_dict(head.state_dict())
    _assert_close(_real(head(enc)), _real(clone(enc)), "state-dict round trip", atol=0.0)


def check_backbone(cls: type, in_channels: int = 3, input_size: int = 8, **kwargs) -> None:
    """Assert that `cls(in_channels, input_size, **kwargs)` honours the backbone contract."""
    torch.manual_seed(0)
    model = cls(in_channels, input_size, **kwargs).eval()
    b, m = 2, 5
    x = torch.randn(b, in_channels, input_size, input_size)
    t = torch.tensor([0.25, 0.9])
    cond = Conditioning(tokens=torch.randn(b, m, model.cond_dim), mask=torch.tensor([[True] * 5, [True, True, False, False, False]]))
    if "pooled" in model.consumes:
        cond.pooled = torch.randn(b, model.cond_dim)
    out = model(x, t, cond)
    expected = (b, model.out_channels, input_size, input_size)
    assert out.shape == expected, f"output shape {tuple(out.shape)} != {expected} (out_channels {model.out_channels} on the input's grid)"
    assert out.abs().max().item() == 0.0, "output must be exactly zero at initialisation (adaLN-Zero)"

    perturbed = copy.deepcopy(model)
    with torch.no_grad():
        for p in perturbed.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    out = perturbed(x, t, cond)
    assert torch.isfinite(out).all(), "non-finite output"
    assert out.abs().max() > 0, "output stays zero after perturbing the weights"
    other = Conditioning(tokens=cond.tokens + 1.0, mask=cond.mask, pooled=cond.pooled)
    assert not torch.allclose(perturbed(x, t, other), out), "output ignores the conditioning"
    assert not torch.allclose(perturbed(x, t.flip(0), cond), out), "output ignores the time"
    padded = cond.padded_to(m + 3)
    padded.tokens[:, m:] = 1e3  # garbage behind the mask
    assert torch.allclose(perturbed(x, t, padded), out, atol=1e-4), "masked conditioning tokens change the output"
    alone = perturbed(x[1:], t[1:], Conditioning(tokens=cond.tokens[1:], mask=cond.mask[1:], pooled=None if cond.pooled is None else cond.pooled[1:]))
    assert torch.allclose(alone, out[1:], atol=1e-4), "samples in a batch influence each other"

    perturbed.train().zero_grad()
    perturbed(x, t, cond).pow(2).mean().backward()
    missing = [n for n, p in perturbed.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"no gradient reaches {missing}"

    if "per_layer" in model.consumes:  # per-layer hooks: every block reads its own slice
        per_layer = torch.randn(b, model.num_blocks, m, model.cond_dim)
        for mode in ("add", "replace"):
            layered = Conditioning(tokens=cond.tokens, mask=cond.mask, per_layer=per_layer, per_layer_mode=mode)
            out_layered = perturbed.eval()(x, t, layered)
            assert out_layered.shape == expected and torch.isfinite(out_layered).all()
            changed = per_layer.clone()
            changed[:, -1] += 1.0
            other = Conditioning(tokens=cond.tokens, mask=cond.mask, per_layer=changed, per_layer_mode=mode)
            assert not torch.allclose(perturbed(x, t, other), out_layered), f"the last block ignores its per-layer conditioning ({mode})"
        try:
            perturbed(x, t, Conditioning(tokens=cond.tokens, mask=cond.mask, per_layer=per_layer[:, :-1]))
        except ValueError as e:
            assert str(model.num_blocks) in str(e), f"a per-layer depth mismatch should name the depth: {e}"
        else:
            raise AssertionError("per-layer conditioning with the wrong number of layers was accepted")

    patch = getattr(model, "patch_size", 1)
    if patch > 1:
        try:
            model(torch.randn(1, in_channels, input_size + 1, input_size + 1), t[:1], Conditioning(tokens=cond.tokens[:1], mask=cond.mask[:1]))
        except ValueError as e:
            assert str(input_size + 1) in str(e) and str(patch) in str(e), f"size error should name the sizes: {e}"
        else:
            raise AssertionError(f"an input of size {input_size + 1} (not a multiple of patch {patch}) was accepted")
