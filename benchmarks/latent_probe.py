"""How linearly an autoencoder's latents carry each object's colour and shape.

For each object of 1,500 validation scenes (48 px), the latent values of its grid cell (the autoencoder's
latent cells under it) are the features of a least-squares one-vs-rest linear classifier of its colour and of
its shape, fitted on two thirds of the objects and scored on the rest. A latent the DiT must reach by
regression is easier to learn when what the prompt names is a linear direction of it (docs/efficiency.md,
"A latent space").

    python benchmarks/latent_probe.py kit/assets/shapes-ae OTHER_AE_FOLDER ... [--out results/latent_probe.json]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from kit.data.shapes import ShapesDataset
from kit.encoders.autoencoder import ConvAutoencoder
from kit.encoders.frozen import resolve_model_path
from kit.world import COLOURS, SHAPES
from kit.world.scene import GRID


def linear_accuracy(features: np.ndarray, labels: np.ndarray, classes: int) -> float:
    """Held-out accuracy of a least-squares one-vs-rest linear classifier (bias included; first 2/3 fit)."""
    x = np.c_[features, np.ones(len(features))]
    k = len(x) * 2 // 3
    w = np.linalg.lstsq(x[:k], np.eye(classes)[labels[:k]], rcond=None)[0]
    return float(((x[k:] @ w).argmax(1) == labels[k:]).mean())


def probe(folder: str, num_scenes: int = 1500) -> dict:
    data = ShapesDataset(num_scenes, "val", image_size=48)
    images = torch.stack([data[i]["image"] for i in range(num_scenes)])
    model = ConvAutoencoder.load(resolve_model_path(folder)).eval()
    with torch.no_grad():
        z = model.encode(images).numpy()  # (N, C, h, w)
    per = z.shape[-1] // GRID  # latent cells per grid cell along a side
    feats, colours, shapes = [], [], []
    for n in range(num_scenes):
        for obj in data.scene_and_prompt(n)[0].objects:
            feats.append(z[n, :, per * obj.row : per * (obj.row + 1), per * obj.col : per * (obj.col + 1)].ravel())
            colours.append(list(COLOURS).index(obj.colour))
            shapes.append(SHAPES.index(obj.shape))
    feats = np.array(feats)
    return {
        "autoencoder": folder,
        "objects": len(feats),
        "colour": linear_accuracy(feats, np.array(colours), len(COLOURS)),
        "shape": linear_accuracy(feats, np.array(shapes), len(SHAPES)),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("autoencoders", nargs="+", help="kit:<asset> names or folders ConvAutoencoder.save wrote")
    p.add_argument("--out", help="write the rows as JSON here")
    args = p.parse_args()
    torch.set_num_threads(1)
    rows = [probe(a) for a in args.autoencoders]
    for r in rows:
        print(f"{r['autoencoder']}: linear colour {r['colour']:.3f}, shape {r['shape']:.3f} ({r['objects']} objects)")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
