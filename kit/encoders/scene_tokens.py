"""`SceneTokenEncoder`: perfect, disentangled conditioning for the shapes world (an upper bound).

Each prompt is parsed with the world's parser (`kit.world.parser.parse_caption`) and becomes
one token per requested object instance ("three red circles" gives three tokens), each the
sum of learned embeddings of its attributes: shape, colour, size, row, column, its role in a
spatial relation, and two flags (part of an exact count; part of an exhaustive list). An
attribute the prompt leaves open takes its own "free" value. Nothing has to be inferred from
words, so a DiT conditioned on these tokens shows how fast the backbone alone can learn the
world: the top rung of the diagnostic ladder (`recipes/diagnostics/`).

Unlike `FrozenEncoder` the embeddings train with the model (they are in the optimizer and in
checkpoints), so a feature cache cannot hold them (`fingerprint()` is None). A prompt the
parser cannot read raises `CaptionParseError` naming the phrase.
"""

from __future__ import annotations

import torch
from torch import nn

from kit.encoders.base import PromptEncoder
from kit.types import EncoderOutput, EncoderSpec, TokenKind
from kit.world.parser import parse_caption
from kit.world.scene import COLOURS, GRID, SHAPES, SIZES
from kit.world.spec import RELATIONS, SceneSpec

ROLES: tuple[str, ...] = ("none", *RELATIONS, *(f"{r} (object)" for r in RELATIONS))
"""An object's part in a relation: none, the subject of 'left of', ..., or the object of one."""

# attribute -> its vocabulary; index 0 of each table is "free" (left open by the prompt)
ATTRIBUTES: dict[str, tuple] = {
    "shape": SHAPES,
    "colour": tuple(COLOURS),
    "size": SIZES,
    "row": tuple(range(GRID)),
    "col": tuple(range(GRID)),
    "role": ROLES[1:],
    "exact": (True,),
    "exhaustive": (True,),
}


def object_attributes(spec: SceneSpec) -> list[dict[str, int]]:
    """One dict per requested object instance: attribute -> index into its table (0 = free)."""
    roles: dict[int, int] = {}
    for r in spec.relations:
        roles[r.a] = 1 + RELATIONS.index(r.rel)
        roles[r.b] = 1 + len(RELATIONS) + RELATIONS.index(r.rel)
    out = []
    for i, obj in enumerate(spec.objects):
        row, col = obj.cell if obj.cell is not None else (None, None)
        values = {"shape": obj.shape, "colour": obj.colour, "size": obj.size, "row": row, "col": col}
        ids = {k: 0 if v is None else 1 + ATTRIBUTES[k].index(v) for k, v in values.items()}
        ids.update(role=roles.get(i, 0), exact=int(obj.exact), exhaustive=int(spec.exhaustive))
        out.extend([ids] * obj.count)
    return out


class SceneTokenEncoder(PromptEncoder):
    """Prompt -> parsed scene specification -> one learned token per object.

    Args:
        width: D, the width of every token.
        max_objects: most tokens per prompt (the world has at most 4 objects).
        init_std: standard deviation of the embeddings at initialisation.
    """

    def __init__(self, width: int = 128, max_objects: int = 4, init_std: float = 0.5) -> None:
        super().__init__()
        self.width = width
        self.max_objects = max_objects
        self.name = f"scene-tokens:{width}"
        self.tables = nn.ModuleDict({k: nn.Embedding(1 + len(v), width) for k, v in ATTRIBUTES.items()})
        self.init_std = init_std
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """Every embedding normal(0, init_std): distinct attribute values start nearly orthogonal."""
        for table in self.tables.values():
            nn.init.normal_(table.weight, std=self.init_std)

    @property
    def spec(self) -> EncoderSpec:
        return EncoderSpec(name=self.name, hidden_size=self.width, num_layers=1, taps=(1,))

    def forward(self, prompts: list[str], images=None) -> EncoderOutput:
        """B prompts -> hidden_states `(B, 1, S, D)` with S = the most objects in the batch, mask `(B, S)`."""
        if images is not None and any(images):
            raise ValueError("SceneTokenEncoder reads prompts only, not images")
        rows = [object_attributes(parse_caption(p))[: self.max_objects] for p in prompts]
        device = self.tables["shape"].weight.device
        s = max(1, max(len(r) for r in rows))
        ids = {k: torch.zeros(len(prompts), s, dtype=torch.long) for k in ATTRIBUTES}
        mask = torch.zeros(len(prompts), s, dtype=torch.bool)
        for b, row in enumerate(rows):
            for j, attrs in enumerate(row):
                mask[b, j] = True
                for k, v in attrs.items():
                    ids[k][b, j] = v
        hidden = sum(self.tables[k](v.to(device)) for k, v in ids.items())  # (B, S, D)
        hidden = hidden * mask.to(device)[..., None]
        kinds = torch.full((len(prompts), s), int(TokenKind.PROMPT), dtype=torch.long, device=device)
        return EncoderOutput(hidden[:, None], mask.to(device), kinds)
