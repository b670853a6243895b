"""U-ViT (Bao et al. 2023), the backbone of UniDiffuser: every input is a token, with long skips.

The sequence is `[time token(s), conditioning tokens, image patch tokens]`, with learned
position embeddings for the leading tokens and 2D sin-cos for the patches. The first half
of the blocks stores its outputs; the second half concatenates each stored output with its
input and projects back (long skip connections), as a U-Net does across resolutions.

Time enters only as tokens, one per time input: `time_tokens` lists them, so a joint model
(UniDiffuser: an image time and a text time) adds an entry and feeds one time per stream.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from kit.backbones.base import BACKBONES, TransformerBackbone
from kit.layers import TimestepEmbedder, TransformerBlock, init_linear_trunc_normal, key_padding_bias, zero_
from kit.types import Conditioning


class PostNormBlock(TransformerBlock):
    """The same block with the norms after each residual addition (post-LN, as in the original Transformer)."""

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x `(B, S, W)`; mask `(B, S)` bool -> `(B, S, W)`."""
        x = self.norm1(x + self.attn(x, attn_mask=key_padding_bias(mask)))  # (B, S, W)
        return self.norm2(x + self.mlp(x))


@BACKBONES.register("uvit")
class UViT(TransformerBackbone):
    """U-ViT: all inputs as tokens, in-blocks / mid-block / out-blocks with long skip connections.

    Args:
        width: token width (also the conditioning width asked of the fusion head).
        depth: blocks in total, an odd number: (depth - 1) / 2 in, one mid, (depth - 1) / 2 out.
        num_heads: attention heads.
        post_norm: post-LN blocks instead of pre-LN (UniDiffuser found pre-LN unstable in fp16 at scale
            and used post-LN; pre-LN is the U-ViT default).
        max_cond_tokens: learned positions available for conditioning tokens.
        kwargs: the other settings the transformer families share (`TransformerBackbone`).
    """

    test_settings = (
        {"patch_size": 2, "width": 32, "depth": 3, "num_heads": 2},
        {"patch_size": 4, "width": 32, "depth": 5, "num_heads": 2, "post_norm": True, "positions": "pixel", "out_channels": 1},
    )

    consumes = frozenset({"tokens"})
    captures = True  # after each of the long-skip encoder half's blocks
    time_tokens: tuple[str, ...] = ("t",)

    def __init__(
        self,
        in_channels: int,
        input_size: int,
        *,
        width: int = 512,
        depth: int = 13,
        num_heads: int = 8,
        post_norm: bool = False,
        max_cond_tokens: int = 256,
        **kwargs,
    ) -> None:
        if depth % 2 == 0:
            raise ValueError(f"U-ViT depth must be odd (in-blocks, a mid block, out-blocks), got {depth}")
        super().__init__(in_channels, input_size, width=width, depth=depth, num_heads=num_heads, **kwargs)
        self.max_cond_tokens = max_cond_tokens
        block = PostNormBlock if post_norm else TransformerBlock
        half = (depth - 1) // 2
        self.t_embedders = nn.ModuleDict({name: TimestepEmbedder(width) for name in self.time_tokens})
        self.cond_proj = nn.Linear(width, width)
        self.lead_pos = nn.Parameter(torch.zeros(1, len(self.time_tokens) + max_cond_tokens, width))
        self.in_blocks = nn.ModuleList(block(width, num_heads, self.mlp_ratio) for _ in range(half))
        self.mid_block = block(width, num_heads, self.mlp_ratio)
        self.out_blocks = nn.ModuleList(block(width, num_heads, self.mlp_ratio) for _ in range(half))
        self.skips = nn.ModuleList(nn.Linear(2 * width, width) for _ in range(half))
        self.norm = nn.LayerNorm(width)
        self.final = nn.Linear(width, self.patch_size * self.patch_size * self.out_channels)
        self.initialize_weights()

    @property
    def capture_depth(self) -> int:
        return len(self.in_blocks)

    def initialize_weights(self) -> None:
        """Trunc-normal(0.02) linears and positions (U-ViT's init); the output layer at zero."""
        init_linear_trunc_normal(self)
        nn.init.trunc_normal_(self.lead_pos, std=0.02)
        zero_(self.final)

    def tokens(self, x: Tensor, times: dict[str, Tensor], cond: Conditioning) -> tuple[Tensor, Tensor, int]:
        """Assemble `[time tokens, cond tokens, patches]` -> sequence `(B, S, W)`, key mask `(B, S)`, patch start."""
        b = x.shape[0]
        m = cond.tokens.shape[1]
        if m > self.max_cond_tokens:
            raise ValueError(f"{m} conditioning tokens exceed max_cond_tokens={self.max_cond_tokens}")
        lead = [self.t_embedders[name](times[name])[:, None] for name in self.time_tokens] + [self.cond_proj(cond.tokens)]
        lead = torch.cat(lead, dim=1) + self.lead_pos[:, : len(self.time_tokens) + m]  # (B, n_t + M, W)
        patches = self.embed_patches(x, x.dtype)  # (B, T, W)
        ones = cond.mask.new_ones(b, 1)
        mask = torch.cat([ones.expand(b, len(self.time_tokens)), cond.mask, ones.expand(b, patches.shape[1])], dim=1)
        return torch.cat([lead, patches], dim=1), mask, lead.shape[1]

    def forward(self, x: Tensor, t: Tensor, cond: Conditioning) -> Tensor:
        """x `(B, C, H, W)`, t `(B,)`, cond.tokens `(B, M, W)` + mask -> `(B, C, H, W)`."""
        _, _, h, w = x.shape
        seq, mask, start = self.tokens(x, {"t": t}, cond)  # (B, S, W)
        seq = self.run_blocks(seq, mask, start)  # (B, S, W)
        out = self.final(self.norm(seq[:, start:]))  # (B, T, p*p*C_out)
        return self.unpatchify(out, h, w)

    def run_blocks(self, seq: Tensor, mask: Tensor, start: int) -> Tensor:
        """The in-blocks, the mid block and the out-blocks with their long skips: `(B, S, W)` -> `(B, S, W)`;
        the image tokens (from `start` on) are recorded after each in-block."""
        skips = []
        for i, block in enumerate(self.in_blocks):
            seq = self.run_block(block, seq, mask)
            self.record(i, seq[:, start:])
            skips.append(seq)
        seq = self.run_block(self.mid_block, seq, mask)
        for block, skip in zip(self.out_blocks, self.skips):
            seq = self.run_block(block, skip(torch.cat([seq, skips.pop()], dim=-1)), mask)  # (B, S, W)
        return seq
