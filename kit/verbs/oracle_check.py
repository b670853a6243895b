"""`python -m kit oracle-check --n 2000 --out oracle.json`: how exactly the oracle reads renders back.

Renders random scenes (from a split of their own), reads them with the oracle clean, under
each perturbation, and drawn by another rasteriser with a generated image's sloppiness
(`kit.world.perturb.redraw`), and reports exact-scene accuracy (every object found with every
attribute, nothing extra) and per-attribute accuracy over the true objects.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections import defaultdict
from pathlib import Path

from kit.verbs.parsing import VerbParser
from kit.world.oracle import Oracle
from kit.world.perturb import PERTURBATIONS, REDRAWN, perturb, redraw
from kit.world.render import render
from kit.world.scene import Scene, sample_scene, scene_rng

HELP = "measure the oracle on clean and perturbed renders: --n 2000 --out oracle.json"

ORACLE_CHECK_SPLIT = 5


def compare(truth: Scene, read: Scene, tally: dict[str, list[int]]) -> bool:
    """Add per-attribute hits for `truth`'s objects to `tally`; return whether the scene is exact."""
    found = {o.cell: o for o in read.objects}
    for obj in truth.objects:
        other = found.get(obj.cell)
        tally["detected"][0] += other is not None
        tally["detected"][1] += 1
        for name in ("shape", "colour", "size"):
            tally[name][0] += other is not None and getattr(other, name) == getattr(obj, name)
            tally[name][1] += 1
    tally["no_extra_objects"][0] += len(set(found) - {o.cell for o in truth.objects}) == 0
    tally["no_extra_objects"][1] += 1
    return read.facts() == truth.facts()


def oracle_check(n: int, sizes: list[int], seed: int = 0, oracle: Oracle | None = None) -> dict:
    """Exact-scene and per-attribute accuracy of the oracle on `n` scenes per image size."""
    oracle = oracle or Oracle()
    report: dict = {"n": n, "seed": seed, "oracle": dataclasses.asdict(oracle), "sizes": {}}
    for size in sizes:
        per_condition = {}
        for condition in ("clean", *PERTURBATIONS, REDRAWN):
            exact, tally = 0, defaultdict(lambda: [0, 0])
            for i in range(n):
                rng = scene_rng(seed, ORACLE_CHECK_SPLIT, i)
                scene = sample_scene(rng)
                if condition == REDRAWN:
                    image = redraw(scene, size, rng)
                else:
                    image = render(scene, size)
                    if condition != "clean":
                        image = perturb(image, condition, rng)
                exact += compare(scene, oracle.read(image), tally)
            per_condition[condition] = {"exact_scene": exact / n, "per_attribute": {k: h / t for k, (h, t) in tally.items()}}
        report["sizes"][str(size)] = per_condition
    perturbed = [c["exact_scene"] for s in report["sizes"].values() for k, c in s.items() if k != "clean"]
    clean = [s["clean"]["exact_scene"] for s in report["sizes"].values()]
    report["summary"] = {"clean_exact_scene_min": min(clean), "perturbed_exact_scene_min": min(perturbed)}
    return report


def main(argv: list[str]) -> int:
    p = VerbParser(prog="python -m kit oracle-check", description="Measure the oracle on clean and perturbed renders of random scenes.")
    p.add_argument("--n", type=int, default=2000, help="scenes per image size and condition")
    p.add_argument("--sizes", type=list[int], default=[32, 48, 64], help="image sizes to check (include every size you train at)")
    p.add_argument("--seed", type=int, default=0, help="scene seed")
    p.add_argument("--out", type=str, default="oracle.json", help="output JSON path")
    args = p.parse_args(argv)
    started = time.perf_counter()
    report = oracle_check(args.n, args.sizes, args.seed)
    report["seconds"] = round(time.perf_counter() - started, 1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    for size, conditions in report["sizes"].items():
        row = "  ".join(f"{k}={v['exact_scene']:.4f}" for k, v in conditions.items())
        print(f"{size:>3} px exact-scene accuracy: {row}")
    print(f"-> {out}")
    return 0
