"""Single-stream DiT (UniFusion / Krea style): conditioning tokens and image tokens attend jointly.

The conditioning tokens are concatenated in front of the patch tokens and the whole
sequence goes through the same adaLN-Zero blocks (Peebles & Xie, 2023), modulated by the
timestep. Only the image tokens are decoded. Image tokens carry 2D sin-cos positions
computed for the input's grid, so one model runs at several resolutions; conditioning
tokens carry a learned type embedding and no position (their order is already in the
encoder's features).
"""

from __future__ import annotations

import torch
from timm.layers import RmsNorm
from torch import Tensor, nn

from kit.backbones.base import BACKBONES, TransformerBackbone
from kit.layers import FinalLayer, ModulatedBlock, TimestepEmbedder, init_linear_xavier, key_padding_bias, modulate, zero_
from kit.types import Conditioning


class DiTBlock(ModulatedBlock):
    """adaLN-Zero transformer block over a joint sequence: its six modulation vectors come from the
    timestep through the block's own MLP (`ModulatedBlock` has the arguments)."""

    def __init__(self, width: int, num_heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__(width, num_heads, mlp_ratio)
        self.adaLN = nn.Sequential(nn.SiLU(), nn.Linear(width, 6 * width))

    def forward(self, x: Tensor, c: Tensor, mask: Tensor | None) -> Tensor:
        """x `(B, S, W)`, c `(B, W)`, mask `(B, S)` bool keys or None -> `(B, S, W)`."""
        shift1, scale1, gate1, shift2, scale2, gate2 = self.adaLN(c).chunk(6, dim=-1)  # (B, W) each
        x = x + gate1[:, None] * self.attn(modulate(self.norm1(x), shift1, scale1), attn_mask=key_padding_bias(mask))
        x = x + gate2[:, None] * self.mlp(modulate(self.norm2(x), shift2, scale2))
        return x


@BACKBONES.register("dit")
class SingleStreamDiT(TransformerBackbone):
    """DiT whose sequence is `[conditioning tokens, image tokens]`, timestep through adaLN-Zero.

    Args:
        pool_conditioning: also add the masked mean of the conditioning tokens (through an MLP) to
            the timestep embedding that drives adaLN, a global path beside joint attention (as SD3
            and Flux add a pooled text vector). Off reproduces UniFusion's single-stream DiT.
        decoder_hidden: width of a GELU hidden layer between the last block and each token's patch
            (0: DiT's single linear map; at patch 16 one token draws 768 values).
        decoder_layers: how many such hidden layers (with `decoder_hidden` > 0).
        kwargs: the settings of every transformer family (`TransformerBackbone`).
    """

    test_settings = (
        {"patch_size": 2, "width": 32, "depth": 2, "num_heads": 2},
        {"patch_size": 4, "width": 32, "depth": 1, "num_heads": 4, "pool_conditioning": True, "positions": "pixel"},
        {"patch_size": 4, "width": 32, "depth": 1, "num_heads": 2, "decoder_hidden": 48, "decoder_layers": 2, "out_channels": 2},
    )

    consumes = frozenset({"tokens", "per_layer"})
    captures = True

    def __init__(
        self, in_channels: int, input_size: int, *, pool_conditioning: bool = False, decoder_hidden: int = 0, decoder_layers: int = 1, **kwargs
    ) -> None:
        super().__init__(in_channels, input_size, **kwargs)
        width, depth, num_heads, mlp_ratio = self.width, self.depth, self.num_heads, self.mlp_ratio
        self.t_embedder = TimestepEmbedder(width)
        self.cond_type = nn.Parameter(torch.zeros(1, 1, width))
        self.cond_norm = RmsNorm(width)
        self.pool_embedder = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width)) if pool_conditioning else None
        self.blocks = nn.ModuleList(DiTBlock(width, num_heads, mlp_ratio) for _ in range(depth))
        self.final = FinalLayer(width, self.patch_size, self.out_channels, decoder_hidden, decoder_layers)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """Xavier linears, normal(0.02) timestep MLP, and adaLN-Zero: every modulation and the output start at 0."""
        init_linear_xavier(self)
        self.init_embedders()
        nn.init.normal_(self.cond_type, std=0.02)
        for block in self.blocks:
            zero_(block.adaLN[-1])
        zero_(self.final.adaLN[-1])
        zero_(self.final.linear)

    def forward(self, x: Tensor, t: Tensor, cond: Conditioning) -> Tensor:
        """x `(B, C, H, W)`, t `(B,)` in [0, 1], cond.tokens `(B, M, W)` and/or cond.per_layer `(B, L, M, W)`,
        + mask -> `(B, C, H, W)`. Per-layer conditioning replaces or adds to the conditioning tokens before each block."""
        b, _, h, w = x.shape
        img = self.embed_patches(x)  # (B, T, W)
        per_layer = self.per_layer_of(cond)  # (B, L, M, W) or None
        tokens = cond.tokens if cond.tokens is not None else per_layer[:, -1]  # (B, M, W): KV fusion pools its last layer
        txt = self.cond_norm(tokens) + self.cond_type  # (B, M, W)
        seq = torch.cat([txt, img], dim=1)  # (B, M + T, W)
        mask = torch.cat([cond.mask, cond.mask.new_ones(b, img.shape[1])], dim=1)  # (B, M + T)
        c = self.t_embedder(t)  # (B, W)
        if self.pool_embedder is not None:
            weights = cond.mask[..., None].to(txt.dtype)  # (B, M, 1)
            c = c + self.pool_embedder((txt * weights).sum(1) / weights.sum(1).clamp(min=1))  # (B, W)
        m = txt.shape[1]
        for i, block in enumerate(self.blocks):
            if per_layer is not None:
                fed = self.feed_layer(seq[:, :m], self.cond_norm(per_layer[:, i]), cond.per_layer_mode, fresh=self.cond_type)  # (B, M, W)
                seq = torch.cat([fed, seq[:, m:]], dim=1)  # (B, M + T, W)
            seq = self.run_block(block, seq, c, mask)  # (B, M + T, W)
            self.record(i, seq[:, m:])
        out = self.final(seq[:, m:], c)  # (B, T, p*p*C_out)
        return self.unpatchify(out, h, w)
